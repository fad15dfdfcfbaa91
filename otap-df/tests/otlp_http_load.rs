//! How `receiver:otlp_http` and `exporter:otlp_http` behave under load, over real HTTP on
//! loopback: a full pipeline makes requests wait before it refuses them, a refused request
//! costs no body read, the exporter keeps `max_in_flight` requests outstanding and a retrying
//! request does not hold up the others, and a stopping pipeline finishes the requests it has
//! in flight; the receiver bounds what a client controls (header and body time, idle
//! connections, connections per core).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;
use support::{
    Answer, Running, free_port, logs_head, named, post, read_answer, read_until_closed, run_to_end,
};

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use otap_df_core::data::{Encoding, Signal};
use otap_df_core::runtime::{NodeTotals, RunOptions, Telemetry};
use otap_df_nodes::otlp::Shape;

/// One `POST /v1/logs` of `records` log records, with a plain HTTP/1.1 client.
fn post_logs(port: u16, records: usize) -> Answer {
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, records, "load", 1);
    post(
        port,
        "/v1/logs",
        &[("content-type", "application/x-protobuf")],
        body.bytes().clone(),
    )
}

/// `receiver:otlp_http` on `port` with `receiver` as its extra config → a recording sink
/// that takes `delay` per payload.
fn slow_gateway(port: u16, receiver: &str, delay: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      gateway:
        nodes:
          otlp_in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}'{receiver} }} }}
          slow: {{ type: exporter:recording_sink, config: {{ log: load, delay: {delay} }} }}
        connections:
          - {{ from: otlp_in, to: slow }}
"
    )
}

#[test]
fn a_full_pipeline_makes_requests_wait_and_accepts_them_as_the_queue_drains() {
    let port = free_port();
    // The sink holds a payload for 500 ms and the queue one more: of four requests sent at
    // once, at least two find the pipeline full, wait, and get in as the sink drains.
    let gateway = Running::listening_with(&slow_gateway(port, "", "500ms"), port, 1);
    let clients: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || post_logs(port, 3)))
        .collect();
    let answers: Vec<Answer> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    assert_eq!(named(&receiver, "accepted"), 4);
    assert_eq!(named(&receiver, "refused.pipeline_full"), 0);
    assert!(
        named(&receiver, "admission.waited") >= 2,
        "requests waited: {:?}",
        receiver.named
    );
    assert_eq!(receiver.counts.records_out, 12);
}

#[test]
fn a_request_refused_for_a_full_pipeline_gets_429_with_retry_after_and_its_body_is_never_read() {
    let port = free_port();
    let gateway = Running::listening_with(
        &slow_gateway(port, ", admission_timeout: 0s, retry_after: 2s", "2s"),
        port,
        1,
    );
    // The sink holds one payload for 2 s and the queue one more: the third request at the
    // latest finds the pipeline full, and with no admission wait it is refused at once.
    let answers: Vec<Answer> = (0..3).map(|_| post_logs(port, 5)).collect();
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    let refused: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!refused.is_empty(), "{answers:?}");
    assert_eq!(refused[0].headers.get("retry-after").unwrap(), "2");
    assert_eq!(
        otap_df_nodes::otlp_http::status_message(Encoding::Protobuf, &refused[0].body).as_deref(),
        Some("the pipeline is full and had no room within 0ns; retry later")
    );
    let accepted = (answers.len() - refused.len()) as u64;
    assert_eq!(named(&receiver, "accepted"), accepted);
    assert_eq!(
        named(&receiver, "refused.pipeline_full"),
        refused.len() as u64
    );
    // Refused before its body was read, let alone decoded or counted.
    assert_eq!(named(&receiver, "bodies_read"), accepted);
    assert_eq!(receiver.counts.records_in, accepted * 5);
    assert_eq!(receiver.counts.records_out, accepted * 5);
}

/// A loopback upstream that serves each connection on its own thread: answers each request
/// after `delay` with the next status of its script (`200 OK` once the script is spent),
/// and records when each request came and how many were in flight at once.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Instant>>>,
    /// What each request held (logs), in the order they came.
    shapes: Arc<Mutex<Vec<Shape>>>,
    peak: Arc<AtomicUsize>,
}

