//! OTLP over HTTP/1.1: `receiver:otlp_http` and `exporter:otlp_http`, and what both need
//! (signal paths, media types, the error body).

pub mod exporter;
pub mod receiver;

use bytes::Bytes;
use otap_df_core::data::{Encoding, Signal};

/// The path of `signal` under an OTLP/HTTP base URL (`v1/logs`, ...), as the specification
/// fixes it.
pub const fn signal_path(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "v1/logs",
        Signal::Metrics => "v1/metrics",
        Signal::Traces => "v1/traces",
    }
}

/// `Content-Type` of `encoding`.
pub const fn media_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    }
}

/// The encoding of a `Content-Type` value (parameters such as `charset` ignored), or `None`.
pub fn encoding_of(content_type: &str) -> Option<Encoding> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-protobuf") {
        Some(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

/// A `google.rpc.Status` with `code` and `message`, the body of an OTLP/HTTP error response,
/// in `encoding`.
pub fn status_body(encoding: Encoding, code: i32, message: &str) -> Bytes {
    match encoding {
        Encoding::Protobuf => {
            let mut body = Vec::with_capacity(message.len() + 8);
            if code != 0 {
                prost::encoding::int32::encode(1, &code, &mut body);
            }
            if !message.is_empty() {
                prost::encoding::string::encode(2, &message.to_owned(), &mut body);
            }
            Bytes::from(body)
        }
        Encoding::Json => Bytes::from(
            serde_json::json!({ "code": code, "message": message })
                .to_string()
                .into_bytes(),
        ),
    }
}

/// The message of a `google.rpc.Status` body, when it decodes (for logs of a refused export).
pub fn status_message(encoding: Encoding, body: &[u8]) -> Option<String> {
    match encoding {
        Encoding::Protobuf => {
            #[derive(Clone, PartialEq, prost::Message)]
            struct Status {
                #[prost(int32, tag = "1")]
                code: i32,
                #[prost(string, tag = "2")]
                message: String,
            }
            <Status as prost::Message>::decode(body)
                .ok()
                .map(|s| s.message)
        }
        Encoding::Json => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned)),
    }
    .filter(|m| !m.is_empty())
}

/// The body of a successful export: an empty `Export*ServiceResponse`.
pub fn success_body(encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::new(),
        Encoding::Json => Bytes::from_static(b"{}"),
    }
}

/// gRPC status codes used in error bodies.
pub mod code {
    /// The request is malformed.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// The caller is not authenticated.
    pub const UNAUTHENTICATED: i32 = 16;
    /// The caller is authenticated and not permitted.
    pub const PERMISSION_DENIED: i32 = 7;
    /// The pipeline cannot take more now.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// The service cannot serve now.
    pub const UNAVAILABLE: i32 = 14;
    /// No such method.
    pub const UNIMPLEMENTED: i32 = 12;
    /// The request did not complete in time.
    pub const DEADLINE_EXCEEDED: i32 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_ignore_parameters_and_case() {
        assert_eq!(
            encoding_of("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            encoding_of("Application/X-Protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(encoding_of("text/plain"), None);
    }

    #[test]
    fn status_bodies_round_trip() {
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let body = status_body(encoding, code::INVALID_ARGUMENT, "bad gzip");
            assert_eq!(status_message(encoding, &body).as_deref(), Some("bad gzip"));
        }
    }
}
