//! The bridge's C ABI driven from Rust, as the Go module drives it: components started from
//! Collector-shaped configurations, payloads handed in (borrowed) and out (through a
//! consume callback standing in for the Collector's next consumer), authorizer and token
//! calls, located configuration errors, panics kept at the boundary.
#![allow(unsafe_code)]

#[path = "bridge/standin.rs"]
mod standin;
mod support;

use otap_df::core::data::Signal;
use otap_df_collector_bridge::ffi::{self, ACCEPTED, PERMANENT, RETRYABLE};
use standin::{
    EXPORTER, EXTENSION, Mode, PROCESSOR, RECEIVER, collector, consume_as, consume_bytes, start,
    started, stop, take, validate,
};

fn logs(tag: &str) -> Vec<u8> {
    otap_df::nodes::otlp::synthetic(Signal::Logs, 100, tag, 1)
        .bytes()
        .to_vec()
}

const DEDUP: &str = r#"{
  "extensions": { "seen": { "type": "extension:memory_kv" } },
  "nodes": {
    "dedup": {
      "type": "processor:dedup",
      "config": { "ttl": "10m" },
      "capabilities": { "key_value_store": "seen" }
    }
  },
  "queue_size": 4
}"#;

#[test]
fn a_processor_hands_on_what_it_keeps_and_each_call_waits_for_the_next_consumer() {
    let handle = 101;
    let id = started(PROCESSOR, DEDUP, handle);
    let batches: Vec<Vec<u8>> = ["a", "b", "a", "c", "b", "d"]
        .iter()
        .map(|t| logs(t))
        .collect();
    for (i, batch) in batches.iter().enumerate() {
        let (status, released, why) = consume_bytes(id, 0, batch, 1000 + i as u64);
        assert_eq!((status, why), (ACCEPTED, None), "batch {i}");
        // The outlet dropped the bytes before the next consumer answered: nothing to release.
        assert!(released, "batch {i} still referenced after its call");
    }
    // What the Collector's side reports as the component's telemetry.
    let metrics: serde_json::Value =
        serde_json::from_str(&take(ffi::otapdf_metrics(id)).expect("metrics")).unwrap();
    let dedup = metrics["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["node"] == "dedup")
        .expect("the dedup node");
    assert_eq!(
        (
            &dedup["records_in"],
            &dedup["records_out"],
            &dedup["records_dropped"],
            &dedup["records_failed"]
        ),
        (
            &serde_json::json!(600),
            &serde_json::json!(400),
            &serde_json::json!(200),
            &serde_json::json!(0)
        ),
        "{metrics}"
    );
    assert!(
        metrics["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|extension| extension["extension"] == "seen"),
        "{metrics}"
    );
    stop(id);
    assert_eq!(take(ffi::otapdf_metrics(id)), None, "a stopped component");
    let collector = collector();
    let forwarded: Vec<&Vec<u8>> = collector
        .received
        .iter()
        .filter(|(h, _, _)| *h == handle)
        .map(|(_, _, bytes)| bytes)
        .collect();
    // Four distinct batches, each handed over once, byte for byte.
    assert_eq!(forwarded.len(), 4);
    for (got, want) in forwarded
        .iter()
        .zip([&batches[0], &batches[1], &batches[3], &batches[5]])
    {
        assert_eq!(*got, want);
    }
}

#[test]
fn the_callers_identity_crosses_in_with_the_payload_and_out_with_what_is_handed_on() {
    let handle = 111;
    let id = started(PROCESSOR, DEDUP, handle);
    let acme =
        r#"{"subject":"svc-a","attributes":[["tenant","acme"],["groups","ops"],["groups","dev"]]}"#;
    let (status, _, why) = consume_as(id, 0, &logs("identity-a"), 1101, acme);
    assert_eq!((status, why), (ACCEPTED, None));
    // Without a sender: handed on without one.
    let (status, _, why) = consume_bytes(id, 0, &logs("identity-b"), 1102);
    assert_eq!((status, why), (ACCEPTED, None));
    // An identity that is not one: refused for good, nothing handed on.
    let (status, _, why) = consume_as(id, 0, &logs("identity-c"), 1103, "{not json");
    assert_eq!(status, PERMANENT);
    assert!(
        why.as_deref()
            .is_some_and(|why| why.starts_with("the caller's identity is not readable")),
        "{why:?}"
    );
    stop(id);
    let collector = collector();
    let handed: Vec<_> = collector
        .received
        .iter()
        .filter(|(h, _, _)| *h == handle)
        .collect();
    assert_eq!(handed.len(), 2);
    let senders: Vec<serde_json::Value> = collector
        .senders
        .iter()
        .filter(|(h, _)| *h == handle)
        .map(|(_, json)| serde_json::from_str(json).unwrap())
        .collect();
    assert_eq!(
        senders,
        [serde_json::from_str::<serde_json::Value>(acme).unwrap()]
    );
}

#[test]
fn the_next_consumers_refusals_reach_the_caller_retryable_or_dropped() {
    let retry = 201;
    collector().modes.insert(retry, Mode::Refuse(RETRYABLE));
    let id = started(PROCESSOR, DEDUP, retry);
    let (status, _, why) = consume_bytes(id, 0, &logs("r"), 2001);
    assert_eq!(status, RETRYABLE);
    assert_eq!(why.as_deref(), Some("refused by the stand-in"));
    stop(id);

    // A permanent refusal downstream is dropped there (counted): the caller is answered
    // "accepted", as an exporter answers for what its upstream rejects for good.
    let permanent = 202;
    collector().modes.insert(permanent, Mode::Refuse(PERMANENT));
    let id = started(PROCESSOR, DEDUP, permanent);
    assert_eq!(consume_bytes(id, 0, &logs("p"), 2002).0, ACCEPTED);
    stop(id);
}

#[test]
fn what_is_not_otlp_is_refused_for_good_and_a_stopped_component_retryable() {
    let id = started(PROCESSOR, DEDUP, 301);
    let (status, released, why) = consume_bytes(id, 0, &[0xff, 0xff, 0xff], 3001);
    assert_eq!(status, PERMANENT);
    assert!(released);
    let why = why.unwrap_or_default();
    assert!(
        why.starts_with("not an OTLP logs export request: "),
        "{why}"
    );
    let (status, _, why) = consume_bytes(id, 7, &logs("x"), 3002);
    assert_eq!(
        (status, why.as_deref()),
        (PERMANENT, Some("unknown signal code 7"))
    );
    stop(id);
    let (status, _, why) = consume_bytes(id, 0, &logs("x"), 3003);
    assert_eq!(status, RETRYABLE);
    assert_eq!(why, Some(format!("otapdf component {id} is not running")));
}

#[test]
fn bytes_an_exporter_still_holds_are_released_later_by_an_event() {
    // An exporter that cannot reach its upstream keeps the payload, retrying: the call is
    // answered once the exporter took it, the bytes are released when it lets go of them.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"));
    let config = format!(
        r#"{{ "nodes": {{ "up": {{ "type": "exporter:otlp_http",
              "config": {{ "endpoint": "http://127.0.0.1:{port}" }} }} }} }}"#
    );
    let id = started(EXPORTER, &config, 401);
    let bytes: &'static [u8] = Box::leak(logs("held").into_boxed_slice());
    let token = 4242;
    let (status, released, why) = consume_bytes(id, 0, bytes, token);
    assert_eq!((status, why), (ACCEPTED, None));
    assert!(!released, "the exporter should still hold the bytes");
    stop(id);
    assert!(
        collector().released.contains(&token),
        "the bytes were not released when the exporter stopped"
    );
}

