//! Answering one OTLP/gRPC call: what gRPC says of it (method path, content type, metadata,
//! the message's framing and compression) and how a refusal is answered (a trailers-only
//! response with `grpc-status`, `grpc-message` and, when the sender should come back, a
//! `RetryInfo`); admission, authorization, decompression, validation, counting and the
//! hand-off are the protocol-independent ones of `crate::receive`.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use otap_df_core::capability::Identity;
use otap_df_core::data::{Encoding, Signal};

use crate::otlp_grpc::{UnaryBody, code, grpc_timeout, service_path, status_with_retry, unframe};
use crate::receive::admission::Admission;
use crate::receive::authorization::{Authorization, Permissions};
use crate::receive::counters::{Counters, bump};
use crate::receive::payload::{Coding, gather_within, settled, take};
use crate::receive::{Reason, Refusal};

/// Answers one call.
pub(super) struct Handler {
    pub(super) admission: Admission,
    pub(super) message_read_timeout: Duration,
    pub(super) authorization: Option<Authorization>,
    pub(super) permissions: Permissions,
    pub(super) max_message_size: usize,
    pub(super) retry_after: Duration,
    pub(super) counters: Counters,
    /// Whether a request is answered only once its payload is kept for good downstream
    /// (a durable queue): its acknowledgement settled.
    pub(super) acknowledged: bool,
}

/// An empty message, framed: uncompressed, length 0.
const EMPTY_RESPONSE: [u8; 5] = [0; 5];

/// The signals, by the path of their export method.
const SIGNALS: [Signal; 3] = [Signal::Logs, Signal::Metrics, Signal::Traces];