impl Upstream {
    fn start(delay: Duration, script: Vec<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shapes = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (seen_, shapes_, peak_) = (seen.clone(), shapes.clone(), peak.clone());
        // Accepts until the test process ends; each connection ends when its client closes.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recorded = Recorded {
                    seen: seen_.clone(),
                    shapes: shapes_.clone(),
                    peak: peak_.clone(),
                    in_flight: in_flight.clone(),
                };
                let script = script.clone();
                std::thread::spawn(move || serve_connection(stream, delay, &recorded, &script));
            }
        });
        Self {
            port,
            seen,
            shapes,
            peak,
        }
    }

    fn seen(&self) -> Vec<Instant> {
        self.seen.lock().unwrap().clone()
    }

    fn shapes(&self) -> Vec<Shape> {
        self.shapes.lock().unwrap().clone()
    }
}

/// What the upstream's connections record.
struct Recorded {
    seen: Arc<Mutex<Vec<Instant>>>,
    shapes: Arc<Mutex<Vec<Shape>>>,
    peak: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
}

fn serve_connection(
    mut stream: TcpStream,
    delay: Duration,
    recorded: &Recorded,
    script: &Mutex<VecDeque<&'static str>>,
) {
    let Recorded {
        seen,
        shapes,
        peak,
        in_flight,
    } = recorded;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut length = 0usize;
        let mut any = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            any = true;
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        if !any {
            return;
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        let status = script.lock().unwrap().pop_front().unwrap_or("200 OK");
        seen.lock().unwrap().push(Instant::now());
        shapes
            .lock()
            .unwrap()
            .push(otap_df_nodes::otlp::decode_with_prost(Signal::Logs, &body).unwrap());
        std::thread::sleep(delay);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        let extra = if status.starts_with("503") {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\n{extra}content-length: 0\r\n\r\n"
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// `receiver:generator` with `generator` → `exporter:otlp_http` to `upstream` with `exporter`
/// as its extra config.
fn sender(generator: &str, upstream: u16, exporter: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    pipelines:
      sender:
        nodes:
          gen: {{ type: receiver:generator, config: {generator} }}
          otlp_out: {{ type: exporter:otlp_http, config: {{ endpoint: 'http://127.0.0.1:{upstream}', compression: none{exporter} }} }}
        connections:
          - {{ from: gen, to: otlp_out }}
"
    )
}

fn exporter_totals(telemetry: &Telemetry) -> NodeTotals {
    telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == "otlp_out")
        .unwrap()
}

#[test]
fn the_exporter_keeps_exactly_max_in_flight_requests_outstanding() {
    let upstream = Upstream::start(Duration::from_millis(300), Vec::new());
    let telemetry = run_to_end(&sender(
        "{ count: 12, batch_size: 2 }",
        upstream.port,
        ", max_in_flight: 4, merge_max_bytes: 0",
    ));
    let exporter = exporter_totals(&telemetry);
    assert_eq!(upstream.seen().len(), 12);
    assert_eq!(upstream.peak.load(Ordering::SeqCst), 4);
    assert_eq!(exporter.counts.records_out, 24);
    assert_eq!(named(&exporter, "merged"), 0);
    assert_eq!(exporter.counts.records_failed, 0);
}

#[test]
fn payloads_that_wait_for_a_free_request_go_upstream_merged_into_one() {
    // Four requests take 300 ms each upstream; the generator's other eight batches come
    // while all four are taken, wait merged, and go as one request when the first is done.
    let upstream = Upstream::start(Duration::from_millis(300), Vec::new());
    let telemetry = run_to_end(&sender(
        "{ count: 12, batch_size: 2 }",
        upstream.port,
        ", max_in_flight: 4",
    ));
    let exporter = exporter_totals(&telemetry);
    let shapes = upstream.shapes();
    let records: Vec<usize> = shapes.iter().map(|shape| shape.records).collect();
    assert_eq!(records, [2, 2, 2, 2, 16]);
    // Merged by concatenation: each batch keeps its own resource and scope.
    assert_eq!((shapes[4].resources, shapes[4].scopes), (8, 8));
    assert_eq!(upstream.peak.load(Ordering::SeqCst), 4);
    assert_eq!(named(&exporter, "requests"), 5);
    assert_eq!(named(&exporter, "merged"), 7);
    assert_eq!(exporter.counts.records_out, 24);
    assert_eq!(exporter.counts.records_failed, 0);
}

#[test]
fn a_request_waiting_for_its_retry_does_not_hold_up_the_others() {
    // The first request to arrive is answered 503 with `Retry-After: 1`; the rest at once.
    let upstream = Upstream::start(Duration::ZERO, vec!["503 Service Unavailable"]);
    let telemetry = run_to_end(&sender(
        "{ count: 5, batch_size: 3 }",
        upstream.port,
        ", retry: { initial_interval: 50ms }",
    ));
    let seen = upstream.seen();
    assert_eq!(seen.len(), 6, "five requests and one retry");
    let retry = seen[5];
    // The other four were delivered while the first waited out its second.
    assert!(
        retry - seen[0] >= Duration::from_secs(1),
        "{:?}",
        retry - seen[0]
    );
    assert!(seen[1..5].iter().all(|&at| at < retry));
    let exporter = exporter_totals(&telemetry);
    assert_eq!(exporter.counts.records_out, 15);
    assert_eq!(named(&exporter, "retried"), 1);
    assert_eq!(exporter.counts.records_failed, 0);
}

#[test]
fn a_stopping_pipeline_finishes_the_requests_it_has_in_flight() {
    // Every request takes 400 ms upstream; the generator's batches are all handed to the
    // exporter long before the first answer, and the run's end waits for every answer.
    let upstream = Upstream::start(Duration::from_millis(400), Vec::new());
    let telemetry = run_to_end(&sender(
        "{ count: 8, batch_size: 5 }",
        upstream.port,
        ", max_in_flight: 8",
    ));
    assert_eq!(upstream.seen().len(), 8);
    assert_eq!(upstream.peak.load(Ordering::SeqCst), 8);
    let exporter = exporter_totals(&telemetry);
    assert_eq!(exporter.counts.records_out, 40);
    assert_eq!(exporter.counts.records_failed, 0);

    // Stopped from outside while requests are in flight: the same.
    let upstream = Upstream::start(Duration::from_millis(400), Vec::new());
    let running = Running::start_with(
        &sender(
            "{ rate: 50, batch_size: 5 }",
            upstream.port,
            ", max_in_flight: 8, merge_max_bytes: 0",
        ),
        RunOptions::default().channel_capacity,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.seen().len() < 3 {
        assert!(Instant::now() < deadline, "no request reached the upstream");
        std::thread::sleep(Duration::from_millis(5));
    }
    let telemetry = running.telemetry().clone();
    running.stop().expect("a clean stop");
    let generator = telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == "gen")
        .unwrap();
    let exporter = exporter_totals(&telemetry);
    assert_eq!(exporter.counts.records_out, generator.counts.records_out);
    assert_eq!(
        upstream.seen().len() as u64 * 5,
        generator.counts.records_out
    );
    assert_eq!(exporter.counts.records_failed, 0);
}

fn limited_gateway(port: u16, limits: &str) -> String {
    slow_gateway(port, limits, "1ms")
}

#[test]
fn a_client_that_sends_half_a_header_or_nothing_is_disconnected() {
    let port = free_port();
    let gateway = Running::listening_with(
        &limited_gateway(port, ", header_read_timeout: 300ms"),
        port,
        64,
    );
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    read_until_closed(&mut half);
    read_until_closed(&mut silent);
    // A keep-alive connection idle after a request goes the same way.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, 2, "t", 1);
    idle.write_all(logs_head(body.bytes().len()).as_bytes())
        .unwrap();
    idle.write_all(body.bytes()).unwrap();
    let answer = read_until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "accepted"), 1);
}

