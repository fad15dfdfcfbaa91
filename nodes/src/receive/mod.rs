//! What a receiver that takes OTLP payloads does, whatever transport carries them: the parts
//! `receiver:otlp_http` uses and a receiver of another transport (OTLP/gRPC) uses alike.
//!
//! - [`Refusal`]: why a request is not taken ([`Reason`]), which counter it goes to, and its
//!   OTLP status code; each transport maps a reason to its own status (HTTP: `429`, ...).
//! - [`counters`]: the receiver's own counters — requests, refusals by reason, connections.
//! - [`authorization`](mod@authorization): the bound authorizer asked about a request's
//!   credential (fail closed: one that cannot decide refuses).
//! - [`admission`]: room in the pipeline's queue, then in the core's budget of body bytes
//!   being read, waited for up to `admission_timeout` — before any body is read.
//! - [`listener`]: the socket, bound once for all cores and versions, and a reload's
//!   hand-over of connections.
//! - [`payload`]: an admitted body decompressed, validated and counted by walking its wire
//!   format, and handed on into the room admission reserved.

pub(crate) mod admission;
pub(crate) mod authorization;
pub(crate) mod counters;
pub(crate) mod listener;
pub(crate) mod payload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use otap_df_core::capability::BearerTokenAuthorizer;
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{Control, ControlMessage, NodeContext, NodeError};
use tokio_rustls::TlsAcceptor;

use crate::otlp_http::receiver::ServerTls;

use authorization::Authorization;
use counters::Counters;
use listener::Listener;

/// What every OTLP receiver builds when it is created, whatever its protocol.
pub(crate) struct Setup<H> {
    /// The bound `bearer_token_authorizer`, if any.
    pub(crate) authorization: Option<Authorization>,
    /// TLS, when configured.
    pub(crate) tls: Option<TlsAcceptor>,
    /// The node's socket and versions, shared by every core and version.
    pub(crate) listener: Arc<Listener<H>>,
    /// This core's handle of the socket.
    pub(crate) socket: socket2::Socket,
}

/// The receiver's [`Setup`]: its authorizer; TLS with `tls`'s certificate and key,
/// offering `alpn`; and `listen` bound now, once for all cores and versions, so that an
/// address in use fails the start, naming the node (a version built by a reload finds the
/// socket bound by the one it replaces).
pub(crate) fn setup<H: Send + 'static>(
    context: &NodeContext,
    capabilities: &mut Capabilities,
    listen: SocketAddr,
    tls: Option<&ServerTls>,
    alpn: &[u8],
) -> Result<Setup<H>, NodeError> {
    let authorization = authorization(context, capabilities)?;
    let tls = tls_acceptor(context, tls, alpn)?;
    let listener = context
        .shared
        .get_or_try_init(|| Listener::<H>::bind(listen))
        .map_err(|e| cannot_listen(context, listen, e))?;
    let socket = listener
        .handle()
        .map_err(|e| cannot_listen(context, listen, e))?;
    Ok(Setup {
        authorization,
        tls,
        listener,
        socket,
    })
}

/// `permissions` need an authorizer to decide who the caller is.
pub(crate) fn check_permissions(
    context: &NodeContext,
    permissions: &authorization::Permissions,
    authorized: bool,
) -> Result<(), NodeError> {
    if permissions.is_empty() || authorized {
        return Ok(());
    }
    Err(context.error(
        "`permissions` say who may send, but no `bearer_token_authorizer` is bound to tell \
         who a caller is; bind one (`capabilities: { bearer_token_authorizer: <extension> }`) \
         or remove `permissions`",
    ))
}

/// The bound `bearer_token_authorizer`, if any.
pub(crate) fn authorization(
    context: &NodeContext,
    capabilities: &mut Capabilities,
) -> Result<Option<Authorization>, NodeError> {
    capabilities
        .optional_local::<BearerTokenAuthorizer>()?
        .map(|authorizer| Authorization::of(context, authorizer))
        .transpose()
}

/// TLS with `tls`'s certificate and key, offering `alpn`.
pub(crate) fn tls_acceptor(
    context: &NodeContext,
    tls: Option<&ServerTls>,
    alpn: &[u8],
) -> Result<Option<TlsAcceptor>, NodeError> {
    Ok(tls
        .map(|tls| crate::tls::server_config(&tls.cert_file, &tls.key_file))
        .transpose()
        .map_err(|message| context.error(message))?
        .map(|mut config| {
            config.alpn_protocols = vec![alpn.to_vec()];
            TlsAcceptor::from(Arc::new(config))
        }))
}

/// The node's error for `listen` not bound (`error`).
pub(crate) fn cannot_listen(
    context: &NodeContext,
    listen: SocketAddr,
    error: std::io::Error,
) -> NodeError {
    context.error(format!("cannot listen on `{listen}`: {error}"))
}

