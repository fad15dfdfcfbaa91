//! The engine's lifecycle guarantees, recorded by instrumented extensions and nodes: what
//! starts before what, what waits for readiness, what drains, and what goes last — on a
//! graceful end, a node error, a node panic, a readiness timeout and an extension exit.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::time::Duration;

use otap_df_core::node::CounterSnapshot;
use otap_df_core::resolve::{ResolvedConfig, load_with_env};
use otap_df_core::runtime::{
    Engine, EngineError, ExtensionState, ExtensionTransition, Failure, RunOptions, RunPhase,
};
use otap_df_tests::recording::{self, events};

fn resolve(text: &str) -> ResolvedConfig {
    let registry = recording::registry_with(otap_df_nodes::register);
    load_with_env(text, "runtime.yaml", &registry, &|_| None)
        .unwrap_or_else(|errors| panic!("invalid test configuration:\n{errors}"))
}

/// One pipeline `g/p`: extensions `auth` (shared recorder, bound to the source as its token
/// provider) and `store` (local recorder, bound to the source as its key/value store), then
/// `source -> sink`.
fn lifecycle_config(log: &str, auth: &str, store: &str, source: &str, sink: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          auth: {{ type: extension:recorder, startup_timeout: 500ms, config: {{ log: {log}, {auth} }} }}
          store: {{ type: extension:local_recorder, startup_timeout: 500ms, config: {{ log: {log}, {store} }} }}
        nodes:
          source:
            type: receiver:recording_source
            config: {{ log: {log}, {source} }}
            capabilities: {{ bearer_token_provider: auth, key_value_store: store }}
          sink:
            type: exporter:recording_sink
            config: {{ log: {log}, {sink} }}
        connections:
          - {{ from: source, to: sink }}
"
    )
}

fn run(text: &str, options: RunOptions) -> Result<(), EngineError> {
    Engine::new(resolve(text), options).run()
}

/// The failures of a run that must fail.
fn failures(text: &str) -> Vec<Failure> {
    match run(text, options()) {
        Ok(()) => panic!("the run succeeded"),
        Err(error) => error.0,
    }
}

fn node_failure(node: &str, reason: &str) -> Failure {
    Failure::Node {
        pipeline: "g/p".into(),
        node: node.into(),
        core: 0,
        reason: reason.into(),
    }
}

fn options() -> RunOptions {
    RunOptions {
        shutdown_timeout: Duration::from_secs(5),
        ..otap_df_tests::engine::one_core_options()
    }
}

fn position(events: &[String], event: &str) -> usize {
    events
        .iter()
        .position(|e| e == event)
        .unwrap_or_else(|| panic!("no `{event}` in {events:?}"))
}

/// Every `<extension>:start` precedes every node event, every node event precedes every
/// `<extension>:stop`, and extensions stop in the reverse of their start order.
fn assert_extensions_wrap_nodes(events: &[String], extensions: &[&str], nodes: &[&str]) {
    let is_node = |e: &String| nodes.iter().any(|n| e.starts_with(&format!("{n}:")));
    let first_node = events.iter().position(is_node).expect("a node event");
    let last_node = events.iter().rposition(is_node).expect("a node event");
    let starts: Vec<usize> = extensions
        .iter()
        .map(|x| position(events, &format!("{x}:start")))
        .collect();
    let stops: Vec<usize> = extensions
        .iter()
        .map(|x| position(events, &format!("{x}:stop")))
        .collect();
    assert!(
        starts.iter().all(|&s| s < first_node),
        "an extension started after a node: {events:?}"
    );
    assert!(
        stops.iter().all(|&s| s > last_node),
        "an extension stopped before a node was done: {events:?}"
    );
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "extensions did not start in declaration order: {events:?}"
    );
    assert!(
        stops.windows(2).all(|w| w[0] > w[1]),
        "extensions did not stop in reverse start order: {events:?}"
    );
}

