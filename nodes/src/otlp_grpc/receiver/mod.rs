//! `receiver:otlp_grpc`: the OTLP/gRPC server side.
//!
//! The three export methods (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, and
//! metrics' and traces') over HTTP/2: h2c (prior knowledge) without `tls`, TLS with ALPN `h2`
//! with it. A call is answered `OK` only once its message is in the pipeline's queue; its
//! protobuf bytes go on as they came, walked to be validated and counted, never decoded into
//! generated types. With a `bearer_token_authorizer` bound, every call needs an accepted token
//! in its metadata (`UNAUTHENTICATED` otherwise; an authorizer that cannot decide refuses:
//! `UNAVAILABLE`).
//!
//! **Admission before work**, as `receiver:otlp_http`: method, content type, credential and
//! compression are checked first; then the call takes room in the pipeline's queue, waiting up
//! to `admission_timeout` while it is full, and only with that room held is its message read,
//! decompressed and counted. A call that still finds no room is refused
//! `RESOURCE_EXHAUSTED` with a `RetryInfo` of `retry_after` (and one arriving while the
//! pipeline stops `UNAVAILABLE`, with one too), before its message is read: an OTLP client
//! retries it after the delay. A stream is never held for ever, nor past its call's deadline
//! (`grpc-timeout`): a call not taken by then is answered `DEADLINE_EXCEEDED`, as its client
//! has stopped waiting and would send again what was taken later.
//!
//! A connection that carries no call for `idle_timeout` is sent `GOAWAY` and closes (one
//! timer per connection, moved when it fires; a call costs a clock read).
//!
//! One instance per core, accepting from one socket bound once for all cores (as
//! `receiver:otlp_http`: a second process on the address fails to start). Each connection
//! carries up to `max_concurrent_streams` calls at once. When the receiver stops — the engine
//! stops, or a reload replaces or removes its pipeline — each connection is sent a `GOAWAY`:
//! the calls in flight finish and are answered, and a client reconnects for the next (to the
//! new version, after a reload, which accepts from the same socket meanwhile).

mod config;
mod handler;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::node::{
    LocalReceiver, NodeContext, NodeError, NodeInstance, Outputs, ReceiverContext, ShutdownSignal,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::receive::admission::Admission;
use crate::receive::authorization::Authorization;
use crate::receive::counters::{Counters, bump};
use crate::receive::listener::{AcceptErrors, Listener, Takeover, listen};
use crate::receive::{self, Setup, idle_deadline};
pub use config::{Keepalive, MAX_MESSAGE_SIZE, OtlpGrpcReceiverConfig, ServerTls};
use handler::Handler;

/// `receiver:otlp_grpc`.
pub static OTLP_GRPC_RECEIVER: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "otlp_grpc", env!("CARGO_PKG_NAME"))
        .description(
            "OTLP/gRPC server (HTTP/2, h2c or TLS, gzip, zstd), optionally behind bearer tokens",
        )
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenAuthorizer,
        )])
        .validate_config(|config| OtlpGrpcReceiverConfig::decode(config).map(drop))
        .listens(|config| {
            let decoded: OtlpGrpcReceiverConfig = config.decode().ok()?;
            Some(vec![("listen", decoded.listen)])
        })
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = OtlpGrpcReceiverConfig::decode(config)?;
    let tls = config.tls.as_ref();
    let Setup {
        authorization: authorizer,
        tls,
        listener,
        socket,
    } = receive::setup::<Infallible>(context, capabilities, config.listen, tls, b"h2")?;
    receive::check_permissions(context, &config.permissions, authorizer.is_some())?;
    Ok(NodeInstance::Receiver(Box::new(OtlpGrpcReceiver::new(
        context, config, authorizer, tls, &listener, socket,
    ))))
}

