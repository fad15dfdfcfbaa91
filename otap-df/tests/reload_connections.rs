//! Open connections across reloads, through the real binary. A reload that replaces a
//! pipeline hands its receiver's open connections to the new version between two requests
//! (plain and TLS): clients see no close and no transport error, even under a steady storm of
//! reloads. A reload that removes a pipeline answers every request in flight on its
//! connections and closes its address at once: no client waits in a backlog nobody reads.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use otap_df_tests::temp::TempDir;
use support::binary::{RunningBinary, counter, final_line, records_out};
use support::{free_port, logs_head, read_answer, reload, wait_ready};

/// `tls` of a receiver: its certificate and key files.
type Tls<'a> = Option<(&'a Path, &'a Path)>;

/// A receiver on `otlp` into a noop exporter; `version` goes into the receiver's config, so
/// that each new value replaces the pipeline.
fn write_config(path: &Path, admin: u16, otlp: u16, version: usize, tls: Tls<'_>) {
    let tls = tls.map_or(String::new(), |(cert, key)| {
        format!(
            ", tls: {{ cert_file: '{}', key_file: '{}' }}",
            cert.display(),
            key.display()
        )
    });
    std::fs::write(
        path,
        format!(
            "version: otap_df/v1
engine:
  admin: {{ listen: '127.0.0.1:{admin}' }}
groups:
  g:
    pipelines:
      p:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{otlp}', admission_timeout: {}ms{tls} }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
",
            1000 + version
        ),
    )
    .unwrap();
}

fn replaced() -> (u16, serde_json::Value) {
    let answer = serde_json::json!({ "result": "applied", "replaced": ["pipeline `g/p`"] });
    (200, answer)
}

/// The binary on a config with the receiver on `otlp` (version 0), ready.
struct Setup {
    _dir: TempDir,
    config: PathBuf,
    admin: u16,
    otlp: u16,
    run: RunningBinary,
}

impl Setup {
    fn start(name: &str, tls: Tls<'_>) -> Self {
        let dir = TempDir::new(name);
        let config = dir.path("reload.yaml");
        let (admin, otlp) = (free_port(), free_port());
        write_config(&config, admin, otlp, 0, tls);
        let run = RunningBinary::start(&config);
        wait_ready(admin);
        Self {
            _dir: dir,
            config,
            admin,
            otlp,
            run,
        }
    }

    /// Writes version `version` and reloads it: the pipeline is replaced.
    fn replace(&self, version: usize, tls: Tls<'_>) {
        write_config(&self.config, self.admin, self.otlp, version, tls);
        assert_eq!(reload(self.admin), replaced(), "reload {version}");
    }

    /// SIGTERM: the exit code is 0; the final line.
    fn finish(self) -> String {
        self.run.signal("-TERM");
        let (lines, code) = self.run.finish();
        assert_eq!(code, Some(0), "stderr: {lines:?}");
        final_line(&lines).to_owned()
    }
}

/// Sends a 5-record logs request on a raw keep-alive connection and reads its answer.
fn send_raw(writer: &mut TcpStream, reader: &mut BufReader<TcpStream>) -> support::RawAnswer {
    let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
    writer
        .write_all(logs_head(logs.bytes().len()).as_bytes())
        .unwrap();
    writer.write_all(logs.bytes()).unwrap();
    read_answer(reader)
}

/// A raw keep-alive connection to `port`: its writer and reader.
fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (stream.try_clone().unwrap(), BufReader::new(stream))
}

#[test]
fn an_idle_keep_alive_connection_is_handed_to_each_new_version_and_stays_open() {
    let setup = Setup::start("reload-idle", None);
    let (mut writer, mut reader) = connect(setup.otlp);
    for version in 1..=3 {
        let answer = send_raw(&mut writer, &mut reader);
        assert_eq!(answer.status, "HTTP/1.1 200 OK", "before reload {version}");
        assert_eq!(answer.header("connection"), None, "{answer:?}");
        setup.replace(version, None);
    }
    let answer = send_raw(&mut writer, &mut reader);
    assert_eq!(answer.status, "HTTP/1.1 200 OK");
    assert_eq!(answer.header("connection"), None, "{answer:?}");
    let last = setup.finish();
    assert_eq!(counter(last.as_str(), "in", "accepted"), Some(4), "{last}");
    assert_eq!(
        counter(last.as_str(), "in", "connections.handed_over"),
        Some(3),
        "{last}"
    );
}