#[test]
fn graceful_end_starts_extensions_first_waits_for_readiness_and_stops_them_last() {
    let log = "graceful";
    let text = lifecycle_config(
        log,
        "behaviour: ready, ready_after: 50ms",
        "behaviour: ready, ready_after: 20ms",
        "count: 100",
        "delay: 1ms",
    );
    run(&text, options()).expect("a clean run");
    let events = events(log);
    assert_eq!(
        events,
        [
            "auth:start",
            "auth:ready",
            "store:start",
            "store:ready",
            "source:start",
            "source:sent 100",
            "sink:finish 100",
            "store:stop",
            "auth:stop",
        ],
    );
}

#[test]
fn a_node_error_still_drains_the_other_nodes_and_stops_extensions_last() {
    let log = "node-error";
    let text = lifecycle_config(
        log,
        "behaviour: ready",
        "behaviour: background",
        "count: 20, then: fail",
        "delay: 1ms",
    );
    assert_eq!(
        failures(&text),
        [node_failure(
            "source",
            "node `source` failed: failed on purpose"
        )]
    );
    let events = events(log);
    // Everything the source sent before failing was exported.
    assert!(events.contains(&"sink:finish 20".to_owned()), "{events:?}");
    assert_extensions_wrap_nodes(&events, &["auth", "store"], &["source", "sink"]);
}

#[test]
fn a_failing_exporter_stops_the_receiver_and_extensions_still_go_last() {
    let log = "sink-error";
    let text = lifecycle_config(
        log,
        "behaviour: ready",
        "behaviour: ready",
        "count: 5, then: wait",
        "fail_at: 3",
    );
    assert_eq!(
        failures(&text),
        [node_failure(
            "sink",
            "node `sink` failed: failed on purpose"
        )]
    );
    let events = events(log);
    assert!(events.contains(&"source:shutdown".to_owned()), "{events:?}");
    assert_extensions_wrap_nodes(&events, &["auth", "store"], &["source", "sink"]);
}

#[test]
fn a_node_panic_is_reported_by_name_and_extensions_still_go_last() {
    let log = "node-panic";
    let text = lifecycle_config(
        log,
        "behaviour: background",
        "behaviour: ready",
        "count: 5, then: wait",
        "panic_at: 2",
    );
    assert_eq!(
        failures(&text),
        [node_failure(
            "sink",
            "panicked: sink `sink` panicked on purpose"
        )]
    );
    let events = events(log);
    assert_eq!(
        events.iter().filter(|e| e.starts_with("sink:")).count(),
        1,
        "{events:?}"
    );
    assert!(events.contains(&"source:shutdown".to_owned()), "{events:?}");
    assert_extensions_wrap_nodes(&events, &["auth", "store"], &["source", "sink"]);
}

#[test]
fn a_receiver_panic_drains_the_exporter_before_extensions_stop() {
    let log = "source-panic";
    let text = lifecycle_config(
        log,
        "behaviour: ready",
        "behaviour: ready",
        "count: 30, then: panic",
        "delay: 1ms",
    );
    assert_eq!(
        failures(&text),
        [node_failure(
            "source",
            "panicked: source `source` panicked on purpose"
        )]
    );
    let events = events(log);
    assert!(events.contains(&"sink:finish 30".to_owned()), "{events:?}");
    assert_extensions_wrap_nodes(&events, &["auth", "store"], &["source", "sink"]);
}

#[test]
fn a_shared_extension_that_is_never_ready_fails_the_start_by_name_and_no_node_runs() {
    let log = "never-ready-shared";
    let text = lifecycle_config(
        log,
        "behaviour: never_ready",
        "behaviour: ready",
        "count: 5",
        "delay: 1ms",
    );
    let error = run(&text, options()).expect_err("auth is never ready");
    assert_eq!(
        error.0,
        [Failure::ReadinessTimeout {
            pipeline: "g/p".into(),
            extension: "auth".into(),
            timeout: Duration::from_millis(500),
            reason: None,
        }]
    );
    assert_eq!(
        error.to_string(),
        "extension `auth` of pipeline `g/p` was not ready within its startup_timeout of 500ms; \
         nodes were not started"
    );
    // The local extension was never started; the one that was is shut down.
    assert_eq!(events(log), ["auth:start", "auth:stop"]);
}

