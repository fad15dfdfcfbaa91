//! Answering one request: admission before work (path, method, credential, headers, queue
//! room, body budget), then the body read, decompressed, counted and handed on.

use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use otap_df_core::capability::{AuthzDecision, local};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::node::{
    NodeContext, NodeCounters, NodeError, OutputPermit, Outputs, ShutdownSignal, TrySendError,
};

use super::super::{code, encoding_of, media_type, signal_path, status_body, success_body};
use crate::otlp::decode_shape;

/// The receiver's own counters (requests; refusals by reason).
pub(super) struct Counters {
    pub(super) requests: Arc<AtomicU64>,
    pub(super) accepted: Arc<AtomicU64>,
    pub(super) auth_missing: Arc<AtomicU64>,
    pub(super) auth_invalid: Arc<AtomicU64>,
    pub(super) auth_expired: Arc<AtomicU64>,
    pub(super) auth_unavailable: Arc<AtomicU64>,
    pub(super) bad_request: Arc<AtomicU64>,
    pub(super) unsupported: Arc<AtomicU64>,
    pub(super) too_large: Arc<AtomicU64>,
    pub(super) not_found: Arc<AtomicU64>,
    pub(super) pipeline_full: Arc<AtomicU64>,
    pub(super) pipeline_closed: Arc<AtomicU64>,
    pub(super) body_timeout: Arc<AtomicU64>,
    pub(super) bytes_in_flight: Arc<AtomicU64>,
    pub(super) connections_accepted: Arc<AtomicU64>,
    pub(super) connections_rejected: Arc<AtomicU64>,
    pub(super) connections_shed: Arc<AtomicU64>,
    pub(super) handed_over: Arc<AtomicU64>,
    pub(super) accept_errors: Arc<AtomicU64>,
    pub(super) waited: Arc<AtomicU64>,
    pub(super) read: Arc<AtomicU64>,
    pub(super) counters: Arc<NodeCounters>,
}

impl Counters {
    pub(super) fn new(counters: &Arc<NodeCounters>) -> Self {
        Self {
            requests: counters.named("requests"),
            accepted: counters.named("accepted"),
            auth_missing: counters.named("refused.auth_missing"),
            auth_invalid: counters.named("refused.auth_invalid"),
            auth_expired: counters.named("refused.auth_expired"),
            auth_unavailable: counters.named("refused.auth_unavailable"),
            bad_request: counters.named("refused.bad_request"),
            unsupported: counters.named("refused.unsupported_media_type"),
            too_large: counters.named("refused.too_large"),
            not_found: counters.named("refused.not_found"),
            pipeline_full: counters.named("refused.pipeline_full"),
            pipeline_closed: counters.named("refused.pipeline_closed"),
            body_timeout: counters.named("refused.body_timeout"),
            bytes_in_flight: counters.named("refused.bytes_in_flight"),
            connections_accepted: counters.named("connections.accepted"),
            connections_rejected: counters.named("connections.rejected"),
            connections_shed: counters.named("connections.shed"),
            handed_over: counters.named("connections.handed_over"),
            accept_errors: counters.named("connections.accept_errors"),
            waited: counters.named("admission.waited"),
            read: counters.named("bodies_read"),
            counters: counters.clone(),
        }
    }
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The bound authorizer and the header it reads, parsed once rather than per request.
pub(super) struct Authorization {
    pub(super) authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    pub(super) header: HeaderName,
}

impl Authorization {
    pub(super) fn of(
        context: &NodeContext,
        authorizer: Rc<dyn local::BearerTokenAuthorizer>,
    ) -> Result<Self, NodeError> {
        let name = authorizer.header().name();
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            context.error(format!(
                "the bound authorizer reads the header `{name}`, which is not a valid HTTP \
                 header name (letters, digits and !#$%&'*+-.^_`|~); configure the extension \
                 with a header such as `authorization` or `x-api-key`"
            ))
        })?;
        Ok(Self { authorizer, header })
    }
}

/// Answers one request.
pub(super) struct Handler {
    pub(super) outputs: Outputs,
    /// Requests waiting for room give up (503) once the engine asks the pipeline to stop.
    pub(super) shutdown: ShutdownSignal,
    pub(super) admission_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    /// Bytes of bodies being read, in KiB.
    pub(super) body_budget: tokio::sync::Semaphore,
    pub(super) authorizer: Option<Authorization>,
    pub(super) max_body_size: usize,
    pub(super) retry_after: HeaderValue,
    pub(super) counters: Counters,
}

/// A refusal: status, gRPC code, message, and the counter it goes to.
struct Refusal<'a> {
    status: StatusCode,
    code: i32,
    message: String,
    counter: &'a AtomicU64,
}