/// Why a request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Nothing takes OTLP data there (an unknown path or service).
    NotFound,
    /// A method other than the protocol's.
    MethodNotAllowed,
    /// A content type or encoding this receiver does not read.
    Unsupported,
    /// The body is over `max_body_size`, before or after decompression.
    TooLarge,
    /// The body did not arrive within `body_read_timeout`.
    BodyTimeout,
    /// The caller's own deadline (gRPC's `grpc-timeout`) passed before its message was taken:
    /// it has given up, and would send again what was taken now.
    DeadlineExceeded,
    /// The request is malformed: unreadable, not decompressible, not OTLP, or ambiguous.
    BadRequest,
    /// The pipeline stops.
    PipelineClosed,
    /// The pipeline had no room within `admission_timeout`.
    PipelineFull,
    /// The core's budget of body bytes being read had no room within `admission_timeout`.
    BytesInFlight,
    /// The durable queue downstream is at its byte cap: the payload was not kept.
    QueueFull,
    /// The payload could not be kept downstream (a durable queue's write failed, a node
    /// failed or stopped with it): the sender should send it again.
    NotKept,
    /// No credential.
    AuthMissing,
    /// A credential the authorizer does not accept.
    AuthInvalid,
    /// An expired credential.
    AuthExpired,
    /// A valid credential whose holder is not permitted here.
    AuthForbidden,
    /// The authorizer could not decide.
    AuthUnavailable,
}

impl Reason {
    /// The OTLP (gRPC) status code of the refusal, which OTLP/HTTP also carries in its body.
    pub(crate) const fn code(self) -> i32 {
        use crate::otlp_http::code;
        match self {
            Reason::NotFound | Reason::MethodNotAllowed => code::UNIMPLEMENTED,
            Reason::Unsupported | Reason::TooLarge | Reason::BadRequest => code::INVALID_ARGUMENT,
            Reason::BodyTimeout | Reason::DeadlineExceeded => code::DEADLINE_EXCEEDED,
            Reason::PipelineClosed | Reason::AuthUnavailable | Reason::NotKept => code::UNAVAILABLE,
            Reason::PipelineFull | Reason::BytesInFlight | Reason::QueueFull => {
                code::RESOURCE_EXHAUSTED
            }
            Reason::AuthMissing | Reason::AuthInvalid | Reason::AuthExpired => {
                code::UNAUTHENTICATED
            }
            Reason::AuthForbidden => code::PERMISSION_DENIED,
        }
    }

    /// Whether the sender should come back later (the answer carries `retry_after`).
    pub(crate) const fn retry_later(self) -> bool {
        matches!(
            self,
            Reason::PipelineClosed
                | Reason::PipelineFull
                | Reason::BytesInFlight
                | Reason::AuthUnavailable
                | Reason::QueueFull
                | Reason::NotKept
        )
    }

    /// The counter of `counters` the refusal goes to.
    pub(crate) fn counter(self, counters: &Counters) -> &AtomicU64 {
        match self {
            Reason::NotFound | Reason::MethodNotAllowed => &counters.not_found,
            Reason::Unsupported => &counters.unsupported,
            Reason::TooLarge => &counters.too_large,
            Reason::BodyTimeout => &counters.body_timeout,
            Reason::DeadlineExceeded => &counters.deadline_exceeded,
            Reason::BadRequest => &counters.bad_request,
            Reason::PipelineClosed => &counters.pipeline_closed,
            Reason::PipelineFull => &counters.pipeline_full,
            Reason::BytesInFlight => &counters.bytes_in_flight,
            Reason::QueueFull => &counters.queue_full,
            Reason::NotKept => &counters.not_kept,
            Reason::AuthMissing => &counters.auth_missing,
            Reason::AuthInvalid => &counters.auth_invalid,
            Reason::AuthExpired => &counters.auth_expired,
            Reason::AuthForbidden => &counters.auth_forbidden,
            Reason::AuthUnavailable => &counters.auth_unavailable,
        }
    }
}

/// A request not taken: why, and what the sender is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// When a connection's idle timer fires next: `None` when the connection has been idle (no
/// request, or no call, in progress) since `idle_since` for `timeout` by `now`, and is to be
/// closed; a connection busy now (`idle_since` none) is looked at again a `timeout` later. One
/// timer per connection, moved only when it fires: a request costs a clock read instead of a
/// timer of its own.
pub(crate) fn idle_deadline(
    idle_since: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Option<tokio::time::Instant> {
    match idle_since {
        Some(since) if now >= since + timeout => None,
        Some(since) => Some(since + timeout),
        None => Some(now + timeout),
    }
}

/// The deadline of the engine's request to stop, once `control` carries it: what a receiver
/// serves until.
pub(crate) async fn shutdown_deadline(mut control: Control) -> Instant {
    loop {
        if let ControlMessage::Shutdown { deadline } = control.recv().await {
            return deadline;
        }
    }
}
