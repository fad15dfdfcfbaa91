//! A gateway whose exporter binds `extension:disk_queue`, run as the `otap-df` binary: what
//! it acknowledged survives `kill -9` while its upstream is down and arrives once the
//! upstream is up (at least once: duplicates are counted, none is missing); a full queue
//! answers `429` with `Retry-After` and loses nothing it acknowledged; an outage far longer
//! than the in-memory queue is taken without a refusal until the cap.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;
use support::binary::RunningBinary;
use support::{Running, free_port};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otap_df_core::data::Signal;
use otap_df_tests::temp::TempDir;

/// Records in each batch posted.
const RECORDS: usize = 20;

/// The gateway: `receiver:otlp_http` on `port` → `exporter:otlp_http` to `upstream`, queued
/// in a `disk_queue` in `queues` with `max_bytes`.
fn gateway(port: u16, upstream: u16, queues: &Path, max_bytes: u64) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          spool:
            type: extension:disk_queue
            config: {{ directory: '{}', max_bytes: {max_bytes}, segment_bytes: 65536 }}
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          out:
            type: exporter:otlp_http
            capabilities: {{ durable_queue: spool }}
            config:
              endpoint: 'http://127.0.0.1:{upstream}'
              retry: {{ initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: 10m }}
        connections:
          - {{ from: in, to: out }}
",
        queues.display()
    )
}

/// The upstream: `receiver:otlp_http` on `port` → `exporter:file` at `out`.
fn upstream(port: u16, out: &Path) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      up:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          out: {{ type: exporter:file, config: {{ path: '{}' }} }}
        connections:
          - {{ from: in, to: out }}
",
        out.display()
    )
}

/// The batch tagged `tag`: its body names the tag in every record.
fn batch(tag: &str) -> bytes::Bytes {
    otap_df_nodes::otlp::synthetic(Signal::Logs, RECORDS, tag, 1)
        .bytes()
        .clone()
}

/// Posts `body` to `port`: the status and `Retry-After`, or `None` when the connection
/// failed (the engine is gone).
fn try_post(port: u16, body: &[u8]) -> Option<(u16, Option<String>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    // The head is text; a refusal's body is a protobuf `Status`.
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let retry_after = answer
        .lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .map(str::to_owned);
    Some((status, retry_after))
}

/// Posts batches tagged `<prefix><n>` one after the other until the gateway on `port` answers
/// `429`: the tags it acknowledged, the one it refused, and the refusal's `Retry-After`.
fn fill_to_the_cap(port: u16, prefix: &str) -> (Vec<String>, String, Option<String>) {
    let mut acknowledged = Vec::new();
    loop {
        let tag = format!("{prefix}{}", acknowledged.len());
        match try_post(port, &batch(&tag)).expect("an answer") {
            (200, _) => acknowledged.push(tag),
            (429, retry_after) => return (acknowledged, tag, retry_after),
            (status, _) => panic!("status {status}"),
        }
        assert!(acknowledged.len() < 10_000, "the cap never refused");
    }
}