impl Handler {
    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<UnaryBody> {
        bump(&self.counters.requests);
        match self.accept(request).await {
            Ok(()) => {
                bump(&self.counters.accepted);
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from(code::OK));
                // An empty `Export*ServiceResponse` (no partial success), framed: the same
                // five bytes for every call, never allocated.
                response(
                    HeaderMap::new(),
                    Some(Bytes::from_static(&EMPTY_RESPONSE)),
                    Some(trailers),
                )
            }
            Err(refusal) => self.refused(&refusal),
        }
    }

    /// The trailers-only answer to a refused call, counted.
    fn refused(&self, refusal: &Refusal) -> Response<UnaryBody> {
        let reason = refusal.reason;
        bump(reason.counter(&self.counters));
        let code = match reason {
            // gRPC's own mapping: an unknown method or a non-POST one is UNIMPLEMENTED, an
            // unsupported compression too.
            Reason::Unsupported if refusal.message.starts_with("grpc-encoding") => {
                code::UNIMPLEMENTED
            }
            // And a message over the server's limit RESOURCE_EXHAUSTED, which OTLP clients do
            // not retry without a RetryInfo (none is sent: the same message would fail again).
            Reason::TooLarge => code::RESOURCE_EXHAUSTED,
            _ => reason.code(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from(code));
        if let Ok(message) = HeaderValue::from_str(&percent_encode(&refusal.message)) {
            headers.insert("grpc-message", message);
        }
        if reason.retry_later() {
            let details = status_with_retry(code, &refusal.message, self.retry_after);
            let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details);
            if let Ok(value) = HeaderValue::from_str(&encoded) {
                headers.insert("grpc-status-details-bin", value);
            }
        }
        response(headers, None, None)
    }

    /// Takes the call's message into the pipeline, or says why not: checked in the order of
    /// what each check costs (method, content type, credential, compression, deadline), then
    /// admitted, and only then its message read. A call with a deadline (`grpc-timeout`) is
    /// taken before it or not at all: its client stops waiting then, and would send again
    /// what was taken later.
    async fn accept(&self, request: Request<Incoming>) -> Result<(), Refusal> {
        let (signal, coding, deadline, mut identity) = self.check_head(&request)?;
        // An authorizer that waits decides once the head is checked (one that does not
        // decided in `check_head`).
        if let Some(authorization) = self.authorization.as_ref().filter(|a| a.waits) {
            let values = request.headers().get_all(&authorization.header).iter();
            identity = authorization.check_waiting(values).await?;
        }
        self.permissions.check(signal, identity.as_ref())?;
        let take = self.take(request.into_body(), signal, coding, identity);
        let Some(deadline) = deadline else {
            return take.await;
        };
        // The timer starts only if the call has to wait: one whose room and message are at
        // hand is taken in the first poll.
        match tokio::time::timeout(deadline, take).await {
            Ok(taken) => taken,
            Err(_) => Err(Refusal::new(
                Reason::DeadlineExceeded,
                format!("the call's deadline ({deadline:?}) passed before its message was taken"),
            )),
        }
    }

    /// Admits the call, reads its message, and takes it into the pipeline.
    async fn take(
        &self,
        body: Incoming,
        signal: Signal,
        coding: Coding,
        identity: Option<Identity>,
    ) -> Result<(), Refusal> {
        let permit = self.admission.admit(&self.counters).await?;
        let framed_limit = self.max_message_size + 5;
        let reading = self
            .admission
            .reserve_body(framed_limit as u64, &self.counters)
            .await?;
        bump(&self.counters.read);
        let body = self.read_message(body, framed_limit).await?;
        drop(reading);
        let (compressed, message) =
            unframe(&body).map_err(|message| Refusal::new(Reason::BadRequest, message))?;
        let message = match (compressed, coding) {
            (false, _) => body.slice_ref(message),
            (true, Coding::Identity) => {
                return Err(Refusal::new(
                    Reason::BadRequest,
                    "the message is marked compressed but the call has no grpc-encoding",
                ));
            }
            (true, coding) => coding.decompress(body.slice_ref(message), self.max_message_size)?,
        };
        let kept = take(
            signal,
            Encoding::Protobuf,
            message,
            identity,
            permit,
            self.acknowledged,
            &self.counters,
        )?;
        match kept {
            Some(kept) => settled(kept).await,
            None => Ok(()),
        }
    }

    /// What the call's head says: its signal, how its message is compressed, and its deadline;
    /// refused when any of it is not what OTLP/gRPC takes.
    fn check_head(
        &self,
        request: &Request<Incoming>,
    ) -> Result<(Signal, Coding, Option<Duration>, Option<Identity>), Refusal> {
        let path = request.uri().path();
        let Some(signal) = SIGNALS.into_iter().find(|&s| service_path(s) == path) else {
            return Err(Refusal::new(
                Reason::NotFound,
                format!(
                    "no OTLP export method at `{path}`; this server serves \
                     opentelemetry.proto.collector.{{logs,metrics,trace}}.v1 Export"
                ),
            ));
        };
        if request.method() != Method::POST {
            return Err(Refusal::new(
                Reason::MethodNotAllowed,
                format!("{} is not allowed; gRPC uses POST", request.method()),
            ));
        }
        let headers = request.headers();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let grpc = content_type.is_some_and(|t| {
            t == "application/grpc"
                || t.starts_with("application/grpc+proto")
                || t.starts_with("application/grpc;")
        });
        if !grpc {
            return Err(Refusal::new(
                Reason::Unsupported,
                format!(
                    "content-type `{}` is not gRPC's; use application/grpc",
                    content_type.unwrap_or("")
                ),
            ));
        }
        let identity = match &self.authorization {
            Some(authorization) => {
                authorization.check(headers.get_all(&authorization.header).iter())?
            }
            None => None,
        };
        // gRPC names its codings in lower case, exactly.
        let coding = match headers.get("grpc-encoding").map(HeaderValue::as_bytes) {
            None => Coding::Identity,
            Some(name) => match Coding::named(name) {
                Some(coding) if name.iter().all(|b| !b.is_ascii_uppercase()) => coding,
                _ => {
                    return Err(Refusal::new(
                        Reason::Unsupported,
                        format!(
                            "grpc-encoding `{}` is not supported; use {}",
                            String::from_utf8_lossy(name),
                            Coding::NAMES
                        ),
                    ));
                }
            },
        };
        let deadline = match headers.get("grpc-timeout") {
            None => None,
            Some(value) => Some(grpc_timeout(value.as_bytes()).ok_or_else(|| {
                Refusal::new(
                    Reason::BadRequest,
                    format!(
                        "grpc-timeout `{}` is not a timeout (1 to 8 digits and a unit: H, M, \
                         S, m, u or n)",
                        String::from_utf8_lossy(value.as_bytes())
                    ),
                )
            })?),
        };
        Ok((signal, coding, deadline, identity))
    }

    /// The whole framed message, within `limit` bytes and `message_read_timeout`.
    async fn read_message(&self, body: Incoming, limit: usize) -> Result<Bytes, Refusal> {
        gather_within(body, limit, self.message_read_timeout)
            .await
            .map_err(|gathering| {
                gathering.refusal("message", self.max_message_size, self.message_read_timeout)
            })
    }
}

/// A gRPC response: `headers` (besides the content type), then the message and trailers.
fn response(
    mut headers: HeaderMap,
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
) -> Response<UnaryBody> {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let mut response = Response::new(UnaryBody::new(message, trailers));
    *response.headers_mut() = headers;
    response
}

/// `grpc-message`'s percent-encoding: bytes outside printable ASCII, and `%`, escaped.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp_grpc::frame;

    #[test]
    fn the_answer_to_an_accepted_call_is_an_empty_message_framed() {
        assert_eq!(EMPTY_RESPONSE.as_slice(), frame(&[], false).as_ref());
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("full: 100% é\n"), "full: 100%25 %C3%A9%0A");
    }
}
