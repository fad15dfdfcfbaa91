//! OTLP/gRPC: OTLP's export services over gRPC (HTTP/2), and what both sides of it read and
//! write on the wire — the service paths, gRPC's message framing, and a call's status in the
//! response's trailers (`grpc-status`, `grpc-message`, and the `google.rpc.Status` of
//! `grpc-status-details-bin`, whose `RetryInfo` says when to come back).
//!
//! Messages are never decoded into generated types on the way through: a payload's protobuf
//! bytes are framed as they are, and only a response (a few bytes) or a status is decoded.

pub mod exporter;
pub mod receiver;

use std::time::Duration;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use otap_df_core::data::Signal;
use prost::Message;

/// The path of `signal`'s export method.
pub const fn service_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    }
}

/// A unary call's body: its one message (if any), then its trailers (gRPC's status). What
/// the receiver answers with.
#[derive(Debug, Default)]
pub struct UnaryBody {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl UnaryBody {
    /// A body of `message` (already framed) and `trailers`.
    pub fn new(message: Option<Bytes>, trailers: Option<HeaderMap>) -> Self {
        Self { message, trailers }
    }
}

impl hyper::body::Body for UnaryBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let frame = match self.message.take() {
            Some(message) => Some(Ok(hyper::body::Frame::data(message))),
            None => self
                .trailers
                .take()
                .map(|trailers| Ok(hyper::body::Frame::trailers(trailers))),
        };
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }
}

/// The gRPC status codes this crate acts on (`google.rpc.Code`).
pub mod code {
    /// The call succeeded.
    pub const OK: i32 = 0;
    /// The call was cancelled (typically by the caller).
    pub const CANCELLED: i32 = 1;
    /// The request is malformed.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// The call did not complete in time.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// The server has no room now.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// The call was aborted (a concurrency conflict).
    pub const ABORTED: i32 = 10;
    /// Outside the valid range.
    pub const OUT_OF_RANGE: i32 = 11;
    /// No such method.
    pub const UNIMPLEMENTED: i32 = 12;
    /// The service cannot serve now.
    pub const UNAVAILABLE: i32 = 14;
    /// Data was lost.
    pub const DATA_LOSS: i32 = 15;
    /// The caller is not authenticated.
    pub const UNAUTHENTICATED: i32 = 16;
    /// The caller is authenticated and not permitted.
    pub const PERMISSION_DENIED: i32 = 7;
}

/// `message` as one gRPC message on the wire: a compressed flag, its length (big-endian), the
/// bytes.
pub fn frame(message: &[u8], compressed: bool) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(u8::from(compressed));
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    framed.freeze()
}

/// The one message of a unary call's body, and whether it is compressed; an error saying
/// what is wrong with the framing.
pub fn unframe(body: &[u8]) -> Result<(bool, &[u8]), String> {
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return Err(format!(
            "a gRPC message starts with 5 bytes of framing; the body has {}",
            body.len()
        ));
    };
    let compressed = match head[0] {
        0 => false,
        1 => true,
        other => {
            return Err(format!(
                "the message's compressed flag is {other}, not 0 or 1"
            ));
        }
    };
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != length {
        return Err(format!(
            "the message says it holds {length} bytes; the body has {} after the framing",
            rest.len()
        ));
    }
    Ok((compressed, rest))
}

/// The time a call's `grpc-timeout` gives it (`1`–`8` digits and a unit: `H`, `M`, `S`,
/// `m`illi-, `u`micro-, `n`anoseconds); `None` when the value is not one.
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |amount, digit| amount * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A call's outcome as its trailers (or its headers, in a trailers-only answer) say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrpcStatus {
    /// `grpc-status`.
    pub(crate) code: i32,
    /// `grpc-message`, percent-decoded.
    pub(crate) message: String,
    /// The `RetryInfo` of `grpc-status-details-bin`: when to try again.
    pub(crate) retry_after: Option<Duration>,
}

impl GrpcStatus {
    /// The status in `headers`; None without `grpc-status`.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let code = headers
            .get("grpc-status")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let message = headers
            .get("grpc-message")
            .map(|v| percent_decode(v.as_bytes()))
            .unwrap_or_default();
        let retry_after = headers
            .get("grpc-status-details-bin")
            .and_then(|v| decode_base64(v.as_bytes()))
            .and_then(|details| retry_delay(&details));
        Some(Self {
            code,
            message,
            retry_after,
        })
    }

    /// Whether the OTLP specification says to retry it: the transient codes, and
    /// `RESOURCE_EXHAUSTED` only when the server says when to (`RetryInfo`).
    pub(crate) fn retryable(&self) -> bool {
        match self.code {
            code::CANCELLED
            | code::DEADLINE_EXCEEDED
            | code::ABORTED
            | code::OUT_OF_RANGE
            | code::UNAVAILABLE
            | code::DATA_LOSS => true,
            code::RESOURCE_EXHAUSTED => self.retry_after.is_some(),
            _ => false,
        }
    }
}