/// Waits until something listens on `port`.
fn listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many times each tag in `tags` occurs in the file `out` (an upstream's payloads).
fn occurrences(out: &Path, tags: &[String]) -> BTreeMap<String, usize> {
    let bytes = std::fs::read(out).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    tags.iter()
        .map(|tag| (tag.clone(), text.matches(&format!("{tag} record ")).count()))
        .collect()
}

/// Every tag of `tags` arrived in `out` `RECORDS` times at least, within a bound.
fn wait_arrived(out: &Path, tags: &[String]) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = occurrences(out, tags);
        if seen.values().all(|n| *n >= RECORDS) {
            return seen;
        }
        let missing = seen.values().filter(|n| **n < RECORDS).count();
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged batches never arrived",
            tags.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Eight senders post tagged batches to a gateway (a `disk_queue` of `max_bytes`, its
/// upstream down) until `enough` says so of the tags it acknowledged and the statuses it
/// refused with; the engine is killed with `SIGKILL`, the upstream comes up, the engine again:
/// every batch it acknowledged arrives. Returns what was refused.
fn kill_9_under_load(
    label: &str,
    max_bytes: u64,
    enough: impl Fn(usize, &[u16]) -> bool,
) -> Vec<u16> {
    let dir = TempDir::new(label);
    let (port, up) = (free_port(), free_port());
    let config = dir.path("gateway.yaml");
    std::fs::write(&config, gateway(port, up, &dir.path("queues"), max_bytes)).unwrap();
    let engine = RunningBinary::start(&config);
    listening(port);

    // The tags answered 200 are what the engine acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let (acknowledged, refused, stop) =
                (acknowledged.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let tag = format!("s{sender}n{n}");
                    match try_post(port, &batch(&tag)) {
                        Some((200, _)) => acknowledged.lock().unwrap().push(tag),
                        Some((status, _)) => refused.lock().unwrap().push(status),
                        None => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !enough(acknowledged.lock().unwrap().len(), &refused.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the load never got where it should"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.signal("-KILL");
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let (_, code) = engine.finish();
    assert_eq!(code, None, "killed by a signal");
    let acknowledged = acknowledged.lock().unwrap().clone();

    // The upstream comes up, then the gateway again: it resumes what it stored.
    let out = dir.path("upstream.otlp");
    let upstream = Running::listening(&upstream(up, &out), up);
    let engine = RunningBinary::start(&config);
    let seen = wait_arrived(&out, &acknowledged);
    engine.signal("-TERM");
    let (lines, code) = engine.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    upstream.stop().unwrap();
    let duplicated = seen.values().filter(|n| **n > RECORDS).count();
    eprintln!(
        "{label}: {} batches acknowledged, every one delivered; {duplicated} delivered more than once",
        acknowledged.len()
    );
    assert!(
        seen.values().all(|n| n % RECORDS == 0),
        "whole batches only"
    );
    let refused = refused.lock().unwrap();
    refused.clone()
}

#[test]
fn what_was_acknowledged_survives_kill_9_with_the_upstream_down_and_arrives_once_it_is_up() {
    // Far more than the in-memory queue holds (256 payloads, 100 requests in flight) is
    // taken while the upstream is down, without a refusal.
    let refused = kill_9_under_load("durable-queue-kill", 1 << 30, |acknowledged, _| {
        acknowledged >= 1500
    });
    assert_eq!(refused, Vec::<u16>::new(), "no refusal before the cap");
}

#[test]
fn at_the_cap_it_refuses_with_429_and_kill_9_loses_nothing_it_acknowledged() {
    let refused = kill_9_under_load("durable-queue-kill-full", 1 << 20, |_, refused| {
        refused.len() >= 50
    });
    assert!(refused.iter().all(|status| *status == 429), "{refused:?}");
}

#[test]
fn a_full_queue_answers_429_and_loses_nothing_it_acknowledged() {
    let dir = TempDir::new("durable-queue-full");
    let (port, up) = (free_port(), free_port());
    let config = dir.path("gateway.yaml");
    std::fs::write(&config, gateway(port, up, &dir.path("queues"), 1 << 20)).unwrap();
    let admin = free_port();
    let mut engine =
        RunningBinary::start_with(&config, &["--admin-listen", &format!("127.0.0.1:{admin}")]);
    listening(port);
    let (acknowledged, _, retry_after) = fill_to_the_cap(port, "b");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // The cap is reached: what was taken (each batch with its record's and entry's headers)
    // fills 1 MiB but for the end of each 64 KiB segment, where the next record did not fit.
    let sizes: Vec<u64> = acknowledged
        .iter()
        .map(|tag| batch(tag).len() as u64 + 24 + 11)
        .collect();
    let taken: u64 = sizes.iter().sum();
    let largest = sizes.iter().max().copied().unwrap_or(0);
    assert!(taken <= 1 << 20, "{taken}");
    assert!(taken + 17 * (largest + 8) > 1 << 20, "{taken} bytes taken");
    // The queue's depth, bytes and age are the extension's gauges on /status (refreshed
    // every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let gauges = loop {
        let status: serde_json::Value =
            serde_json::from_slice(&support::get(admin, "/status").body).expect("JSON");
        let spool = status["pipelines"][0]["extensions"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["id"] == "spool"))
            .cloned()
            .unwrap_or_default();
        let gauges = spool["instances"][0]["gauges"].clone();
        if gauges["entries"].as_u64() == Some(acknowledged.len() as u64)
            && gauges["oldest_age_seconds"].as_u64() >= Some(1)
        {
            break gauges;
        }
        assert!(
            Instant::now() < deadline,
            "the gauges never showed the queue: {spool}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let bytes = gauges["bytes"].as_u64().unwrap();
    assert!(bytes > (1 << 20) - 70_000 && bytes <= 1 << 20, "{gauges}");
    engine.drain_in_background();

    let out = dir.path("upstream.otlp");
    let upstream = Running::listening(&upstream(up, &out), up);
    let seen = wait_arrived(&out, &acknowledged);
    assert!(
        seen.values().all(|n| *n == RECORDS),
        "no restart: no duplicate"
    );
    // Delivered: room again.
    assert_eq!(try_post(port, &batch("after")).expect("an answer").0, 200);
    engine.signal("-TERM");
    let (lines, code) = engine.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    upstream.stop().unwrap();
    let last = support::binary::final_line(&lines);
    assert_eq!(
        support::binary::counter(last, "in", "refused.queue_full"),
        Some(1),
        "{last}"
    );
    // Drained: the space came back (a segment is deleted once every entry in it is
    // delivered; the one written to last, once it holds an eighth of `segment_bytes`), and
    // the clean stop wrote where the acknowledged entries end.
    let queue = dir.path("queues").join("g%2Fp%2Fout");
    let mut segments = 0;
    let mut acked = None;
    for item in std::fs::read_dir(&queue).unwrap() {
        let item = item.unwrap();
        let name = item.file_name().to_string_lossy().into_owned();
        let len = item.metadata().unwrap().len();
        match name.as_str() {
            "acked" => acked = Some(len),
            _ if name.ends_with(".seg") => segments += len,
            _ => panic!("unexpected {name}"),
        }
    }
    assert!(
        segments <= 65536 / 8 + 1024,
        "{segments} bytes of segments left"
    );
    assert_eq!(acked, Some(8));
}

/// The gRPC gateway: [`gateway`] with `receiver:otlp_grpc` and `exporter:otlp_grpc`, its
/// queue 1 MiB.
fn grpc_gateway(port: u16, upstream: u16, queues: &Path) -> String {
    gateway(port, upstream, queues, 1 << 20).replace(":otlp_http", ":otlp_grpc")
}

#[test]
fn over_grpc_a_full_queue_is_resource_exhausted_with_retry_info_and_what_was_taken_arrives() {
    use otap_df_nodes::otlp_grpc::{frame, service_path};
    use support::grpc::Connection;

    let dir = TempDir::new("durable-queue-grpc");
    let (port, up) = (free_port(), free_port());
    let gateway = Running::listening(&grpc_gateway(port, up, &dir.path("queues")), port);
    let path = service_path(Signal::Logs);
    let headers = [("content-type", "application/grpc")];
    let mut connection = Connection::open(port);
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let tag = format!("g{}", acknowledged.len());
        let answer = connection.call(
            http::Method::POST,
            path,
            &headers,
            frame(&batch(&tag), false),
        );
        match answer.code {
            Some(0) => acknowledged.push(tag),
            _ => break answer,
        }
        assert!(acknowledged.len() < 10_000, "the cap never refused");
    };
    // RESOURCE_EXHAUSTED, with the RetryInfo the OTLP specification asks for.
    assert_eq!(
        (refusal.code, refusal.details),
        (Some(8), true),
        "{}",
        refusal.message
    );
    assert!(acknowledged.len() > 1000, "{} taken", acknowledged.len());
    drop(connection);

    let out = dir.path("upstream.otlp");
    let upstream = Running::listening(&grpc_upstream(up, &out), up);
    let seen = wait_arrived(&out, &acknowledged);
    assert!(
        seen.values().all(|n| *n == RECORDS),
        "no restart: no duplicate"
    );
    gateway.stop().unwrap();
    upstream.stop().unwrap();
}

/// The gRPC upstream: `receiver:otlp_grpc` on `port` → `exporter:file` at `out`.
fn grpc_upstream(port: u16, out: &Path) -> String {
    upstream(port, out).replace("receiver:otlp_http", "receiver:otlp_grpc")
}

#[test]
fn a_batch_the_full_queue_refused_is_not_remembered_by_dedup_and_its_retry_arrives() {
    let dir = TempDir::new("durable-queue-dedup");
    let (port, up) = (free_port(), free_port());
    let config = dir.path("gateway.yaml");
    let with_dedup = gateway(port, up, &dir.path("queues"), 1 << 20)
        .replace(
            "        nodes:\n",
            "          seen: { type: extension:memory_kv }\n        nodes:\n          dedup: { type: processor:dedup, capabilities: { key_value_store: seen } }\n",
        )
        .replace(
            "          - { from: in, to: out }",
            "          - { from: in, to: dedup }\n          - { from: dedup, to: out }",
        );
    std::fs::write(&config, with_dedup).unwrap();
    let mut engine = RunningBinary::start(&config);
    listening(port);
    let (acknowledged, refused, _) = fill_to_the_cap(port, "d");
    engine.drain_in_background();
    let out = dir.path("upstream.otlp");
    let upstream = Running::listening(&upstream(up, &out), up);
    wait_arrived(&out, &acknowledged);
    // The sender sends the refused batch again: taken, and delivered.
    assert_eq!(try_post(port, &batch(&refused)).expect("an answer").0, 200);
    let seen = wait_arrived(&out, std::slice::from_ref(&refused));
    assert_eq!(seen[&refused], RECORDS);
    // A true duplicate is still dropped (answered 200, not sent again).
    assert_eq!(try_post(port, &batch("d0")).expect("an answer").0, 200);
    engine.signal("-TERM");
    let (lines, code) = engine.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    upstream.stop().unwrap();
    assert_eq!(occurrences(&out, &["d0".to_owned()])["d0"], RECORDS);
    let last = support::binary::final_line(&lines);
    assert_eq!(
        support::binary::counter(last, "dedup", "dropped"),
        Some(RECORDS as u64),
        "{last}"
    );
}

#[test]
fn kill_9_in_the_middle_of_the_drain_delivers_everything_at_least_once() {
    let dir = TempDir::new("durable-queue-kill-draining");
    let (port, up) = (free_port(), free_port());
    let config = dir.path("gateway.yaml");
    std::fs::write(&config, gateway(port, up, &dir.path("queues"), 1 << 30)).unwrap();
    let mut engine = RunningBinary::start(&config);
    listening(port);
    let acknowledged: Vec<String> = (0..1500)
        .map(|n| format!("k{n}"))
        .filter(|tag| try_post(port, &batch(tag)).is_some_and(|(status, _)| status == 200))
        .collect();
    assert_eq!(acknowledged.len(), 1500, "every batch taken");
    engine.drain_in_background();

    // The upstream comes up; once part of the backlog has arrived (requests merge up to
    // 1 MiB: a few hundred batches each), the engine is killed.
    let out = dir.path("upstream.otlp");
    let upstream = Running::listening(&upstream(up, &out), up);
    let deadline = Instant::now() + Duration::from_secs(30);
    let arrived = loop {
        let arrived = occurrences(&out, &acknowledged)
            .values()
            .filter(|n| **n > 0)
            .count();
        if arrived >= 100 {
            break arrived;
        }
        assert!(Instant::now() < deadline, "nothing arrived");
        std::thread::sleep(Duration::from_millis(1));
    };
    engine.signal("-KILL");
    let (_, code) = engine.finish();
    assert_eq!(code, None, "killed by a signal");

    // Started again, it delivers the rest (and maybe some again: at least once).
    let engine = RunningBinary::start(&config);
    let seen = wait_arrived(&out, &acknowledged);
    engine.signal("-TERM");
    let (lines, code) = engine.finish();
    assert_eq!(code, Some(0), "{lines:?}");
    upstream.stop().unwrap();
    assert!(
        seen.values().all(|n| n % RECORDS == 0),
        "whole batches only"
    );
    let again = seen.values().filter(|n| **n > RECORDS).count();
    eprintln!(
        "{arrived} of 1500 batches had arrived when the engine was killed; after the restart \
         every one arrived, {again} of them twice or more"
    );
}
