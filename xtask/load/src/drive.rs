//! The load generator: closed-loop HTTP/1.1 keep-alive connections, each sending the same
//! prepared request and waiting for its answer before sending the next.
//!
//! It writes prepared bytes and parses only the status line and the headers it needs
//! (`httparse`), so that one client thread can offer more than one server core can take.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the clients saw during the measured window.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// `2xx` answers.
    pub accepted: u64,
    /// `429` and `503` answers (the server pushing back).
    pub refused: u64,
    /// Refusals that carried `Retry-After`.
    pub refused_with_retry_after: u64,
    /// Other statuses, broken connections, malformed answers.
    pub errors: u64,
    /// Connections opened after the first one (the server closed the previous one).
    pub reconnects: u64,
    /// Latency of each accepted request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Length of the measured window.
    pub window: Duration,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.refused_with_retry_after += other.refused_with_retry_after;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.latencies_us.extend(other.latencies_us);
    }

    /// Accepted requests per second.
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.window.as_secs_f64()
    }

    /// Refused requests per second.
    pub fn refused_per_second(&self) -> f64 {
        self.refused as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the accepted requests' latency.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() - 1) as f64 * q).round() as usize;
        Some(Duration::from_micros(u64::from(sorted[index])))
    }
}

/// A `POST` of `body` to `path` with `headers`, as bytes on the wire.
pub fn request(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Arc<[u8]> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes.into()
}

/// Runs `connections` closed-loop clients against `address` for `warmup + measure`; counts
/// the answers that arrive inside the measured window. With `stamp`, the 8 bytes of the
/// request at that offset (a record's fixed64 timestamp) are rewritten for every request, so
/// that no two requests are alike (a deduplicating server must do all its work each time).
pub async fn drive(
    address: SocketAddr,
    request: Arc<[u8]>,
    stamp: Option<usize>,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> Outcome {
    let begin = Instant::now() + warmup;
    let end = begin + measure;
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..connections {
        let request = Request {
            bytes: request.clone(),
            stamp: stamp.map(|at| (at, (index as u64) << 40)),
        };
        clients.spawn(client(address, request, begin, end));
    }
    let mut total = Outcome {
        window: measure,
        ..Outcome::default()
    };
    while let Some(outcome) = clients.join_next().await {
        if let Ok(outcome) = outcome {
            total.merge(outcome);
        }
    }
    total
}

/// One answer, as far as the client cares.
struct Answer {
    status: u16,
    retry_after: bool,
    close: bool,
}

/// One client's request: the same bytes each time, or with a fresh stamp at an offset.
struct Request {
    bytes: Arc<[u8]>,
    /// Where the stamp goes, and the client's next stamp.
    stamp: Option<(usize, u64)>,
}

impl Request {
    /// The bytes to send next.
    fn next(&mut self, own: &mut Vec<u8>) -> bool {
        let Some((at, stamp)) = &mut self.stamp else {
            return false;
        };
        if own.is_empty() {
            own.extend_from_slice(&self.bytes);
        }
        *stamp += 1;
        own[*at..*at + 8].copy_from_slice(&stamp.to_le_bytes());
        true
    }
}

async fn client(
    address: SocketAddr,
    mut request: Request,
    begin: Instant,
    end: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut own = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut buffer = Vec::with_capacity(8192);
    let mut opened = 0u64;
    let deadline = tokio::time::Instant::from_std(end);
    while Instant::now() < end {
        if stream.is_none() {
            match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
                Ok(Ok(connected)) => {
                    let _ = connected.set_nodelay(true);
                    stream = Some(connected);
                    opened += 1;
                }
                Ok(Err(_)) => {
                    if Instant::now() >= begin {
                        outcome.errors += 1;
                    }
                    // Refused connections (a full backlog): try again shortly, bounded by `end`.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                Err(_) => break,
            }
        }
        let Some(connection) = stream.as_mut() else {
            continue;
        };
        let bytes: &[u8] = if request.next(&mut own) {
            &own
        } else {
            &request.bytes
        };
        let sent = Instant::now();
        let exchanged =
            tokio::time::timeout_at(deadline, exchange(connection, bytes, &mut buffer)).await;
        let answered = Instant::now();
        // Throughput is answers per second of the window, whenever the request was sent.
        let counted = answered >= begin && answered <= end;
        match exchanged {
            Err(_) => break,
            Ok(Err(())) => {
                stream = None;
                if counted {
                    outcome.errors += 1;
                }
            }
            Ok(Ok(answer)) => {
                if answer.close {
                    stream = None;
                }
                if !counted {
                    continue;
                }
                match answer.status {
                    200..=299 => {
                        outcome.accepted += 1;
                        let micros = (answered - sent).as_micros().min(u128::from(u32::MAX));
                        outcome.latencies_us.push(micros as u32);
                    }
                    429 | 503 => {
                        outcome.refused += 1;
                        outcome.refused_with_retry_after += u64::from(answer.retry_after);
                    }
                    _ => outcome.errors += 1,
                }
            }
        }
    }
    outcome.reconnects = opened.saturating_sub(1);
    outcome
}

/// Writes `request` and reads one whole answer.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<Answer, ()> {
    stream.write_all(request).await.map_err(drop)?;
    buffer.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 24];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buffer) {
            Ok(httparse::Status::Complete(head)) => {
                let mut length = 0usize;
                let mut retry_after = false;
                let mut close = false;
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(header.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or(())?;
                    } else if header.name.eq_ignore_ascii_case("retry-after") {
                        retry_after = true;
                    } else if header.name.eq_ignore_ascii_case("connection") {
                        close = header.value.eq_ignore_ascii_case(b"close");
                    }
                }
                let status = response.code.ok_or(())?;
                while buffer.len() < head + length {
                    read_more(stream, buffer).await?;
                }
                return Ok(Answer {
                    status,
                    retry_after,
                    close,
                });
            }
            Ok(httparse::Status::Partial) => read_more(stream, buffer).await?,
            Err(_) => return Err(()),
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), ()> {
    buffer.reserve(4096);
    match stream.read_buf(buffer).await {
        Ok(0) | Err(_) => Err(()),
        Ok(_) => Ok(()),
    }
}