#[test]
fn a_local_extension_that_is_never_ready_fails_the_start_by_name_and_no_node_runs() {
    let log = "never-ready-local";
    let text = lifecycle_config(
        log,
        "behaviour: ready",
        "behaviour: never_ready",
        "count: 5",
        "delay: 1ms",
    );
    let error = run(&text, options()).expect_err("store is never ready");
    assert_eq!(
        error.0,
        [Failure::ReadinessTimeout {
            pipeline: "g/p".into(),
            extension: "store".into(),
            timeout: Duration::from_millis(500),
            reason: None,
        }]
    );
    assert_eq!(
        events(log),
        [
            "auth:start",
            "auth:ready",
            "store:start",
            "store:stop",
            "auth:stop"
        ]
    );
}

#[test]
fn an_extension_that_fails_before_it_is_ready_is_reported_by_its_error_not_as_a_timeout() {
    for (log, auth, store, extension) in [
        (
            "fail-start-shared",
            "behaviour: fail_start, ready_after: 20ms",
            "behaviour: ready",
            "auth",
        ),
        (
            "fail-start-local",
            "behaviour: ready",
            "behaviour: fail_start, ready_after: 20ms",
            "store",
        ),
    ] {
        let text = lifecycle_config(log, auth, store, "count: 5", "delay: 1ms");
        let error = run(&text, options()).expect_err("an extension fails to start");
        assert_eq!(
            error.0,
            [Failure::ExtensionExited {
                pipeline: "g/p".into(),
                extension: extension.into(),
                reason: format!("extension `{extension}` failed: cannot reach its upstream"),
            }],
            "{log}"
        );
        let events = events(log);
        assert!(
            !events.iter().any(|e| e.starts_with("source:")),
            "no node ran: {events:?}"
        );
    }
}

#[test]
fn an_extension_that_exits_early_is_an_error_naming_it_and_shuts_the_pipeline_down() {
    for (log, auth, store, extension) in [
        ("exit-shared", "behaviour: exit", "behaviour: ready", "auth"),
        ("exit-local", "behaviour: ready", "behaviour: exit", "store"),
    ] {
        let text = lifecycle_config(log, auth, store, "count: 5, then: wait", "delay: 1ms");
        let error = run(&text, options()).expect_err("an extension exits");
        assert_eq!(
            error.0,
            [Failure::ExtensionExited {
                pipeline: "g/p".into(),
                extension: extension.into(),
                reason: format!("extension `{extension}` failed: lost its upstream"),
            }],
            "{log}"
        );
        // The waiting source was told to stop: the run ended by itself.
        assert!(events(log).contains(&"source:shutdown".to_owned()), "{log}");
    }
}

#[test]
fn an_extension_that_panics_is_an_error_naming_it() {
    let log = "extension-panic";
    let text = lifecycle_config(
        log,
        "behaviour: ready",
        "behaviour: panic",
        "count: 5, then: wait",
        "delay: 1ms",
    );
    let error = run(&text, options()).expect_err("store panics");
    assert_eq!(
        error.0,
        [Failure::ExtensionExited {
            pipeline: "g/p".into(),
            extension: "store".into(),
            reason: "panicked: recorder `store` panicked on purpose".into(),
        }]
    );
}

