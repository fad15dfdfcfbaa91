//! The receiver's connection cap under a flood, through the real binary: connections that
//! send nothing, or only requests that are refused, cannot lock out the clients whose
//! requests are accepted. At the cap a new connection displaces an idle one — one that sent
//! nothing first, then one whose requests were refused, then the longest idle — and is
//! closed at once only when every connection is busy.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use otap_df_tests::temp::TempDir;
use support::binary::{RunningBinary, counter, final_line};
use support::{free_port, logs_head, read_answer, wait_ready};

/// A receiver on `otlp` that accepts `Bearer good` (engine-level `bearer_auth`), at most
/// `max_connections` connections, into a noop exporter.
fn write_config(path: &Path, admin: u16, otlp: u16, max_connections: usize) {
    std::fs::write(
        path,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}' }}
  extensions:
    callers: {{ type: extension:bearer_auth, config: {{ tokens: [good] }} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}', max_connections: {max_connections} }}, capabilities: {{ bearer_token_authorizer: callers }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
        ),
    )
    .unwrap();
}

fn start(name: &str, max_connections: usize) -> (TempDir, u16, RunningBinary) {
    let dir = TempDir::new(name);
    let config = dir.path("limits.yaml");
    let (admin, otlp) = (free_port(), free_port());
    write_config(&config, admin, otlp, max_connections);
    let run = RunningBinary::start(&config);
    wait_ready(admin);
    (dir, otlp, run)
}

/// Sends a 5-record logs request with `token` (none: no credential) on a keep-alive
/// connection and reads the answer's status line.
fn send(writer: &mut TcpStream, reader: &mut BufReader<TcpStream>, token: Option<&str>) -> String {
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    let head = logs_head(logs.bytes().len());
    let head = match token {
        Some(token) => head.replace(
            "\r\n\r\n",
            &format!("\r\nAuthorization: Bearer {token}\r\n\r\n"),
        ),
        None => head,
    };
    // One write: the whole request is in hand when the receiver answers (a refusal answered
    // before its body came would close the connection).
    let mut request = head.into_bytes();
    request.extend_from_slice(logs.bytes());
    writer.write_all(&request).unwrap();
    read_answer(reader).status
}

/// [`send`] on a new connection; a transport error as the status.
fn send_new(port: u16) -> String {
    let attempt = std::panic::catch_unwind(|| {
        let (mut writer, mut reader) = connect(port);
        send(&mut writer, &mut reader, Some("good"))
    });
    attempt.unwrap_or_else(|_| "transport error".to_owned())
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (stream.try_clone().unwrap(), BufReader::new(stream))
}

/// Whether the server closed the connection (bounded by the read timeout).
fn closed(reader: &mut BufReader<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(reader.read(&mut byte), Ok(0))
        || matches!(reader.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn at_the_cap_a_silent_connection_goes_first_then_a_refused_one_and_an_accepted_one_stays() {
    let (_dir, otlp, run) = start("limits-order", 2);
    // Connection `good` is accepted; `bad` is refused (no token); both stay open, idle.
    let (mut good_writer, mut good) = connect(otlp);
    assert_eq!(
        send(&mut good_writer, &mut good, Some("good")),
        "HTTP/1.1 200 OK"
    );
    let (mut bad_writer, mut bad) = connect(otlp);
    assert_eq!(
        send(&mut bad_writer, &mut bad, None),
        "HTTP/1.1 401 Unauthorized"
    );
    // At the cap: a new, silent connection displaces the refused one.
    let (_first_writer, mut first) = connect(otlp);
    assert!(closed(&mut bad), "the refused connection was closed");
    // The next silent one displaces the older silent one.
    let (mut second_writer, mut second) = connect(otlp);
    assert!(closed(&mut first), "the older silent connection was closed");
    // The accepted connection was never touched, and the newest one is served.
    assert_eq!(
        send(&mut good_writer, &mut good, Some("good")),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        send(&mut second_writer, &mut second, Some("good")),
        "HTTP/1.1 200 OK"
    );
    run.signal("-TERM");
    let (lines, code) = run.finish();
    let last = final_line(&lines);
    assert_eq!(code, Some(0), "{last}");
    assert_eq!(counter(last, "in", "connections.shed"), Some(2), "{last}");
    assert_eq!(counter(last, "in", "connections.rejected"), None, "{last}");
    assert_eq!(counter(last, "in", "accepted"), Some(3), "{last}");
}

#[test]
fn real_clients_are_served_while_twenty_thousand_idle_connections_are_attempted() {
    // A cap of 200: a silent connection is displaced once 200 newer ones came, so at 5,000
    // connections a second a client has about 40 ms between its connect and its request (at
    // the default cap, 4,096, and 20,000 a second: 200 ms).
    let (_dir, otlp, run) = start("limits-flood", 200);
    let flooding = Arc::new(AtomicBool::new(true));
    // The flood: 20,000 connections that send nothing, about 5,000 a second, up to 600 held
    // open at once (three times the cap), each dropped once 600 newer ones are open.
    let flood = std::thread::spawn({
        let flooding = flooding.clone();
        move || {
            let mut open = VecDeque::new();
            let mut failed: u64 = 0;
            let started = Instant::now();
            for made in 0..20_000u32 {
                match TcpStream::connect(("127.0.0.1", otlp)) {
                    Ok(stream) => open.push_back(stream),
                    Err(_) => failed += 1,
                }
                if open.len() > 600 {
                    open.pop_front();
                }
                // Shaping the flood's rate, not waiting for an outcome.
                let due = started + Duration::from_micros(200) * made;
                if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(ahead);
                }
            }
            flooding.store(false, Ordering::Relaxed);
            failed
        }
    });
    // A real client meanwhile: a new connection per request, as many as the flood lasts.
    let mut statuses = Vec::new();
    while flooding.load(Ordering::Relaxed) {
        statuses.push(send_new(otlp));
    }
    let failed_connects = flood.join().unwrap();
    assert!(
        statuses.len() >= 10,
        "the client kept sending: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|status| status == "HTTP/1.1 200 OK"),
        "{} of {} requests were not accepted: {:?}",
        statuses.iter().filter(|s| *s != "HTTP/1.1 200 OK").count(),
        statuses.len(),
        statuses.iter().find(|s| *s != "HTTP/1.1 200 OK")
    );
    run.signal("-TERM");
    let (lines, code) = run.finish();
    let last = final_line(&lines);
    assert_eq!(code, Some(0), "{last}");
    assert_eq!(
        counter(last, "in", "accepted"),
        Some(statuses.len() as u64),
        "{last}"
    );
    // Taken, or closed at once when every connection was busy; no more than were made (a
    // connection the kernel's full accept queue dropped is never seen).
    let taken = counter(last, "in", "connections.accepted").unwrap_or(0)
        + counter(last, "in", "connections.rejected").unwrap_or(0);
    assert!(
        taken <= 20_000 - failed_connects + statuses.len() as u64,
        "{last}"
    );
    // Silent connections made room for the others, many times over.
    let shed = counter(last, "in", "connections.shed").unwrap_or(0);
    assert!(shed > 1_000, "{last}");
}