#[test]
fn an_extension_component_authorizes_and_signs_with_its_capabilities() {
    let id = started(
        EXTENSION,
        r#"{ "type": "bearer_auth", "config": { "token": "s3cret" } }"#,
        0,
    );
    assert_eq!(
        take(ffi::otapdf_server_header(id)).as_deref(),
        Some("authorization")
    );
    let decide = |value: &str| {
        let mut detail = std::ptr::null_mut();
        // SAFETY: valid pointers for the call.
        let code = unsafe { ffi::otapdf_authorize(id, value.as_ptr(), value.len(), &mut detail) };
        (code, take(detail).unwrap_or_default())
    };
    let (code, identity) = decide("Bearer s3cret");
    assert_eq!(code, 0);
    let identity: serde_json::Value = serde_json::from_str(&identity).expect("JSON");
    assert_eq!(identity["attributes"], serde_json::json!([]));
    let subject = identity["subject"].as_str().expect("a subject");
    assert!(
        !subject.is_empty() && !subject.contains("s3cret"),
        "{subject}"
    );
    assert_eq!(decide("Bearer wrong"), (1, "invalid".to_owned()));
    assert_eq!(decide("Basic s3cret"), (1, "invalid".to_owned()));
    assert_eq!(decide(""), (1, "invalid".to_owned()));
    let (mut name, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: valid pointers for the call.
    let code = unsafe { ffi::otapdf_client_header(id, &mut name, &mut value) };
    assert_eq!(
        (code, take(name), take(value)),
        (
            0,
            Some("authorization".to_owned()),
            Some("Bearer s3cret".to_owned())
        )
    );
    stop(id);
    assert_eq!(
        decide("Bearer s3cret").0,
        2,
        "a stopped extension decides nothing"
    );
}

#[test]
fn configuration_errors_are_located_inside_the_components_configuration() {
    let error = validate(
        PROCESSOR,
        r#"{ "extensions": { "seen": { "type": "extension:memory_kv" } },
             "nodes": { "dedup": { "type": "processor:dedup", "config": { "ttl": "forever" },
                                   "capabilities": { "key_value_store": "seen" } } } }"#,
    )
    .unwrap_or_else(|| panic!("accepted a bad ttl"));
    assert!(
        error.starts_with("at `nodes.dedup.config.ttl`: "),
        "{error}"
    );

    let error = validate(
        PROCESSOR,
        r#"{ "nodes": { "d": { "type": "processor:dedupe" } } }"#,
    )
    .unwrap_or_else(|| panic!("accepted an unknown type"));
    assert!(error.starts_with("at `nodes.d.type`: "), "{error}");
    assert!(error.contains("`dedup`"), "no suggestion: {error}");

    let error = validate(
        EXTENSION,
        r#"{ "type": "bearer_auth", "config": { "tokn": "x" } }"#,
    )
    .unwrap_or_else(|| panic!("accepted an unknown field"));
    assert!(error.starts_with("at `config"), "{error}");
    assert!(error.contains("tokn"), "{error}");

    assert_eq!(
        start(RECEIVER, r#"{ "nodes": {} }"#, 0),
        Err("`nodes` is empty: declare at least one node".to_owned())
    );
    assert_eq!(validate(PROCESSOR, DEDUP), None);
}

#[test]
fn a_full_queue_is_refused_at_once_retryable_and_what_it_held_is_delivered_after() {
    // The stand-in Collector answers nothing: the component fills, queue by queue (each
    // holds `queue_size`), until a call is refused at once.
    let handle = 501;
    collector().modes.insert(handle, Mode::Hold);
    let config = DEDUP.replace("\"queue_size\": 4", "\"queue_size\": 1");
    let id = started(PROCESSOR, &config, handle);
    let (results, outcomes) = std::sync::mpsc::channel();
    let mut callers = Vec::new();
    let refused = loop {
        assert!(callers.len() < 64, "64 calls waiting and none refused");
        let results = results.clone();
        let n = callers.len();
        callers.push(std::thread::spawn(move || {
            let batch = logs(&format!("full-{n}"));
            let _ = results.send(consume_bytes(id, 0, &batch, 5000 + n as u64));
        }));
        // A call either waits (the component took it) or comes back refused at once; a
        // slow machine only makes this start one more call than needed.
        if let Ok(outcome) = outcomes.recv_timeout(std::time::Duration::from_millis(200)) {
            break outcome;
        }
    };
    assert_eq!(
        refused,
        (
            RETRYABLE,
            true,
            Some("the otapdf component's queue is full (queue_size 1)".to_owned())
        )
    );
    let waiting = callers.len() - 1;
    // Answer everything the component handed over, until every waiting call returned.
    let mut answered = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while answered < waiting {
        assert!(
            std::time::Instant::now() < deadline,
            "{answered} of {waiting} answered"
        );
        let held = collector().held.remove(&handle).unwrap_or_default();
        for completion in held {
            // SAFETY: a completion the bridge handed the callback, answered once.
            unsafe { ffi::otapdf_complete(completion, ACCEPTED, std::ptr::null(), 0, 0) };
        }
        while let Ok(outcome) = outcomes.recv_timeout(std::time::Duration::from_millis(20)) {
            assert_eq!(outcome.0, ACCEPTED, "{outcome:?}");
            answered += 1;
        }
    }
    for caller in callers {
        caller
            .join()
            .unwrap_or_else(|_| panic!("a caller panicked"));
    }
    stop(id);
    let delivered = collector()
        .received
        .iter()
        .filter(|(h, _, _)| *h == handle)
        .count();
    assert_eq!(delivered, waiting);
}

/// `processor:bridge_test_panic`: panics where its config says (`at: validate` as the
/// configuration is checked, on the caller's thread; `at: process` on the engine's).
mod panicking {
    use otap_df::node::serde::Deserialize;
    use otap_df::node::{
        ComponentKind, LocalProcessor, NodeError, NodeFactory, NodeInstance, OtlpPayload, Outputs,
        async_trait,
    };

    #[derive(Deserialize)]
    #[serde(crate = "otap_df::node::serde", deny_unknown_fields)]
    struct Config {
        at: String,
    }

    pub static PANIC: NodeFactory = NodeFactory::new(
        ComponentKind::Processor,
        "bridge_test_panic",
        "bridge-tests",
    )
    // It hands on what it takes: a payload it loses in a panic is not accepted.
    .forwards_acknowledgements()
    .validate_config(|config| {
        let decoded: Config = config.decode()?;
        assert!(decoded.at != "validate", "a node's validator panicked");
        Ok(())
    })
    .create(|_, _, _| Ok(NodeInstance::Processor(Box::new(Panics))));

    otap_df::node::submit_node!(PANIC);

    struct Panics;

    #[async_trait(?Send)]
    impl LocalProcessor for Panics {
        async fn process(&mut self, _: OtlpPayload, _: &Outputs) -> Result<(), NodeError> {
            panic!("a node panicked on the data path");
        }
    }
}

#[test]
fn a_rust_panic_is_an_error_at_the_boundary_never_an_unwind_into_the_caller() {
    // On the caller's thread: the configuration check.
    let config = |at: &str| {
        format!(
            r#"{{ "nodes": {{ "p": {{ "type": "processor:bridge_test_panic", "config": {{ "at": "{at}" }} }} }} }}"#
        )
    };
    let error = validate(PROCESSOR, &config("validate")).unwrap_or_default();
    assert!(
        error.starts_with("otap-df panicked: a node's validator panicked"),
        "{error}"
    );
    assert_eq!(
        start(PROCESSOR, &config("validate"), 601).map_err(|e| e.starts_with("otap-df panicked")),
        Err(true)
    );
    // On the engine's thread: the node fails, the payload is refused, retryable.
    let id = started(PROCESSOR, &config("process"), 602);
    let (status, released, why) = consume_bytes(id, 0, &logs("boom"), 6001);
    assert_eq!(status, RETRYABLE, "{why:?}");
    assert!(released);
    assert!(why.is_some());
    // The Collector's side was told, once the engine had ended (a bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ended = loop {
        if let Some(why) = collector().ended.get(&602).cloned() {
            break why;
        }
        assert!(std::time::Instant::now() < deadline, "no ending event");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(
        ended.contains("a node panicked on the data path"),
        "{ended}"
    );
    // The engine ended at the failure: later calls are answered at once, with how it ended.
    // (The event comes after the inlet closed; a call between the failure and the engine's
    // end is refused by the inlet's node instead, retryable too, so the test waits for it.)
    let (status, _, why) = consume_bytes(id, 0, &logs("after"), 6002);
    assert_eq!(status, RETRYABLE);
    let why = why.unwrap_or_default();
    assert!(
        why.starts_with("the otapdf component's engine ended: "),
        "{why}"
    );
    // The engine stopped itself at the failure; stopping it reports how it ended.
    let stopped = take(ffi::otapdf_stop(id)).unwrap_or_default();
    assert!(
        stopped.contains("a node panicked on the data path"),
        "{stopped}"
    );
}

#[test]
fn stopping_waits_for_the_answers_the_next_consumer_still_owes() {
    let handle = 901;
    collector().modes.insert(handle, Mode::Hold);
    let id = started(PROCESSOR, DEDUP, handle);
    let caller = std::thread::spawn(move || consume_bytes(id, 0, &logs("owed"), 9001));
    // The payload reaches the stand-in Collector, which holds its answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let completion = loop {
        if let Some(completion) = collector().held.get_mut(&handle).and_then(Vec::pop) {
            break completion;
        }
        assert!(std::time::Instant::now() < deadline, "nothing handed over");
        std::thread::yield_now();
    };
    // Stopping: the component is gone for new calls at once, and its outlet waits for the
    // answer it is owed (within the engine's shutdown deadline) before its engine ends.
    let stopper = std::thread::spawn(move || stop(id));
    while !ffi::otapdf_metrics(id).is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stop did not begin"
        );
        std::thread::yield_now();
    }
    // SAFETY: the completion the bridge handed over, answered once.
    unsafe { ffi::otapdf_complete(completion, ACCEPTED, std::ptr::null(), 0, 0) };
    stopper
        .join()
        .unwrap_or_else(|_| panic!("the stop panicked"));
    // Settled by the answer that came while stopping: the caller was told accepted.
    let (status, _, why) = caller
        .join()
        .unwrap_or_else(|_| panic!("the caller panicked"));
    assert_eq!((status, why), (ACCEPTED, None));
}