#[test]
fn a_connection_that_has_not_sent_a_request_yet_is_handed_over_and_stays_open() {
    let mut setup = Setup::start("reload-fresh", None);
    let (mut writer, mut reader) = connect(setup.otlp);
    setup
        .run
        .wait_for("version 0 accepted the connection", |line| {
            counter(line, "in", "connections.accepted") == Some(1)
        });
    setup.replace(1, None);
    // The first request comes after version 0 drained: version 1 answers it, keeping the
    // connection (version 0 would have answered with `Connection: close`).
    for _ in 0..2 {
        let answer = send_raw(&mut writer, &mut reader);
        assert_eq!(answer.status, "HTTP/1.1 200 OK");
        assert_eq!(answer.header("connection"), None, "{answer:?}");
    }
    let last = setup.finish();
    assert_eq!(
        counter(last.as_str(), "in", "connections.handed_over"),
        Some(1),
        "{last}"
    );
}

#[test]
fn a_tls_keep_alive_connection_is_handed_over_without_a_new_handshake() {
    let pki = otap_df_tests::tls::TestPki::generate().unwrap();
    let tls = Some((pki.server_cert(), pki.server_key()));
    let tls = tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let setup = Setup::start("reload-tls", tls);
    let client = otap_df_nodes::tls::client_config(Some(&pki.ca_cert())).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", setup.otlp))
            .await
            .unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
        for version in 1..=3 {
            let request = http::Request::post("/v1/logs")
                .header("host", "localhost")
                .header("content-type", "application/x-protobuf")
                .body(Full::new(logs.bytes().clone()))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200, "before reload {version}");
            assert!(response.headers().get("connection").is_none());
            let _ = response.into_body().collect().await.unwrap();
            // The reload runs on its own thread: this runtime keeps the connection polled.
            let config = setup.config.clone();
            let (admin, otlp) = (setup.admin, setup.otlp);
            let tls_files = (pki.server_cert(), pki.server_key());
            tokio::task::spawn_blocking(move || {
                write_config(
                    &config,
                    admin,
                    otlp,
                    version,
                    Some((&tls_files.0, &tls_files.1)),
                );
                assert_eq!(reload(admin), replaced(), "reload {version}");
            })
            .await
            .unwrap();
        }
        assert!(!connection.is_finished(), "the one connection stayed open");
    });
    let last = setup.finish();
    assert_eq!(counter(last.as_str(), "in", "accepted"), Some(3), "{last}");
    assert_eq!(
        counter(last.as_str(), "in", "connections.handed_over"),
        Some(3),
        "{last}"
    );
}

#[test]
fn removing_a_pipeline_answers_its_open_connections_and_closes_its_address_at_once() {
    let dir = TempDir::new("reload-remove");
    let config = dir.path("reload.yaml");
    let (admin, otlp, other) = (free_port(), free_port(), free_port());
    let pipeline = |name: &str, port: u16| {
        format!(
            "      {name}:
        nodes:
          in: {{ type: receiver:otlp_http, config: {{ listen: '127.0.0.1:{port}' }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: in, to: out }} ]
"
        )
    };
    let write = |pipelines: &str| {
        std::fs::write(
            &config,
            format!(
                "version: otap_df/v1\nengine:\n  admin: {{ listen: '127.0.0.1:{admin}' }}\ngroups:\n  g:\n    pipelines:\n{pipelines}"
            ),
        )
        .unwrap();
    };
    write(&(pipeline("p", otlp) + &pipeline("q", other)));
    let mut run = RunningBinary::start(&config);
    wait_ready(admin);
    let (mut idle_writer, mut idle_reader) = connect(otlp);
    assert_eq!(
        send_raw(&mut idle_writer, &mut idle_reader).status,
        "HTTP/1.1 200 OK"
    );
    let (mut fresh_writer, mut fresh_reader) = connect(otlp);
    run.wait_for("both connections accepted", |line| {
        counter(line, "g/p/in", "connections.accepted") == Some(2)
    });
    write(&pipeline("q", other));
    assert_eq!(
        reload(admin),
        (
            200,
            serde_json::json!({ "result": "applied", "removed": ["pipeline `g/p`"] })
        )
    );
    // The address refuses connections once the old version drained (bounded: 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", otlp)) {
            Err(error) => {
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
                break;
            }
            // Accepted before the drain: it is answered or closed like the others.
            Ok(_) => assert!(
                Instant::now() < deadline,
                "the address still takes connections"
            ),
        }
        // Polling for the drain, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(10));
    }
    // A connection that had not sent a request yet gets its first one answered, and told
    // that the connection closes.
    let answer = send_raw(&mut fresh_writer, &mut fresh_reader);
    assert_eq!(answer.status, "HTTP/1.1 200 OK");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    // The idle one was closed between requests (nobody takes it over).
    let mut rest = String::new();
    let read = std::io::Read::read_to_string(&mut idle_reader, &mut rest);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "closed, not answered: {rest:?}"
    );
    run.signal("-TERM");
    let (lines, code) = run.finish();
    assert_eq!(code, Some(0), "stderr: {lines:?}");
    let last = final_line(&lines);
    assert_eq!(counter(last, "g/p/in", "accepted"), Some(2), "{last}");
    assert_eq!(records_out(last, "g/p/out"), Some(10), "{last}");
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    accepted: u64,
    refused: Vec<u16>,
    transport_errors: Vec<String>,
}

