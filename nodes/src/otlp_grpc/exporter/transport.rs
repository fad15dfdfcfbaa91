//! The gRPC side of `exporter:otlp_grpc`: one unary call of a payload's export method, its
//! protobuf bytes framed as they are (gzip- or zstd-compressed unless told otherwise), and what the
//! call's status means.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use otap_df_core::data::{Encoding, OtlpPayload, Signal};

use crate::export::identity::IdentityHeaders;
use crate::export::token::{self, TokenHeader};
use crate::export::{Attempt, Transport};
use crate::otlp_grpc::{GrpcStatus, code, frame, service_path, unframe};
use crate::otlp_http::exporter::Compression;
use crate::receive::payload::Coding;

/// The HTTP/2 client: every call a stream of one connection per upstream.
pub(super) type GrpcClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The calls of one exporter instance.
pub(super) struct GrpcTransport {
    pub(super) client: GrpcClient,
    /// Each signal's method on the server.
    pub(super) methods: [Uri; 3],
    /// Sent with every call.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// Set on each request from its payload's identity.
    pub(super) identity_headers: IdentityHeaders,
    pub(super) compression: Compression,
    /// Bound of one call, response included; also sent as `grpc-timeout`.
    pub(super) timeout: Duration,
    pub(super) token: Option<TokenHeader>,
    /// Calls made.
    pub(super) requests: Arc<AtomicU64>,
    /// Records the server said it rejected in a partial success.
    pub(super) rejected: Arc<AtomicU64>,
}

/// The methods of the three signals on the server at `base` (scheme and authority).
pub(super) fn methods(base: &Uri) -> Result<[Uri; 3], String> {
    let method = |signal: Signal| -> Result<Uri, String> {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(service_path(signal).parse().map_err(|e| format!("{e}"))?);
        Uri::from_parts(parts).map_err(|e| format!("cannot address `{base}`: {e}"))
    };
    Ok([
        method(Signal::Logs)?,
        method(Signal::Metrics)?,
        method(Signal::Traces)?,
    ])
}

impl Transport for GrpcTransport {
    const PROTOCOL: &'static str = "OTLP/gRPC";

    fn body(&self, data: &OtlpPayload) -> std::io::Result<Bytes> {
        // gRPC carries protobuf: a payload an OTLP/HTTP JSON sender gave is transcoded (the
        // rare path; protobuf payloads go on as they are).
        let message = match data.encoding() {
            Encoding::Protobuf => data.bytes().clone(),
            Encoding::Json => crate::otlp::to_protobuf(data)
                .map(|payload| payload.bytes().clone())
                .map_err(std::io::Error::other)?,
        };
        let compressed = self.compression != Compression::None;
        Ok(frame(&self.compression.compress(&message)?, compressed))
    }

    fn carries_token(&self) -> bool {
        self.token.is_some()
    }

    async fn send(&self, data: &OtlpPayload, body: &Bytes, fresh: bool) -> Attempt {
        let from_identity = match self.identity_headers.of(data) {
            Ok(headers) => headers,
            Err(why) => return Attempt::Permanent(why),
        };
        let auth = match token::for_attempt(self.token.as_ref(), fresh).await {
            Ok(auth) => auth,
            Err(attempt) => return attempt,
        };
        let method = match data.signal() {
            Signal::Logs => &self.methods[0],
            Signal::Metrics => &self.methods[1],
            Signal::Traces => &self.methods[2],
        };
        let mut request = Request::post(method.clone())
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", format!("{}m", self.timeout.as_millis()));
        if let Some(coding) = self.compression.name() {
            request = request.header("grpc-encoding", coding);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        for (name, value) in from_identity.iter() {
            request = request.header(name.clone(), value.clone());
        }
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body.clone())) {
            Ok(request) => request,
            Err(e) => return Attempt::Permanent(format!("cannot build the call: {e}")),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.exchange(data.signal(), request).await
    }
}