/// One core's OTLP/gRPC server: `receiver:otlp_grpc`, or the gRPC side of `receiver:otlp`.
pub(crate) struct OtlpGrpcReceiver {
    node: String,
    socket: socket2::Socket,
    takeover: Takeover<Infallible>,
    tls: Option<TlsAcceptor>,
    config: OtlpGrpcReceiverConfig,
    authorizer: Option<Authorization>,
    counters: Counters,
    /// Whether it answers only once its payloads are kept for good
    /// ([`NodeContext::awaits_acknowledgement`]).
    acknowledged: bool,
    shutdown: ShutdownSignal,
}

/// Runs hyper's HTTP/2 tasks (a connection's streams) on the core's own task set: they hold
/// the core's handler, which never leaves the core.
#[derive(Clone, Copy)]
struct LocalExecutor;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExecutor {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// What every connection of a core shares.
struct Connections {
    handler: Rc<Handler>,
    http: http2::Builder<LocalExecutor>,
    tls: Option<TlsAcceptor>,
    idle_timeout: Duration,
    /// Becomes true when the receiver stops: each connection sends `GOAWAY`.
    draining: watch::Receiver<bool>,
}

#[otap_df_core::async_trait(?Send)]
impl LocalReceiver for OtlpGrpcReceiver {
    async fn run(self: Box<Self>, context: ReceiverContext) -> Result<(), NodeError> {
        let ReceiverContext { outputs, control } = context;
        let stop = receive::shutdown_deadline(control);
        self.serve(Rc::new(outputs), stop).await
    }
}

impl OtlpGrpcReceiver {
    /// This core's server on the node's `listener` (its `socket` this core's handle of it).
    pub(crate) fn new(
        context: &NodeContext,
        config: OtlpGrpcReceiverConfig,
        authorizer: Option<Authorization>,
        tls: Option<TlsAcceptor>,
        listener: &Arc<Listener<Infallible>>,
        socket: socket2::Socket,
    ) -> Self {
        // HTTP/2 connections are not handed over: a version that stops sends `GOAWAY`, and
        // its clients reconnect to its successor.
        let (takeover, _) = listener.take_over(context.core, tls.is_some());
        Self {
            node: context.node_id.clone(),
            socket,
            takeover,
            tls,
            config,
            authorizer,
            counters: Counters::new(&context.counters),
            acknowledged: context.awaits_acknowledgement,
            shutdown: context.shutdown.clone(),
        }
    }