impl Handler {
    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        bump(&self.counters.requests);
        // Errors answer in the request's encoding when it is one we know.
        let encoding = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(encoding_of);
        match self.accept(request).await {
            Ok(encoding) => {
                bump(&self.counters.accepted);
                response(StatusCode::OK, encoding, success_body(encoding))
            }
            Err(refusal) => {
                bump(refusal.counter);
                let encoding = encoding.unwrap_or(Encoding::Protobuf);
                let mut response = response(
                    refusal.status,
                    encoding,
                    status_body(encoding, refusal.code, &refusal.message),
                );
                let headers = response.headers_mut();
                match refusal.status {
                    StatusCode::UNAUTHORIZED => {
                        let scheme = self
                            .authorizer
                            .as_ref()
                            .map(|a| a.authorizer.header().scheme())
                            .filter(|s| !s.is_empty())
                            .unwrap_or("Bearer");
                        if let Ok(value) =
                            HeaderValue::from_str(&format!("{scheme} realm=\"otap-df\""))
                        {
                            headers.insert(WWW_AUTHENTICATE, value);
                        }
                    }
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        headers.insert(RETRY_AFTER, self.retry_after.clone());
                    }
                    StatusCode::METHOD_NOT_ALLOWED => {
                        headers.insert(ALLOW, HeaderValue::from_static("POST"));
                    }
                    _ => {}
                }
                response
            }
        }
    }

    /// Takes the request into the pipeline, or says why not.
    async fn accept(&self, request: Request<Incoming>) -> Result<Encoding, Refusal<'_>> {
        let counters = &self.counters;
        let refuse = |status, code, message: String, counter| Refusal {
            status,
            code,
            message,
            counter,
        };
        let path = request.uri().path();
        let Some(signal) = [Signal::Logs, Signal::Metrics, Signal::Traces]
            .into_iter()
            .find(|&signal| path.strip_prefix('/') == Some(signal_path(signal)))
        else {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                code::UNIMPLEMENTED,
                format!("no OTLP signal at `{path}`; use /v1/logs, /v1/metrics or /v1/traces"),
                &counters.not_found,
            ));
        };
        if request.method() != Method::POST {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                code::UNIMPLEMENTED,
                format!("{} is not allowed; OTLP/HTTP uses POST", request.method()),
                &counters.not_found,
            ));
        }
        self.authorize(&request)?;
        let headers = request.headers();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let Some(encoding) = content_type.and_then(encoding_of) else {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_ARGUMENT,
                format!(
                    "Content-Type `{}` is not supported; use application/x-protobuf or application/json",
                    content_type.unwrap_or("")
                ),
                &counters.unsupported,
            ));
        };
        let gzip = match headers.get(CONTENT_ENCODING).map(HeaderValue::to_str) {
            None => false,
            Some(Ok(value)) if value.trim().eq_ignore_ascii_case("identity") => false,
            Some(Ok(value)) if value.trim().eq_ignore_ascii_case("gzip") => true,
            Some(value) => {
                return Err(refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    code::INVALID_ARGUMENT,
                    format!(
                        "Content-Encoding `{}` is not supported; use gzip or none",
                        value.unwrap_or("")
                    ),
                    &counters.unsupported,
                ));
            }
        };
        let too_large = || {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                code::INVALID_ARGUMENT,
                format!("the body is larger than {} bytes", self.max_body_size),
                &counters.too_large,
            )
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_size as u64) {
            return Err(too_large());
        }
        let permit = self.admit().await?;
        let _reading = self
            .reserve_body(declared.unwrap_or(self.max_body_size as u64))
            .await?;
        bump(&counters.read);
        let mut collect =
            std::pin::pin!(Limited::new(request.into_body(), self.max_body_size).collect());
        // A body of a few kilobytes is mostly in hand by the time it is first asked for: only
        // one still on its way arms the read timer (an entry in the core's timer wheel per
        // request is measurable at these rates).
        let read = match std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await {
            Poll::Ready(read) => Ok(read),
            Poll::Pending => tokio::time::timeout(self.body_read_timeout, collect).await,
        };
        let body = match read {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large());
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    code::DEADLINE_EXCEEDED,
                    format!(
                        "the body did not arrive within {:?}",
                        self.body_read_timeout
                    ),
                    &counters.body_timeout,
                ));
            }
            Ok(Err(error)) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_ARGUMENT,
                    format!("the body could not be read: {error}"),
                    &counters.bad_request,
                ));
            }
        };
        let body = if gzip {
            let mut plain = Vec::with_capacity(body.len() * 4);
            let read = flate2::read::GzDecoder::new(body.as_ref())
                .take(self.max_body_size as u64 + 1)
                .read_to_end(&mut plain);
            match read {
                Ok(length) if length > self.max_body_size => return Err(too_large()),
                Ok(_) => Bytes::from(plain),
                Err(error) => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        code::INVALID_ARGUMENT,
                        format!("the gzip body does not decompress: {error}"),
                        &counters.bad_request,
                    ));
                }
            }
        } else {
            body
        };
        let shape = decode_shape(signal, encoding, &body).map_err(|message| {
            refuse(
                StatusCode::BAD_REQUEST,
                code::INVALID_ARGUMENT,
                message,
                &counters.bad_request,
            )
        })?;
        let records = shape.records as u64;
        NodeCounters::add(&counters.counters.records_in, records);
        permit.send(OtlpPayload::new(signal, encoding, records, body));
        Ok(encoding)
    }

    /// Room in the pipeline for one payload: at once when there is some, else after waiting
    /// up to `admission_timeout`; refused while stopping.
    async fn admit(&self) -> Result<OutputPermit<'_>, Refusal<'_>> {
        let closed = || Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: code::UNAVAILABLE,
            message: "the pipeline is stopping".to_owned(),
            counter: &self.counters.pipeline_closed,
        };
        let full = || Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: code::RESOURCE_EXHAUSTED,
            message: format!(
                "the pipeline is full and had no room within {:?}; retry later",
                self.admission_timeout
            ),
            counter: &self.counters.pipeline_full,
        };
        if self.shutdown.requested().is_some() {
            return Err(closed());
        }
        match self.outputs.try_reserve() {
            Ok(permit) => return Ok(permit),
            Err(TrySendError::Closed) => return Err(closed()),
            Err(TrySendError::Full) if self.admission_timeout.is_zero() => return Err(full()),
            Err(TrySendError::Full) => bump(&self.counters.waited),
        }
        tokio::select! {
            biased;
            _ = self.shutdown.wait() => Err(closed()),
            reserved = tokio::time::timeout(self.admission_timeout, self.outputs.reserve()) => {
                match reserved {
                    Ok(Some(permit)) => Ok(permit),
                    Ok(None) => Err(closed()),
                    Err(_) => Err(full()),
                }
            }
        }
    }

    /// Room for a body of `bytes` in the core's `max_body_bytes_in_flight`: at once when
    /// there is some, else after waiting up to `admission_timeout`.
    async fn reserve_body(
        &self,
        bytes: u64,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, Refusal<'_>> {
        // Fits: validation keeps the budget, hence any body, under 2^30 KiB.
        let units = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let refused = || Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: code::RESOURCE_EXHAUSTED,
            message: "too many request bytes are being read at once; retry later".to_owned(),
            counter: &self.counters.bytes_in_flight,
        };
        if let Ok(permit) = self.body_budget.try_acquire_many(units) {
            return Ok(permit);
        }
        if self.admission_timeout.is_zero() {
            return Err(refused());
        }
        bump(&self.counters.waited);
        tokio::select! {
            biased;
            _ = self.shutdown.wait() => Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: code::UNAVAILABLE,
                message: "the pipeline is stopping".to_owned(),
                counter: &self.counters.pipeline_closed,
            }),
            acquired = tokio::time::timeout(
                self.admission_timeout,
                self.body_budget.acquire_many(units),
            ) => match acquired {
                Ok(Ok(permit)) => Ok(permit),
                Ok(Err(_)) | Err(_) => Err(refused()),
            },
        }
    }

    /// With an authorizer bound: the request's token must be accepted. An authorizer that
    /// cannot decide refuses (fail closed).
    fn authorize(&self, request: &Request<Incoming>) -> Result<(), Refusal<'_>> {
        let Some(Authorization { authorizer, header }) = &self.authorizer else {
            return Ok(());
        };
        let counters = &self.counters;
        let unauthorized = |message: &str, counter| Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: code::UNAUTHENTICATED,
            message: message.to_owned(),
            counter,
        };
        let mut values = request.headers().get_all(header).iter();
        let Some(value) = values.next() else {
            return Err(unauthorized(
                "no credential; send a bearer token",
                &counters.auth_missing,
            ));
        };
        // HTTP allows one credential header (RFC 9110 §11.6.2); with two, which one a proxy
        // or the authorizer would look at is ambiguous: refuse rather than pick.
        if values.next().is_some() {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: code::INVALID_ARGUMENT,
                message: format!("more than one `{header}` header; send one credential"),
                counter: &counters.bad_request,
            });
        }
        // Borrowed from the request's header: authorizing allocates nothing.
        let credential = value
            .to_str()
            .ok()
            .and_then(|value| authorizer.header().credential(value).ok())
            .ok_or_else(|| {
                unauthorized("the credential is not accepted", &counters.auth_invalid)
            })?;
        match authorizer.authorize(credential) {
            Ok(AuthzDecision::Allow { .. }) => Ok(()),
            Ok(AuthzDecision::Deny { reason }) => {
                let counter = match reason {
                    otap_df_core::capability::DenyReason::Missing => &counters.auth_missing,
                    otap_df_core::capability::DenyReason::Invalid => &counters.auth_invalid,
                    otap_df_core::capability::DenyReason::Expired => &counters.auth_expired,
                };
                Err(unauthorized("the credential is not accepted", counter))
            }
            Err(error) => {
                tracing::warn!(error = %error, "authorizer could not decide; request refused");
                Err(Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: code::UNAVAILABLE,
                    message: "authorization is unavailable; retry later".to_owned(),
                    counter: &counters.auth_unavailable,
                })
            }
        }
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