#[test]
fn passive_and_unclaimed_extensions_are_never_started() {
    let log = "passive";
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          auth: {{ type: extension:recorder, config: {{ log: {log}, behaviour: passive }} }}
          spare: {{ type: extension:recorder, config: {{ log: {log}, behaviour: ready }} }}
        nodes:
          source:
            type: receiver:recording_source
            config: {{ log: {log}, count: 3 }}
            capabilities: {{ bearer_token_provider: auth }}
          sink:
            type: exporter:recording_sink
            config: {{ log: {log}, ignore_store: true }}
            capabilities: {{ key_value_store: spare }}
        connections:
          - {{ from: source, to: sink }}
"
    );
    let engine = Engine::new(resolve(&text), options());
    let telemetry = engine.telemetry();
    assert_eq!(telemetry.phase(), RunPhase::Starting);
    assert_eq!(
        telemetry.readiness(),
        Err(vec!["the engine is starting".to_owned()])
    );
    engine.run().expect("a clean run");
    assert_eq!(
        events(log),
        ["source:start", "source:sent 3", "sink:finish 3"]
    );
    // Passive and unclaimed extensions never hold readiness back; a finished run is not ready.
    assert_eq!(telemetry.phase(), RunPhase::Stopped);
    assert_eq!(
        telemetry.readiness(),
        Err(vec!["the engine is stopped".to_owned()])
    );
    let states: Vec<(String, ExtensionState)> = telemetry
        .extension_states()
        .into_iter()
        .map(|(_, extension, _, state)| (extension, state))
        .collect();
    assert_eq!(
        states,
        [
            ("auth".to_owned(), ExtensionState::Passive),
            ("spare".to_owned(), ExtensionState::Unclaimed),
        ]
    );
}

/// The lifecycle states `extension` went through in a run of `text` (its result ignored).
fn transitions_of(text: &str, extension: &str) -> Vec<ExtensionState> {
    let engine = Engine::new(resolve(text), options());
    let telemetry = engine.telemetry();
    let _ = engine.run();
    telemetry
        .extension_transitions()
        .into_iter()
        .filter(|t| t.extension == extension)
        .map(|ExtensionTransition { state, .. }| state)
        .collect()
}

#[test]
fn shared_and_local_extensions_go_through_the_same_states() {
    use ExtensionState::{Created, Failed, Ready, Starting, Stopped, Unclaimed};
    // `auth` is shared (`extension:recorder`), `store` local (`extension:local_recorder`):
    // one start routine and one stop routine serve both.
    let ready = lifecycle_config(
        "states-ready",
        "behaviour: ready",
        "behaviour: ready",
        "count: 2",
        "delay: 1ms",
    );
    let both_ready = [Created, Starting, Ready, Stopped];
    assert_eq!(transitions_of(&ready, "auth"), both_ready);
    assert_eq!(transitions_of(&ready, "store"), both_ready);
    // Without a readiness probe: the same states (a local extension once skipped `starting`).
    let background = lifecycle_config(
        "states-background",
        "behaviour: background",
        "behaviour: background",
        "count: 2",
        "delay: 1ms",
    );
    assert_eq!(transitions_of(&background, "auth"), both_ready);
    assert_eq!(transitions_of(&background, "store"), both_ready);

    let not_ready = [Created, Starting, Failed("not ready".into()), Stopped];
    let shared_never = lifecycle_config(
        "states-shared-never",
        "behaviour: never_ready",
        "behaviour: ready",
        "count: 2",
        "delay: 1ms",
    );
    assert_eq!(transitions_of(&shared_never, "auth"), not_ready);
    let local_never = lifecycle_config(
        "states-local-never",
        "behaviour: ready",
        "behaviour: never_ready",
        "count: 2",
        "delay: 1ms",
    );
    assert_eq!(transitions_of(&local_never, "store"), not_ready);

    for extension_type in ["recorder", "local_recorder"] {
        let unclaimed = format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          spare: {{ type: extension:{extension_type}, config: {{ log: states-unclaimed, behaviour: ready }} }}
        nodes:
          source: {{ type: receiver:recording_source, config: {{ log: states-unclaimed, count: 1 }} }}
          sink:
            type: exporter:recording_sink
            config: {{ log: states-unclaimed, ignore_store: true }}
            capabilities: {{ key_value_store: spare }}
        connections:
          - {{ from: source, to: sink }}
"
        );
        assert_eq!(
            transitions_of(&unclaimed, "spare"),
            [Created, Unclaimed],
            "{extension_type}"
        );
    }
}