    /// Serves into `outputs` until `stop` yields the deadline of a request to stop; then each
    /// connection is sent `GOAWAY` and its calls in flight are answered, by that deadline.
    pub(crate) async fn serve(
        self,
        outputs: Rc<Outputs>,
        stop: impl Future<Output = StdInstant>,
    ) -> Result<(), NodeError> {
        let mut stop = std::pin::pin!(stop);
        let Self {
            node,
            socket,
            takeover,
            tls,
            config,
            authorizer,
            counters,
            acknowledged,
            shutdown,
        } = self;
        let listener = listen(socket).map_err(|e| NodeError::Failed {
            node: node.clone(),
            message: format!("cannot listen on `{}`: {e}", config.listen),
        })?;
        tracing::info!(node = %node, address = %config.listen, tls = tls.is_some(), "OTLP/gRPC receiver listening");
        let handler = Rc::new(Handler {
            admission: Admission::new(
                outputs,
                shutdown.clone(),
                config.admission_timeout,
                config.max_message_bytes_in_flight,
            ),
            message_read_timeout: config.message_read_timeout,
            authorization: authorizer,
            permissions: config.permissions.clone(),
            max_message_size: config.max_message_size,
            retry_after: config.retry_after,
            counters,
            acknowledged,
        });
        let (drain, draining) = watch::channel(false);
        let shared = Rc::new(Connections {
            handler: handler.clone(),
            http: http_builder(&config),
            tls,
            idle_timeout: config.idle_timeout,
            draining,
        });
        let mut connections = JoinSet::new();
        let mut accept_errors = AcceptErrors::default();
        let deadline = loop {
            tokio::select! {
                deadline = stop.as_mut() => break deadline,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            bump(&handler.counters.accept_errors);
                            let pause = accept_errors.failed(&node, &error);
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    };
                    accept_errors.succeeded();
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= config.max_connections {
                        // Closed at once: the client learns now, and the core's memory stays
                        // bounded.
                        bump(&handler.counters.connections_rejected);
                        drop(stream);
                        continue;
                    }
                    bump(&handler.counters.connections_accepted);
                    let _ = stream.set_nodelay(true);
                    connections.spawn_local(serve(stream, shared.clone()));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        // No new connections here; a successor (after a reload) accepts from the socket, and
        // without one the socket closes once every core let go of it. Each connection sends
        // `GOAWAY` and answers the calls in flight, until shortly before the deadline.
        drop(listener);
        takeover.close_socket_unless_succeeded();
        let _ = drain.send(true);
        let until = shutdown
            .requested()
            .map_or(deadline, |request| request.stop_waiting_at.min(deadline));
        let drained = tokio::time::timeout_at(until.into(), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        Ok(())
    }
}

/// The HTTP/2 server settings of `config`.
fn http_builder(config: &OtlpGrpcReceiverConfig) -> http2::Builder<LocalExecutor> {
    let mut http = http2::Builder::new(LocalExecutor);
    http.timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        // A frame carries at most a message's worth; the windows let a client send one
        // message of `max_message_size` without waiting for window updates.
        .max_send_buf_size(1 << 20)
        .adaptive_window(true);
    if let Some(keepalive) = config.keepalive {
        http.keep_alive_interval(keepalive.interval)
            .keep_alive_timeout(keepalive.timeout);
    }
    http
}

/// Serves one connection (after its TLS handshake, with `tls`).
async fn serve(stream: tokio::net::TcpStream, shared: Rc<Connections>) {
    match &shared.tls {
        None => serve_io(stream, &shared).await,
        Some(tls) => {
            let handshake =
                tokio::time::timeout(shared.handler.message_read_timeout, tls.accept(stream));
            if let Ok(Ok(stream)) = handshake.await {
                serve_io(stream, &shared).await;
            }
        }
    }
}

/// Serves HTTP/2 on `io` until the client closes it, it carries no call for `idle_timeout`,
/// or the receiver drains: then `GOAWAY`, and the calls in flight are answered.
async fn serve_io<I>(io: I, shared: &Connections)
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let activity = Rc::new(Activity {
        calls: Cell::new(0),
        idle_since: Cell::new(Some(Instant::now())),
    });
    let handler = shared.handler.clone();
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request| {
            let handler = handler.clone();
            let call = Call::begin(&activity);
            async move {
                let _call = call;
                Ok::<_, Infallible>(handler.handle(request).await)
            }
        }
    });
    let connection = shared.http.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = shared.draining.clone();
    let timeout = shared.idle_timeout;
    let mut timer = std::pin::pin!(tokio::time::sleep(timeout));
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = draining.wait_for(|draining| *draining) => break,
            () = timer.as_mut() => {
                match idle_deadline(activity.idle_since.get(), Instant::now(), timeout) {
                    Some(deadline) => timer.as_mut().reset(deadline),
                    None => {
                        bump(&shared.handler.counters.idle_closed);
                        break;
                    }
                }
            }
        }
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// A connection's calls in progress, and since when it has had none: what its idle timer
/// reads.
struct Activity {
    calls: Cell<usize>,
    idle_since: Cell<Option<Instant>>,
}

/// One call in progress on a connection, until it is answered or abandoned (dropped).
struct Call(Rc<Activity>);

impl Call {
    fn begin(activity: &Rc<Activity>) -> Self {
        activity.calls.set(activity.calls.get() + 1);
        activity.idle_since.set(None);
        Self(activity.clone())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let calls = self.0.calls.get() - 1;
        self.0.calls.set(calls);
        if calls == 0 {
            self.0.idle_since.set(Some(Instant::now()));
        }
    }
}