/// Calls over one HTTP/2 connection: one connection per [`STREAMS_PER_CONNECTION`] calls.
pub const STREAMS_PER_CONNECTION: usize = 16;

/// Runs `calls` closed-loop OTLP/gRPC callers against `address` for `warmup + measure`, over
/// `calls / 16` HTTP/2 connections (at least one), each sending `message` (framed) to `path`
/// with `headers`; counts the answers that arrive inside the measured window: `OK` accepted,
/// `RESOURCE_EXHAUSTED` and `UNAVAILABLE` refused (with a `RetryInfo`: "with Retry-After").
pub async fn drive_grpc(
    address: SocketAddr,
    path: &str,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    message: bytes::Bytes,
    calls: usize,
    warmup: Duration,
    measure: Duration,
) -> Outcome {
    let begin = Instant::now() + warmup;
    let end = begin + measure;
    let connections = calls.div_ceil(STREAMS_PER_CONNECTION).max(1);
    let mut callers = tokio::task::JoinSet::new();
    let mut total = Outcome {
        window: measure,
        ..Outcome::default()
    };
    let Ok(uri) = format!("http://{address}{path}").parse::<http::Uri>() else {
        total.errors += 1;
        return total;
    };
    for connection in 0..connections {
        let Ok(stream) = TcpStream::connect(address).await else {
            total.errors += 1;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handshake =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .adaptive_window(true)
                .handshake(hyper_util::rt::TokioIo::new(stream))
                .await;
        let Ok((sender, driver)) = handshake else {
            total.errors += 1;
            continue;
        };
        tokio::spawn(driver);
        // The calls spread over the connections as evenly as they go.
        let here = calls / connections + usize::from(connection < calls % connections);
        for _ in 0..here {
            let call = GrpcCall {
                sender: sender.clone(),
                uri: uri.clone(),
                headers: headers.clone(),
                message: message.clone(),
            };
            callers.spawn(call.run(begin, end));
        }
    }
    while let Some(outcome) = callers.join_next().await {
        if let Ok(outcome) = outcome {
            total.merge(outcome);
        }
    }
    total
}

/// One closed-loop caller on an HTTP/2 connection.
struct GrpcCall {
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    uri: http::Uri,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    message: bytes::Bytes,
}

impl GrpcCall {
    async fn run(mut self, begin: Instant, end: Instant) -> Outcome {
        use http_body_util::BodyExt;
        let mut outcome = Outcome::default();
        let deadline = tokio::time::Instant::from_std(end);
        while Instant::now() < end {
            let mut request = http::Request::post(self.uri.clone())
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header("te", "trailers");
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            let Ok(request) = request.body(http_body_util::Full::new(self.message.clone())) else {
                break;
            };
            let sent = Instant::now();
            let call = async {
                let response = self.sender.send_request(request).await.map_err(drop)?;
                let (parts, body) = response.into_parts();
                let collected = body.collect().await.map_err(drop)?;
                let trailers = collected.trailers().cloned().unwrap_or_default();
                let get = |name: &str| {
                    trailers
                        .get(name)
                        .or_else(|| parts.headers.get(name))
                        .cloned()
                };
                let code = get("grpc-status")
                    .and_then(|v| v.to_str().ok().and_then(|v| v.parse::<i32>().ok()));
                Ok::<_, ()>((code, get("grpc-status-details-bin").is_some()))
            };
            let answered_call = tokio::time::timeout_at(deadline, call).await;
            let answered = Instant::now();
            let counted = answered >= begin && answered <= end;
            match answered_call {
                Err(_) => break,
                Ok(Err(())) => {
                    if counted {
                        outcome.errors += 1;
                    }
                    // The connection broke: this caller stops (the others report theirs).
                    break;
                }
                Ok(Ok((code, retry_info))) => {
                    if !counted {
                        continue;
                    }
                    match code {
                        Some(0) => {
                            outcome.accepted += 1;
                            let micros = (answered - sent).as_micros().min(u128::from(u32::MAX));
                            outcome.latencies_us.push(micros as u32);
                        }
                        Some(8 | 14) => {
                            outcome.refused += 1;
                            outcome.refused_with_retry_after += u64::from(retry_info);
                        }
                        _ => outcome.errors += 1,
                    }
                }
            }
        }
        outcome
    }
}

/// What `otap-df-load drive` is told.
pub struct Once {
    pub address: SocketAddr,
    pub grpc: bool,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub records: usize,
    pub token: Option<String>,
    /// Every request distinct (OTLP/HTTP), as the `bridge-*` targets send them.
    pub distinct: bool,
}

/// The timestamp of every record of the `bridge-*` targets' request: the client rewrites its
/// first occurrence in each request, so that no two are alike.
pub(crate) const STAMP: u64 = 0x5eed_0000_0000_0001;

/// Where the request's stamp (its first record's timestamp, [`STAMP`]) is,
/// for the client to rewrite in each request.
pub fn stamp_at(request: &[u8]) -> Option<usize> {
    let stamp = STAMP.to_le_bytes();
    request.windows(8).position(|w| w == stamp)
}

/// One level against a running server, on a runtime of one thread; prints the outcome.
pub fn once(options: Once) -> Result<(), String> {
    use otap_df_core::data::Signal;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    if options.grpc && options.distinct {
        return Err("--distinct is for OTLP/HTTP only (--grpc false)".to_owned());
    }
    let time = if options.distinct { STAMP } else { 1 };
    let payload = otap_df_nodes::otlp::synthetic(Signal::Logs, options.records, "load", time);
    let authorization = options
        .token
        .as_ref()
        .map(|token| format!("Bearer {token}"));
    let outcome = if options.grpc {
        let mut headers = Vec::new();
        if let Some(value) = &authorization {
            headers.push((
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(value).map_err(|e| e.to_string())?,
            ));
        }
        runtime.block_on(drive_grpc(
            options.address,
            otap_df_nodes::otlp_grpc::service_path(Signal::Logs),
            headers,
            otap_df_nodes::otlp_grpc::frame(payload.bytes(), false),
            options.connections,
            options.warmup,
            options.measure,
        ))
    } else {
        let mut headers = vec![("Content-Type", "application/x-protobuf")];
        if let Some(value) = &authorization {
            headers.push(("Authorization", value.as_str()));
        }
        let request = request(options.address, "/v1/logs", &headers, payload.bytes());
        let stamp = options.distinct.then(|| stamp_at(&request)).flatten();
        runtime.block_on(drive(
            options.address,
            request,
            stamp,
            options.connections,
            options.warmup,
            options.measure,
        ))
    };
    println!(
        "accepted={} refused={} errors={} accepted/s={:.0} p50={:?} p99={:?}",
        outcome.accepted,
        outcome.refused,
        outcome.errors,
        outcome.accepted_per_second(),
        outcome.latency(0.5),
        outcome.latency(0.99),
    );
    Ok(())
}