#[test]
fn an_extension_that_reports_itself_degraded_is_shown_degraded_while_it_runs() {
    let log = "degraded";
    let text = lifecycle_config(
        log,
        "behaviour: degraded",
        "behaviour: ready",
        "count: 1, then: wait",
        "delay: 1ms",
    );
    let engine = Engine::new(resolve(&text), options());
    let telemetry = engine.telemetry();
    let shutdown = engine.shutdown_handle();
    let run = std::thread::spawn(move || engine.run());
    let degraded = recording::wait_for(log, "source:start", Duration::from_secs(10));
    let states: Vec<(String, ExtensionState)> = telemetry
        .extension_states()
        .into_iter()
        .map(|(_, extension, _, state)| (extension, state))
        .collect();
    let summary = telemetry.summary();
    shutdown.request();
    run.join().expect("engine thread").expect("a clean run");
    assert!(degraded, "the source never started: {:?}", events(log));
    let why = "its source went away; serving the last good value";
    assert_eq!(
        states,
        [
            ("auth".to_owned(), ExtensionState::Degraded(why.to_owned())),
            ("store".to_owned(), ExtensionState::Ready),
        ]
    );
    assert!(
        summary.contains(&format!("auth=degraded: {why}")),
        "{summary}"
    );
}

#[test]
fn local_extensions_run_once_per_core_and_all_stop_after_every_node() {
    let log = "two-cores";
    let text = lifecycle_config(
        log,
        "behaviour: ready",
        "behaviour: ready",
        "count: 10",
        "delay: 1ms",
    );
    let options = RunOptions {
        cores: Some(2),
        ..options()
    };
    run(&text, options).expect("a clean run");
    let events = events(log);
    let count = |event: &str| events.iter().filter(|e| *e == event).count();
    assert_eq!(count("auth:start"), 1, "{events:?}");
    assert_eq!(count("auth:stop"), 1, "{events:?}");
    assert_eq!(count("store:start"), 2, "{events:?}");
    assert_eq!(count("store:stop"), 2, "{events:?}");
    assert_eq!(count("sink:finish 10"), 2, "{events:?}");
    // The shared extension is the first thing to start and the last to stop.
    assert_eq!(events.first().map(String::as_str), Some("auth:start"));
    assert_eq!(events.last().map(String::as_str), Some("auth:stop"));
}

#[test]
fn a_slow_exporter_holds_the_receiver_to_the_channel_capacity() {
    let log = "backpressure";
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          source: {{ type: receiver:recording_source, config: {{ log: {log}, count: 300 }} }}
          sink: {{ type: exporter:recording_sink, config: {{ log: {log}, delay: 1ms }} }}
        connections:
          - {{ from: source, to: sink }}
"
    );
    let options = RunOptions {
        channel_capacity: 8,
        ..options()
    };
    run(&text, options).expect("a clean run");
    // On one core the source refills the slot each export frees while the sink sleeps: it is
    // always exactly a full queue ahead, never more.
    assert_eq!(recording::max_lag(log), 8);
    assert!(events(log).contains(&"sink:finish 300".to_owned()));
}