impl GrpcTransport {
    /// Makes the call and reads its status, within the timeout.
    async fn exchange(&self, signal: Signal, request: Request<Full<Bytes>>) -> Attempt {
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            // The body is read whole: its trailers hold the call's status.
            let collected = body.collect().await?;
            let trailers = collected.trailers().cloned();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
                parts,
                trailers,
                collected.to_bytes(),
            ))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Attempt::Retry {
                reason: format!("no answer within {:?}", self.timeout),
                retry_after: None,
            },
            Ok(Err(error)) => Attempt::Retry {
                reason: format!(
                    "the call failed: {}",
                    crate::export::error_chain(error.as_ref())
                ),
                retry_after: None,
            },
            Ok(Ok((parts, trailers, body))) => {
                // A trailers-only answer carries the status in its headers.
                let status = trailers
                    .as_ref()
                    .and_then(GrpcStatus::of)
                    .or_else(|| GrpcStatus::of(&parts.headers));
                match status {
                    Some(status) if status.code == code::OK => {
                        self.partial_success(signal, &parts.headers, &body);
                        Attempt::Delivered
                    }
                    Some(status) => attempt(&status),
                    None => without_status(parts.status),
                }
            }
        }
    }

    /// Reads the response for a partial success, and reports the records it rejected
    /// (counted, and logged with the server's message): they are not retried, as the OTLP
    /// specification says.
    fn partial_success(&self, signal: Signal, headers: &HeaderMap, body: &Bytes) {
        let Ok((compressed, message)) = unframe(body) else {
            return;
        };
        let plain;
        let message = if compressed {
            // A server answers in the coding of the call, or one the call did not rule out.
            let coding = headers
                .get("grpc-encoding")
                .and_then(|name| Coding::named(name.as_bytes()));
            match coding.map(|coding| coding.decompress(body.slice_ref(message), 4 << 20)) {
                Some(Ok(bytes)) => {
                    plain = bytes;
                    &plain[..]
                }
                _ => return,
            }
        } else {
            message
        };
        let partial = crate::otlp::partial_success(signal, message);
        crate::export::rejected_in_part(signal, partial, &self.rejected);
    }
}

/// What a call's non-OK status means.
fn attempt(status: &GrpcStatus) -> Attempt {
    let reason = format!("gRPC status {}: {}", status.code, status.message);
    if status.code == code::UNAUTHENTICATED {
        Attempt::Unauthorized(reason)
    } else if status.retryable() {
        Attempt::Retry {
            reason,
            retry_after: status.retry_after,
        }
    } else {
        Attempt::Permanent(reason)
    }
}

/// An answer without a gRPC status: what its HTTP status means, as gRPC maps it (a proxy or
/// a server that is not a gRPC one answered).
fn without_status(status: http::StatusCode) -> Attempt {
    let reason = format!("HTTP {status} without a gRPC status");
    match status.as_u16() {
        401 => Attempt::Unauthorized(reason),
        429 | 502..=504 => Attempt::Retry {
            reason,
            retry_after: None,
        },
        _ => Attempt::Permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signal_goes_to_its_service() {
        let base: Uri = "http://collector:4317".parse().expect("a URI");
        let methods = methods(&base).expect("methods");
        assert_eq!(
            methods[0],
            "http://collector:4317/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        );
        assert_eq!(
            methods[2],
            "http://collector:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
    }

    #[test]
    fn statuses_map_to_what_the_specification_says() {
        let status = |code, retry_after| GrpcStatus {
            code,
            message: "m".to_owned(),
            retry_after,
        };
        assert!(matches!(
            attempt(&status(code::UNAVAILABLE, None)),
            Attempt::Retry {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            attempt(&status(code::RESOURCE_EXHAUSTED, Some(Duration::from_secs(3)))),
            Attempt::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            attempt(&status(code::RESOURCE_EXHAUSTED, None)),
            Attempt::Permanent(reason) if reason == "gRPC status 8: m"
        ));
        assert!(matches!(
            attempt(&status(code::UNAUTHENTICATED, None)),
            Attempt::Unauthorized(reason) if reason == "gRPC status 16: m"
        ));
        assert!(matches!(
            attempt(&status(code::INVALID_ARGUMENT, None)),
            Attempt::Permanent(_)
        ));
        assert!(matches!(
            without_status(http::StatusCode::SERVICE_UNAVAILABLE),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            without_status(http::StatusCode::NOT_FOUND),
            Attempt::Permanent(_)
        ));
    }
}
