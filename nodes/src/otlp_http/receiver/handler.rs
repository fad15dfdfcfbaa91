//! Answering one OTLP/HTTP request: what HTTP says of it (path, method, headers, the body
//! read within its timeout) and how a refusal is answered (status and headers); admission,
//! authorization, decompression, validation, counting and the hand-off are the protocol's
//! own (`crate::receive`).

use std::convert::Infallible;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use otap_df_core::capability::Identity;
use otap_df_core::data::{Encoding, Signal};

use crate::otlp_http::{encoding_of, media_type, signal_path, status_body, success_body};
use crate::receive::admission::Admission;
use crate::receive::authorization::{Authorization, Permissions};
use crate::receive::counters::{Counters, bump};
use crate::receive::payload::{Coding, gather_within, settled, take, too_large};
use crate::receive::{Reason, Refusal};

/// Answers one request.
pub(super) struct Handler {
    pub(super) admission: Admission,
    pub(super) body_read_timeout: Duration,
    pub(super) authorization: Option<Authorization>,
    pub(super) permissions: Permissions,
    pub(super) max_body_size: usize,
    pub(super) retry_after: HeaderValue,
    pub(super) counters: Counters,
    /// Whether a request is answered only once its payload is kept for good downstream
    /// (a durable queue): its acknowledgement settled.
    pub(super) acknowledged: bool,
}

/// What a request's head says, once checked.
struct Head {
    signal: Signal,
    encoding: Encoding,
    coding: Coding,
    /// Its `Content-Length`.
    declared: Option<u64>,
    /// Who sent it, when an authorizer that does not wait decided.
    identity: Option<Identity>,
}

/// The HTTP status of a refusal.
const fn status(reason: Reason) -> StatusCode {
    match reason {
        Reason::NotFound => StatusCode::NOT_FOUND,
        Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Reason::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::BodyTimeout | Reason::DeadlineExceeded => StatusCode::REQUEST_TIMEOUT,
        Reason::BadRequest => StatusCode::BAD_REQUEST,
        Reason::PipelineClosed | Reason::AuthUnavailable | Reason::NotKept => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Reason::PipelineFull | Reason::BytesInFlight | Reason::QueueFull => {
            StatusCode::TOO_MANY_REQUESTS
        }
        Reason::AuthMissing | Reason::AuthInvalid | Reason::AuthExpired => StatusCode::UNAUTHORIZED,
        Reason::AuthForbidden => StatusCode::FORBIDDEN,
    }
}

/// What a request's head let through to its future: the head as checked, the body, and the
/// headers only for an authorizer that waits (which reads its credential from them later).
type Checked = Result<(Head, Option<Box<HeaderMap>>, Incoming), Refusal>;

impl Handler {
    /// The answer to `request`, which `answered` sees (and may amend) before it goes.
    ///
    /// What needs only the head is done here, before the future exists: the future holds
    /// the body and what the head said, not the request (264 bytes of it), nor a second copy
    /// of itself in a wrapper. With hundreds of connections the memory a request touches is
    /// what its time goes to, so the future is boxed: hyper keeps each connection's future
    /// in place of its own, and moving ours (840 bytes) there wrote a dozen cache lines gone
    /// cold since that connection's last request; a box comes from memory the request before
    /// freed, warm (first-level write misses at 256 connections 32 → 17 a request, the
    /// ceiling's count).
    pub(super) fn handle<A>(
        self: &Rc<Self>,
        request: Request<Incoming>,
        answered: A,
    ) -> Pin<Box<impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + use<A>>>
    where
        A: FnOnce(&mut Response<Full<Bytes>>),
    {
        bump(&self.counters.requests);
        // Read once: what the body is, and what errors answer in when it is one we know.
        let encoding = request.headers().get(CONTENT_TYPE).and_then(encoding_in);
        let checked = self.check_head(&request, encoding).map(|head| {
            let (parts, body) = request.into_parts();
            let waits = self.authorization.as_ref().is_some_and(|a| a.waits);
            (head, waits.then(|| Box::new(parts.headers)), body)
        });
        Box::pin(self.clone().answer(checked, encoding, answered))
    }

    async fn answer<A>(
        self: Rc<Self>,
        checked: Checked,
        encoding: Option<Encoding>,
        answered: A,
    ) -> Result<Response<Full<Bytes>>, Infallible>
    where
        A: FnOnce(&mut Response<Full<Bytes>>),
    {
        let accepted = match checked {
            Ok((head, headers, body)) => self.accept(head, headers, body).await,
            Err(refusal) => Err(refusal),
        };
        let mut response = match accepted {
            Ok(encoding) => {
                bump(&self.counters.accepted);
                response(StatusCode::OK, encoding, success_body(encoding))
            }
            Err(refusal) => self.refused(&refusal, encoding.unwrap_or(Encoding::Protobuf)),
        };
        answered(&mut response);
        Ok(response)
    }