#[test]
fn processors_and_exporters_get_timer_ticks() {
    let log = "ticks";
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          source: {{ type: receiver:recording_source, config: {{ log: {log}, count: 1, then: wait }} }}
          sink: {{ type: exporter:recording_sink, config: {{ log: {log} }} }}
        connections:
          - {{ from: source, to: sink }}
"
    );
    let engine = Engine::new(
        resolve(&text),
        RunOptions {
            timer_interval: Some(Duration::from_millis(10)),
            ..options()
        },
    );
    let shutdown = engine.shutdown_handle();
    let run = std::thread::spawn(move || engine.run());
    let ticked = recording::wait_for(log, "sink:tick", Duration::from_secs(10));
    shutdown.request();
    run.join().expect("engine thread").expect("a clean run");
    assert!(ticked, "no tick within 10s: {:?}", events(log));
    assert_eq!(
        events(log),
        [
            "source:start",
            "source:sent 1",
            "sink:tick",
            "source:shutdown",
            "sink:finish 1"
        ]
    );
}

fn dedup_config(log: &str, store: &str, count: u64, distinct: u64) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          store: {store}
        nodes:
          source: {{ type: receiver:recording_source, config: {{ log: {log}, count: {count}, distinct: {distinct} }} }}
          dedup: {{ type: processor:dedup, capabilities: {{ key_value_store: store }} }}
          sink: {{ type: exporter:recording_sink, config: {{ log: {log} }} }}
        connections:
          - {{ from: source, to: dedup }}
          - {{ from: dedup, to: sink }}
"
    )
}

/// The counters of node `dedup` after a run.
fn dedup_counts(text: &str) -> CounterSnapshot {
    let engine = Engine::new(resolve(text), options());
    let telemetry = engine.telemetry();
    engine.run().expect("a clean run");
    telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == "dedup")
        .expect("dedup counters")
        .counts
}

#[test]
fn dedup_drops_exactly_the_repeated_batches() {
    let log = "dedup-exact";
    let text = dedup_config(log, "{ type: extension:memory_kv }", 100, 30);
    assert_eq!(
        dedup_counts(&text),
        CounterSnapshot {
            records_in: 100,
            records_out: 30,
            records_dropped: 70,
            records_failed: 0,
            errors: 0,
        }
    );
    assert!(events(log).contains(&"sink:finish 30".to_owned()));
}

#[test]
fn dedup_forwards_every_batch_while_the_store_fails() {
    let log = "dedup-fail-open";
    // Payload i has content i % 30. The store fails its first 40 calls: payloads 0..40 are
    // forwarded without deduplication (10 of them repeats) and counted as errors. Then the
    // store sees contents 10..30 (i = 40..60) and 0..10 (i = 60..70) for the first time and
    // forwards them; the remaining 30 payloads are repeats it remembers, and are dropped.
    let text = dedup_config(
        log,
        "{ type: extension:flaky_kv, config: { fail_first: 40 } }",
        100,
        30,
    );
    assert_eq!(
        dedup_counts(&text),
        CounterSnapshot {
            records_in: 100,
            records_out: 70,
            records_dropped: 30,
            records_failed: 0,
            errors: 40,
        }
    );
    assert!(events(log).contains(&"sink:finish 70".to_owned()));
}

#[test]
fn what_nodes_hold_when_the_shutdown_deadline_aborts_them_is_counted_lost() {
    let text = "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        nodes:
          source: { type: receiver:generator, config: { count: 5, batch_size: 2 } }
          sink: { type: exporter:recording_sink, config: { log: deadline, delay: 10s } }
        connections:
          - { from: source, to: sink }
";
    let engine = Engine::new(
        resolve(text),
        RunOptions {
            shutdown_timeout: Duration::from_millis(300),
            ..options()
        },
    );
    let telemetry = engine.telemetry();
    let shutdown = engine.shutdown_handle();
    let run = std::thread::spawn(move || engine.run());
    let counts = |node: &str| {
        telemetry
            .node_totals()
            .into_iter()
            .find(|t| t.node == node)
            .map(|t| t.counts)
            .unwrap_or_default()
    };
    // All ten records generated, the first batch in the sink's hands (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counts("source").records_out < 10 || counts("sink").records_in < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    shutdown.request();
    let failures = run.join().unwrap().expect_err("the sink is aborted").0;
    assert_eq!(
        failures,
        [Failure::ShutdownTimeout {
            pipeline: "g/p".into(),
            task: "sink".into()
        }]
    );
    // Two records in the sink's export, eight in its queue.
    assert_eq!(counts("sink").records_out, 0);
    assert_eq!(telemetry.records_lost_at_deadline(), 10);
    assert_eq!(telemetry.records_lost(), 10);
    assert!(
        telemetry
            .summary()
            .ends_with("lost at the shutdown deadline: 10"),
        "{}",
        telemetry.summary()
    );
}