/// `clients` keep-alive clients (one pooled connection each, as an SDK's exporter keeps),
/// each sending a 5-record logs request every `every` until `stop`.
fn clients(otlp: u16, clients: usize, every: Duration, stop: Arc<AtomicBool>) -> Seen {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let logs = otap_df_nodes::otlp::synthetic(otap_df::core::data::Signal::Logs, 5, "a", 1);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let stop = stop.clone();
            let body = logs.bytes().clone();
            tasks.spawn(async move {
                let client: Client<HttpConnector, Full<bytes::Bytes>> =
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(1)
                        .build_http();
                let mut seen = Seen::default();
                let mut ticks = tokio::time::interval(every);
                while !stop.load(Ordering::Relaxed) {
                    ticks.tick().await;
                    let request = http::Request::post(format!("http://127.0.0.1:{otlp}/v1/logs"))
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    match client.request(request).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.into_body().collect().await;
                            if status == 200 {
                                seen.accepted += 1;
                            } else {
                                seen.refused.push(status);
                            }
                        }
                        Err(error) => seen.transport_errors.push(format!("{error:?}")),
                    }
                }
                seen
            });
        }
        let mut all = Seen::default();
        while let Some(seen) = tasks.join_next().await {
            let seen = seen.unwrap();
            all.accepted += seen.accepted;
            all.refused.extend(seen.refused);
            all.transport_errors.extend(seen.transport_errors);
        }
        all
    })
}

#[test]
fn a_hundred_replacing_reloads_while_keep_alive_clients_send_lose_no_request_and_no_record() {
    let setup = Setup::start("reload-storm", None);
    let stop = Arc::new(AtomicBool::new(false));
    // 8 clients, a request every 40 ms each: 200 requests a second.
    let sending = std::thread::spawn({
        let stop = stop.clone();
        let otlp = setup.otlp;
        move || clients(otlp, 8, Duration::from_millis(40), stop)
    });
    // A reload every 50 ms (a step missed while a reload took longer is not made up).
    let period = Duration::from_millis(50);
    let mut next = Instant::now();
    for version in 1..=100 {
        let now = Instant::now();
        if next > now {
            // Pacing the reloads, not waiting for an outcome.
            std::thread::sleep(next - now);
        }
        next = next.max(now) + period;
        setup.replace(version, None);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = sending.join().unwrap();
    let last = setup.finish();
    assert!(
        seen.transport_errors.is_empty(),
        "{} of {} requests failed at the transport: {:?}",
        seen.transport_errors.len(),
        seen.accepted as usize + seen.refused.len() + seen.transport_errors.len(),
        &seen.transport_errors[..seen.transport_errors.len().min(5)]
    );
    assert!(seen.refused.is_empty(), "refused: {:?}", seen.refused);
    assert!(seen.accepted > 100, "the clients kept sending: {seen:?}");
    assert_eq!(
        records_out(last.as_str(), "out"),
        Some(seen.accepted * 5),
        "{last}"
    );
    // The clients' connections went from version to version.
    assert!(
        counter(last.as_str(), "in", "connections.handed_over").is_some_and(|n| n >= 100),
        "{last}"
    );
}
