//! The harness shared by the OTLP/HTTP integration tests: the registry, pipelines running
//! on their own thread, counters.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // each test binary uses a part

pub mod binary;
pub mod grpc;

use http_body_util::BodyExt;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otap_df_core::registry::Registry;
use otap_df_core::runtime::{Engine, EngineError, NodeTotals, RunOptions, Telemetry};
use otap_df_tests::engine::{self, Started};

/// Core's built-ins, the built-in nodes, `bearer_auth`, `disk_queue`, and the test kit's
/// fixtures and recording nodes.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    otap_df_nodes::register(&mut registry);
    otap_df::extensions::bearer_auth::register(&mut registry);
    otap_df::extensions::disk_queue::register(&mut registry);
    otap_df_tests::fixtures::register(&mut registry);
    otap_df_tests::recording::register(&mut registry);
    registry.finish().expect("registry")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    otap_df_tests::ports::free_port().expect("a free loopback port")
}

/// A pipeline running on one core on its own thread.
pub struct Running {
    started: Started,
}

impl Running {
    pub fn start(yaml: &str) -> Self {
        Self::start_with(yaml, RunOptions::default().channel_capacity)
    }

    pub fn start_with(yaml: &str, channel_capacity: usize) -> Self {
        let options = RunOptions {
            channel_capacity,
            ..engine::one_core_options()
        };
        let engine = Engine::new(engine::resolve(yaml, &registry()), options);
        Self {
            started: engine::start(engine),
        }
    }

    /// Starts a pipeline whose receiver listens on `port`, and waits until it accepts
    /// connections.
    pub fn listening(yaml: &str, port: u16) -> Self {
        Self::listening_with(yaml, port, RunOptions::default().channel_capacity)
    }

    pub fn listening_with(yaml: &str, port: u16, channel_capacity: usize) -> Self {
        let running = Self::start_with(yaml, channel_capacity);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if running.started.is_finished() {
                panic!(
                    "the pipeline ended before listening: {:?}",
                    running.started.join()
                );
            }
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            // Readiness poll, bounded by the deadline.
            std::thread::sleep(Duration::from_millis(5));
        }
        // The socket accepts from the pipeline's build on; its counters exist once it runs.
        if !running.started.wait_running(Duration::from_secs(10)) {
            panic!("the pipeline did not start: {:?}", running.started.join());
        }
        running
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.started.telemetry
    }

    pub fn node(&self, node: &str) -> NodeTotals {
        node_totals(&self.started.telemetry, node)
    }

    pub fn stop(self) -> Result<(), EngineError> {
        self.started.stop()
    }

    /// Waits for the pipeline to end by itself.
    pub fn finish(self) -> Result<(), EngineError> {
        self.started.join()
    }
}

/// The totals of `node` (panics when there is none).
pub use otap_df_tests::engine::totals as node_totals;

/// The node's own counter `name` (0 when it never counted).
#[allow(unused_imports)] // used by some test binaries
pub use otap_df_tests::engine::named;

/// Runs a pipeline that ends by itself, on one core; its telemetry.
pub fn run_to_end(yaml: &str) -> Arc<Telemetry> {
    engine::run_to_end(engine::resolve(yaml, &registry()))
}

/// What a raw request got back.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

/// Sends one POST to `127.0.0.1:port` with a plain HTTP/1.1 client.
pub fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Answer {
    request(http::Method::POST, port, path, headers, body)
}

/// Sends one GET to `127.0.0.1:port`.
pub fn get(port: u16, path: &str) -> Answer {
    request(http::Method::GET, port, path, &[], bytes::Bytes::new())
}

/// Sends one request to `127.0.0.1:port` with a plain HTTP/1.1 client.
pub fn request(
    method: http::Method,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender
            .send_request(
                request
                    .body(http_body_util::Full::new(body.into()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    })
}

/// Reads from `stream` until the server closes it; what it sent first. Bounded by a 10 s
/// read timeout: a server that keeps the connection open fails the test.
pub fn read_until_closed(stream: &mut TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        // A reset after the answer is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            String::from_utf8_lossy(&answer).into_owned()
        }
        Err(e) => panic!("the connection stayed open ({e}); read so far: {answer:?}"),
    }
}

/// The head of a keep-alive `POST /v1/logs` of a protobuf body of `length` bytes.
pub fn logs_head(length: usize) -> String {
    format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// One answer read off a keep-alive connection.
#[derive(Debug)]
pub struct RawAnswer {
    /// The status line (`HTTP/1.1 200 OK`).
    pub status: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl RawAnswer {
    /// The value of header `name` (lower case), if it came.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 answer (head and `Content-Length` body) from a keep-alive connection.
pub fn read_answer(reader: &mut std::io::BufReader<TcpStream>) -> RawAnswer {
    use std::io::{BufRead, Read};
    let mut line = |what: &str| {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect(what);
        assert_ne!(read, 0, "the connection was closed before {what}");
        line
    };
    let status = line("a status line").trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let line = line("a header line");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let answer = RawAnswer { status, headers };
    let length = answer
        .header("content-length")
        .map_or(0, |length| length.parse().expect("a length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    answer
}

/// Waits (bounded: 10 s) until the admin endpoint on `admin` answers ready.
pub fn wait_ready(admin: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(TcpStream::connect(("127.0.0.1", admin)).is_ok() && get(admin, "/readyz").status == 200)
    {
        assert!(Instant::now() < deadline, "not ready within 10s");
        // Readiness poll, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /reload` on the admin endpoint `admin`: the status and the JSON answer.
pub fn reload(admin: u16) -> (u16, serde_json::Value) {
    let answer = post(admin, "/reload", &[], Vec::new());
    (
        answer.status.as_u16(),
        serde_json::from_slice(&answer.body).unwrap(),
    )
}