#[test]
fn an_extension_that_binds_another_is_built_after_it_starts_after_it_and_stops_before_it() {
    let log = "extension-binds-extension";
    // `front` is declared first and binds `back`, which binds the group's `outer`; only a node
    // binds `front`, and what it binds is started because it does.
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    extensions:
      outer: {{ type: extension:recorder, config: {{ log: {log}, behaviour: ready }} }}
    pipelines:
      p:
        extensions:
          front:
            type: extension:local_recorder
            config: {{ log: {log}, behaviour: ready }}
            capabilities: {{ key_value_store: back }}
          back:
            type: extension:local_recorder
            config: {{ log: {log}, behaviour: ready }}
            capabilities: {{ key_value_store: outer }}
        nodes:
          source:
            type: receiver:recording_source
            config: {{ log: {log}, count: 3 }}
            capabilities: {{ key_value_store: front }}
          sink:
            type: exporter:recording_sink
            config: {{ log: {log} }}
        connections:
          - {{ from: source, to: sink }}
"
    );
    let resolved = resolve(&text);
    let ids: Vec<&str> = resolved.pipelines[0]
        .extensions
        .iter()
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, ["back", "front"], "providers come first in the plan");
    run(&text, options()).expect("a clean run");
    assert_eq!(
        events(log),
        [
            "back:binds",
            "front:binds",
            "outer:start",
            "outer:ready",
            "back:start",
            "back:ready",
            "front:start",
            "front:ready",
            "source:start",
            "source:sent 3",
            "sink:finish 3",
            "front:stop",
            "back:stop",
            "outer:stop",
        ]
    );
}

#[test]
fn an_extension_only_an_unclaimed_extension_binds_is_not_started_either() {
    let log = "unclaimed-chain";
    let text = format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          auth: {{ type: extension:recorder, config: {{ log: {log}, behaviour: ready }} }}
          front:
            type: extension:recorder
            config: {{ log: {log}, behaviour: ready }}
            capabilities: {{ key_value_store: back }}
          back: {{ type: extension:recorder, config: {{ log: {log}, behaviour: ready }} }}
        nodes:
          source:
            type: receiver:recording_source
            config: {{ log: {log}, count: 2 }}
            capabilities: {{ bearer_token_provider: auth }}
          sink:
            type: exporter:recording_sink
            config: {{ log: {log}, ignore_store: true }}
            capabilities: {{ key_value_store: front }}
        connections:
          - {{ from: source, to: sink }}
"
    );
    let engine = Engine::new(resolve(&text), options());
    let telemetry = engine.telemetry();
    engine.run().expect("a clean run");
    assert_eq!(
        events(log),
        [
            "front:binds",
            "auth:start",
            "auth:ready",
            "source:start",
            "source:sent 2",
            "sink:finish 2",
            "auth:stop",
        ]
    );
    let states: Vec<(String, ExtensionState)> = telemetry
        .extension_states()
        .into_iter()
        .map(|(_, extension, _, state)| (extension, state))
        .collect();
    assert_eq!(
        states,
        [
            ("auth".to_owned(), ExtensionState::Stopped),
            ("back".to_owned(), ExtensionState::Unclaimed),
            ("front".to_owned(), ExtensionState::Unclaimed),
        ]
    );
}