#[test]
fn the_header_timer_spares_a_connection_whose_requests_keep_coming_or_wait_for_room() {
    let port = free_port();
    // A 200 ms header timeout; the sink holds each payload 400 ms and the queue one more, so
    // the third and fourth requests wait for room longer than the header timeout, on a
    // connection that lives four times as long.
    let gateway = Running::listening_with(
        &slow_gateway(port, ", header_read_timeout: 200ms", "400ms"),
        port,
        1,
    );
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, 2, "t", 1);
    for request in 0..4 {
        writer
            .write_all(logs_head(body.bytes().len()).as_bytes())
            .unwrap();
        writer.write_all(body.bytes()).unwrap();
        assert_eq!(
            read_answer(&mut reader).status,
            "HTTP/1.1 200 OK",
            "request {request}"
        );
    }
    // Then idle: closed, without an answer.
    assert!(reader.buffer().is_empty());
    assert_eq!(read_until_closed(reader.get_mut()), "");
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "accepted"), 4);
    assert!(
        named(&receiver, "admission.waited") >= 1,
        "no request waited for room: {:?}",
        receiver.named
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408_and_frees_its_place() {
    let port = free_port();
    let gateway = Running::listening_with(
        &limited_gateway(port, ", body_read_timeout: 300ms"),
        port,
        // One place in the queue: the stalled request holds it until its timeout.
        1,
    );
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .write_all(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .unwrap();
    let answer = read_until_closed(&mut stalled);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "{answer}"
    );
    // Its place is free again: a whole request gets in.
    assert_eq!(post_logs(port, 3).status, StatusCode::OK);
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "refused.body_timeout"), 1);
    assert_eq!(named(&receiver, "accepted"), 1);
    assert_eq!(receiver.counts.records_in, 3);
}