/// `grpc-message`'s percent-encoding undone (invalid escapes kept as they are).
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i..] {
            [b'%', high, low, ..] if hex(high).is_some() && hex(low).is_some() => {
                out.push((hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0)) as u8);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `-bin` header's value: base64, padded or not.
fn decode_base64(value: &[u8]) -> Option<Vec<u8>> {
    let trimmed: Vec<u8> = value.iter().copied().filter(|b| *b != b'=').collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()
}

/// `google.rpc.Status`, as far as a client reads it.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay of the `RetryInfo` among an encoded `google.rpc.Status`'s details.
fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(seconds, nanos.min(999_999_999)))
}

/// An encoded `google.rpc.Status` of `code` and `message` whose one detail is a `RetryInfo`
/// of `delay`: what a server sends in `grpc-status-details-bin` (base64) to say when to
/// come back.
pub fn status_with_retry(code: i32, message: &str, delay: Duration) -> Vec<u8> {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    RpcStatus {
        code,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_each_unit_and_nothing_else_is() {
        assert_eq!(grpc_timeout(b"10000m"), Some(Duration::from_secs(10)));
        assert_eq!(grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(
            grpc_timeout(b"99999999S"),
            Some(Duration::from_secs(99_999_999))
        );
        assert_eq!(grpc_timeout(b"250u"), Some(Duration::from_micros(250)));
        assert_eq!(grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        for bad in [
            &b""[..],
            b"m",
            b"10",
            b"10s",
            b"123456789S",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(grpc_timeout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_message_is_framed_and_unframed_whole() {
        let framed = frame(b"abc", false);
        assert_eq!(&framed[..], b"\x00\x00\x00\x00\x03abc");
        assert_eq!(unframe(&framed), Ok((false, &b"abc"[..])));
        assert_eq!(unframe(&frame(b"", true)), Ok((true, &b""[..])));
        assert_eq!(
            unframe(b"\x00\x00"),
            Err("a gRPC message starts with 5 bytes of framing; the body has 2".to_owned())
        );
        assert_eq!(
            unframe(b"\x00\x00\x00\x00\x05abc"),
            Err("the message says it holds 5 bytes; the body has 3 after the framing".to_owned())
        );
        assert_eq!(
            unframe(b"\x02\x00\x00\x00\x00"),
            Err("the message's compressed flag is 2, not 0 or 1".to_owned())
        );
    }

    #[test]
    fn a_status_is_read_from_the_trailers_with_its_retry_delay() {
        let mut headers = HeaderMap::new();
        assert_eq!(GrpcStatus::of(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("queue%20full%3A%20try%20later%zz"),
        );
        let details = status_with_retry(8, "full", Duration::from_millis(1500));
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&details);
        headers.insert(
            "grpc-status-details-bin",
            HeaderValue::from_str(&encoded).expect("base64 is a header value"),
        );
        let status = GrpcStatus::of(&headers).expect("a status");
        assert_eq!(
            status,
            GrpcStatus {
                code: code::RESOURCE_EXHAUSTED,
                message: "queue full: try later%zz".to_owned(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
        assert!(status.retryable());
        // Without RetryInfo, RESOURCE_EXHAUSTED is not retried (the OTLP specification).
        headers.remove("grpc-status-details-bin");
        assert!(!GrpcStatus::of(&headers).expect("a status").retryable());
        for (code, retryable) in [
            (code::OK, false),
            (code::UNAVAILABLE, true),
            (code::DEADLINE_EXCEEDED, true),
            (code::INVALID_ARGUMENT, false),
            (code::UNAUTHENTICATED, false),
            (code::UNIMPLEMENTED, false),
        ] {
            let status = GrpcStatus {
                code,
                message: String::new(),
                retry_after: None,
            };
            assert_eq!(status.retryable(), retryable, "{code}");
        }
    }

    #[test]
    fn padded_base64_details_are_read_too() {
        let details = status_with_retry(14, "down", Duration::from_secs(2));
        let padded = base64::engine::general_purpose::STANDARD.encode(&details);
        assert_eq!(
            decode_base64(padded.as_bytes()).and_then(|d| retry_delay(&d)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(retry_delay(b"\xff\xff"), None);
    }
}