    /// The answer to a refused request, counted.
    fn refused(&self, refusal: &Refusal, encoding: Encoding) -> Response<Full<Bytes>> {
        let reason = refusal.reason;
        bump(reason.counter(&self.counters));
        let body = status_body(encoding, reason.code(), &refusal.message);
        let mut response = response(status(reason), encoding, body);
        let headers = response.headers_mut();
        match reason {
            Reason::AuthMissing | Reason::AuthInvalid | Reason::AuthExpired => {
                let scheme = self.authorization.as_ref().map_or("Bearer", |a| a.scheme());
                if let Ok(value) = HeaderValue::from_str(&format!("{scheme} realm=\"otap-df\"")) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
            Reason::MethodNotAllowed => {
                headers.insert(ALLOW, HeaderValue::from_static("POST"));
            }
            _ if reason.retry_later() => {
                headers.insert(RETRY_AFTER, self.retry_after.clone());
            }
            _ => {}
        }
        response
    }

    /// Takes the request, its head checked (in the order of what each check costs: path,
    /// method, credential, headers), into the pipeline, or says why not: admitted, and only
    /// then its body read.
    async fn accept(
        &self,
        head: Head,
        headers: Option<Box<HeaderMap>>,
        body: Incoming,
    ) -> Result<Encoding, Refusal> {
        let Head {
            signal,
            encoding,
            coding,
            declared,
            mut identity,
        } = head;
        // An authorizer that waits decides once the head is checked (one that does not
        // decided in `check_head`).
        if let (Some(authorization), Some(headers)) = (
            self.authorization.as_ref().filter(|a| a.waits),
            headers.as_ref(),
        ) {
            let values = headers.get_all(&authorization.header).iter();
            identity = authorization.check_waiting(values).await?;
        }
        self.permissions.check(signal, identity.as_ref())?;
        let permit = self.admission.admit(&self.counters).await?;
        let budget = declared.unwrap_or(self.max_body_size as u64);
        let reading = self.admission.reserve_body(budget, &self.counters).await?;
        bump(&self.counters.read);
        let body = self.read_body(body).await?;
        drop(reading);
        let body = coding.decompress(body, self.max_body_size)?;
        let kept = take(
            signal,
            encoding,
            body,
            identity,
            permit,
            self.acknowledged,
            &self.counters,
        )?;
        if let Some(kept) = kept {
            settled(kept).await?;
        }
        Ok(encoding)
    }

    /// What the request's head says: its signal, encoding (`encoding`, as its
    /// `Content-Type` names it), compression and declared length; refused when any of it is
    /// not what OTLP/HTTP takes.
    fn check_head(
        &self,
        request: &Request<Incoming>,
        encoding: Option<Encoding>,
    ) -> Result<Head, Refusal> {
        let path = request.uri().path();
        let Some(signal) = [Signal::Logs, Signal::Metrics, Signal::Traces]
            .into_iter()
            .find(|&signal| path.strip_prefix('/') == Some(signal_path(signal)))
        else {
            return Err(Refusal::new(
                Reason::NotFound,
                format!("no OTLP signal at `{path}`; use /v1/logs, /v1/metrics or /v1/traces"),
            ));
        };
        if request.method() != Method::POST {
            return Err(Refusal::new(
                Reason::MethodNotAllowed,
                format!("{} is not allowed; OTLP/HTTP uses POST", request.method()),
            ));
        }
        let headers = request.headers();
        let identity = match &self.authorization {
            Some(authorization) => {
                authorization.check(headers.get_all(&authorization.header).iter())?
            }
            None => None,
        };
        let Some(encoding) = encoding else {
            let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            return Err(Refusal::new(
                Reason::Unsupported,
                format!(
                    "Content-Type `{}` is not supported; use application/x-protobuf or application/json",
                    content_type.unwrap_or("")
                ),
            ));
        };
        let coding = match headers.get(CONTENT_ENCODING) {
            None => Coding::Identity,
            Some(value) => Coding::named(value.as_bytes()).ok_or_else(|| {
                Refusal::new(
                    Reason::Unsupported,
                    format!(
                        "Content-Encoding `{}` is not supported; use {}",
                        String::from_utf8_lossy(value.as_bytes()),
                        Coding::NAMES
                    ),
                )
            })?,
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_size as u64) {
            return Err(too_large(self.max_body_size));
        }
        Ok(Head {
            signal,
            encoding,
            coding,
            declared,
            identity,
        })
    }

    /// The whole body, within `max_body_size` and `body_read_timeout`.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Refusal> {
        gather_within(body, self.max_body_size, self.body_read_timeout)
            .await
            .map_err(|gathering| {
                gathering.refusal("body", self.max_body_size, self.body_read_timeout)
            })
    }
}

/// The encoding a `Content-Type` names: what senders write (exactly a media type, in lower
/// case) matched as bytes first, anything else (parameters, other case) parsed.
fn encoding_in(content_type: &HeaderValue) -> Option<Encoding> {
    match content_type.as_bytes() {
        b"application/x-protobuf" => Some(Encoding::Protobuf),
        b"application/json" => Some(Encoding::Json),
        _ => content_type.to_str().ok().and_then(encoding_of),
    }
}

fn response(status: StatusCode, encoding: Encoding, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media_type(encoding)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_type_names_its_encoding_exactly_written_or_not() {
        let named = |value: &'static str| encoding_in(&HeaderValue::from_static(value));
        assert_eq!(named("application/x-protobuf"), Some(Encoding::Protobuf));
        assert_eq!(named("application/json"), Some(Encoding::Json));
        assert_eq!(named("Application/X-Protobuf"), Some(Encoding::Protobuf));
        assert_eq!(
            named("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(named("application/x-protobuf2"), None);
        assert_eq!(named("text/plain"), None);
    }
}