#[test]
fn a_connection_beyond_max_connections_is_closed_at_once_when_every_one_is_busy() {
    let port = free_port();
    let gateway = Running::listening_with(&limited_gateway(port, ", max_connections: 2"), port, 64);
    // Two connections, each with a request in flight: its head and half its body sent.
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, 20, "t", 1);
    let request = logs_head(body.bytes().len());
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(&body.bytes()[..10]).unwrap();
        busy.push(stream);
    }
    // Both are being read (bounded wait): the receiver counted them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while named(&gateway.node("otlp_in"), "bodies_read") < 2 {
        assert!(Instant::now() < deadline, "both bodies are being read");
        // Polling a counter, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(5));
    }
    // None can make room for a third, which is closed at once.
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(read_until_closed(&mut third), "");
    // The two busy ones finish their requests and are answered.
    for mut stream in busy {
        stream.write_all(&body.bytes()[10..]).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "connections.rejected"), 1);
    assert_eq!(named(&receiver, "connections.shed"), 0);
    assert_eq!(named(&receiver, "accepted"), 2);
}

#[test]
fn bodies_being_read_are_held_to_max_body_bytes_in_flight() {
    let port = free_port();
    let gateway = Running::listening_with(
        &limited_gateway(
            port,
            ", max_body_size: 4096, max_body_bytes_in_flight: 4096, admission_timeout: 0s",
        ),
        port,
        64,
    );
    let body = otap_df_nodes::otlp::synthetic(Signal::Logs, 70, "t", 1);
    let bytes = body.bytes();
    assert!((2049..=3072).contains(&bytes.len()), "{}", bytes.len());
    let head = logs_head(bytes.len());
    // A body of 3 KiB half sent: it holds 3 of the 4 KiB.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&bytes[..100]).unwrap();
    // Wait (bounded) until the receiver is reading it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while named(&gateway.node("otlp_in"), "bodies_read") < 1 {
        assert!(Instant::now() < deadline, "the slow body was never read");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Another 3 KiB body does not fit beside it: refused before its body is read.
    let refused = post_logs(port, 70);
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.headers.get("retry-after").unwrap(), "1");
    assert_eq!(
        otap_df_nodes::otlp_http::status_message(Encoding::Protobuf, &refused.body).as_deref(),
        Some("too many request bytes are being read at once; retry later")
    );
    // The slow body completes; then there is room again.
    slow.write_all(&bytes[100..]).unwrap();
    let mut status = String::new();
    BufReader::new(slow.try_clone().unwrap())
        .read_line(&mut status)
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(post_logs(port, 70).status, StatusCode::OK);
    let receiver = gateway.node("otlp_in");
    gateway.stop().unwrap();
    assert_eq!(named(&receiver, "refused.bytes_in_flight"), 1);
    assert_eq!(named(&receiver, "accepted"), 2);
    assert_eq!(named(&receiver, "bodies_read"), 2);
}
