//! `receiver:otlp_http`: the OTLP/HTTP server side.
//!
//! `POST /v1/logs`, `/v1/metrics`, `/v1/traces` with `application/x-protobuf` or
//! `application/json` bodies, optionally gzip- or zstd-compressed. A request is answered `200`
//! only once its payload is in the pipeline's queue. With a `bearer_token_authorizer` bound,
//! every request needs an accepted token (`401` otherwise), and an authorizer that cannot
//! decide refuses the request (`503`): it fails closed.
//!
//! **Admission before work.** A request is checked in the order of what each check costs:
//! path, method, credential, headers; then it takes room in the pipeline's queue, waiting up
//! to `admission_timeout` while the queue is full — backpressure through the open request, as
//! the OpenTelemetry Collector's receivers apply it — and only with that room held is its body
//! read, decompressed and counted. A request that still finds no room is answered `429` (and
//! one that arrives while the pipeline stops `503`), with `Retry-After`, before its body is
//! read: refusing costs almost nothing, so an overloaded receiver keeps its core for the
//! requests it accepts. Protobuf bodies are counted by walking the wire format in place
//! ([`crate::otlp::wire`]), never decoded into owned structures.
//!
//! One instance per core. The address is bound once, by the first core, without
//! `SO_REUSEPORT`, and every core accepts from that one socket: a second process (or a
//! second receiver of the same configuration) on the same address fails to start with
//! "address in use", whatever `cores` is.

mod config;
mod connection;
mod handler;
mod table;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::node::{
    LocalReceiver, NodeContext, NodeError, NodeInstance, Outputs, ReceiverContext, ShutdownSignal,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::receive::admission::Admission;
use crate::receive::authorization::Authorization;
use crate::receive::counters::{Counters, bump};
use crate::receive::listener::{AcceptErrors, Listener, Takeover, listen};
use crate::receive::{self, Setup};
pub use config::{OtlpHttpReceiverConfig, ServerTls};
pub(crate) use connection::Handed;
use connection::{Arrival, Connections, connection};
use handler::Handler;
use table::{Entry, Exchange, SharedTable};

/// `receiver:otlp_http`.
pub static OTLP_HTTP_RECEIVER: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "otlp_http", env!("CARGO_PKG_NAME"))
        .description(
            "OTLP/HTTP server (protobuf, JSON, gzip, zstd), optionally behind bearer tokens",
        )
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenAuthorizer,
        )])
        .validate_config(|config| OtlpHttpReceiverConfig::decode(config).map(drop))
        .listens(|config| {
            let decoded: OtlpHttpReceiverConfig = config.decode().ok()?;
            Some(vec![("listen", decoded.listen)])
        })
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = OtlpHttpReceiverConfig::decode(config)?;
    let tls = config.tls.as_ref();
    let Setup {
        authorization: authorizer,
        tls,
        listener,
        socket,
    } = receive::setup::<Handed>(context, capabilities, config.listen, tls, b"http/1.1")?;
    receive::check_permissions(context, &config.permissions, authorizer.is_some())?;
    Ok(NodeInstance::Receiver(Box::new(OtlpHttpReceiver::new(
        context, config, authorizer, tls, &listener, socket,
    ))))
}

/// One core's OTLP/HTTP server: `receiver:otlp_http`, or the HTTP side of `receiver:otlp`.
pub(crate) struct OtlpHttpReceiver {
    node: String,
    socket: socket2::Socket,
    takeover: Takeover<Handed>,
    /// Connections that an older version hands over.
    handed: mpsc::UnboundedReceiver<Handed>,
    tls: Option<TlsAcceptor>,
    config: OtlpHttpReceiverConfig,
    authorizer: Option<Authorization>,
    counters: Counters,
    /// Whether it answers only once its payloads are kept for good
    /// ([`NodeContext::awaits_acknowledgement`]).
    acknowledged: bool,
    shutdown: ShutdownSignal,
}

#[otap_df_core::async_trait(?Send)]
impl LocalReceiver for OtlpHttpReceiver {
    async fn run(self: Box<Self>, context: ReceiverContext) -> Result<(), NodeError> {
        let ReceiverContext { outputs, control } = context;
        let stop = receive::shutdown_deadline(control);
        self.serve(Rc::new(outputs), stop).await
    }
}

impl OtlpHttpReceiver {
    /// This core's server on the node's `listener` (its `socket` this core's handle of it).
    pub(crate) fn new(
        context: &NodeContext,
        config: OtlpHttpReceiverConfig,
        authorizer: Option<Authorization>,
        tls: Option<TlsAcceptor>,
        listener: &Arc<Listener<Handed>>,
        socket: socket2::Socket,
    ) -> Self {
        // Each core accepts on its own handle of the one socket; a version built by a reload
        // takes the open connections of the one it replaces over.
        let (takeover, handed) = listener.take_over(context.core, tls.is_some());
        Self {
            node: context.node_id.clone(),
            socket,
            takeover,
            handed,
            tls,
            config,
            authorizer,
            counters: Counters::new(&context.counters),
            acknowledged: context.awaits_acknowledgement,
            shutdown: context.shutdown.clone(),
        }
    }

    /// Serves into `outputs` until `stop` yields the deadline of a request to stop, then
    /// drains (connections handed to a successor, or answered and closed) by that deadline.
    pub(crate) async fn serve(
        self,
        outputs: Rc<Outputs>,
        stop: impl Future<Output = Instant>,
    ) -> Result<(), NodeError> {
        let mut stop = std::pin::pin!(stop);
        let Self {
            node,
            socket,
            takeover,
            mut handed,
            tls,
            config,
            authorizer,
            counters,
            acknowledged,
            shutdown,
        } = self;
        let error = |message: String| NodeError::Failed {
            node: node.clone(),
            message,
        };
        let listener = listen(socket)
            .map_err(|e| error(format!("cannot listen on `{}`: {e}", config.listen)))?;
        tracing::info!(node = %node, address = %config.listen, tls = tls.is_some(), "OTLP/HTTP receiver listening");
        let handler = Rc::new(Handler {
            admission: Admission::new(
                outputs,
                shutdown.clone(),
                config.admission_timeout,
                config.max_body_bytes_in_flight,
            ),
            body_read_timeout: config.body_read_timeout,
            authorization: authorizer,
            permissions: config.permissions.clone(),
            max_body_size: config.max_body_size,
            retry_after: HeaderValue::from(config.retry_after.as_secs()),
            counters,
            acknowledged,
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        // The header timeout is the connection's own ([`connection`]): hyper's allocates a
        // timer and enters it in the core's timer wheel for every request's head.
        http.header_read_timeout(None);
        let shared = Rc::new(Connections {
            handler: handler.clone(),
            http,
            tls,
            header_read_timeout: config.header_read_timeout,
            draining: std::cell::Cell::new(false),
            takeover,
            table: SharedTable::default(),
        });
        let mut connections = JoinSet::new();
        let mut accept_errors = AcceptErrors::default();
        // Displaces an idle connection to make room ([`table`]), counted.
        let shed_one = |shared: &Connections| {
            let shed = shared.table.borrow_mut().shed_one();
            if shed {
                bump(&handler.counters.connections_shed);
            }
            shed
        };
        let mut peak = Peak::default();
        let deadline = loop {
            tokio::select! {
                deadline = stop.as_mut() => break deadline,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Out of file descriptors and the like: the listener stays, and
                            // the loop backs off instead of spinning on the same error.
                            bump(&handler.counters.accept_errors);
                            let pause = accept_errors.failed(&node, &error);
                            tokio::select! {
                                deadline = stop.as_mut() => break deadline,
                                () = tokio::time::sleep(pause) => {}
                            }
                            continue;
                        }
                    };
                    accept_errors.succeeded();
                    // Counted without the connections that closed since the last turn.
                    while connections.try_join_next().is_some() {}
                    let at_cap = connections.len() >= config.max_connections;
                    if at_cap {
                        let mut made_room = shed_one(&shared);
                        if !made_room {
                            // Connections accepted in this burst whose tasks have not run
                            // yet cannot be displaced: they get their turn first (and some
                            // may close meanwhile).
                            tokio::task::yield_now().await;
                            while connections.try_join_next().is_some() {}
                            made_room =
                                connections.len() < config.max_connections || shed_one(&shared);
                        }
                        if !made_room {
                            // Every connection is busy: closed at once, so that the client
                            // learns now, rather than waiting in a backlog, and the core's
                            // memory stays bounded.
                            bump(&handler.counters.connections_rejected);
                            drop(stream);
                            continue;
                        }
                    }
                    bump(&handler.counters.connections_accepted);
                    let _ = stream.set_nodelay(true);
                    spawn_connection(&mut connections, &shared, Arrival::Accepted(stream));
                    peak.saw(connections.len());
                    if at_cap {
                        // Under a flood, the connections' tasks run between two accepts: the
                        // displaced one closes, and a client's request is read before the
                        // next newcomer could displace its connection.
                        tokio::task::yield_now().await;
                    }
                }
                Some(handed) = handed.recv() => {
                    // A client of the version before: taken whatever the count, room made
                    // when there is some to make.
                    if connections.len() >= config.max_connections {
                        shed_one(&shared);
                    }
                    spawn_connection(&mut connections, &shared, Arrival::Handed(handed));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {
                    peak.fell_to(connections.len());
                }
            }
        };
        // No new connections. With a successor (a reload replaced this version), open
        // connections go to it between two requests, and so do those handed to this version
        // that it did not take yet. Without one, requests waiting for room are refused
        // (503), requests in flight finish (and are answered) until the deadline, then their
        // connections are closed; and the socket closes once every core let go of it.
        if !shared.takeover.succeeded() {
            // What waits in the backlog was already connected: it is served like the open
            // connections (a first request answered), rather than reset when the socket
            // closes.
            while let Some(Ok((stream, _))) =
                std::future::poll_fn(|cx| match listener.poll_accept(cx) {
                    std::task::Poll::Ready(accepted) => std::task::Poll::Ready(Some(accepted)),
                    std::task::Poll::Pending => std::task::Poll::Ready(None),
                })
                .await
            {
                bump(&handler.counters.connections_accepted);
                spawn_connection(&mut connections, &shared, Arrival::Accepted(stream));
            }
        }
        drop(listener);
        shared.takeover.close_socket_unless_succeeded();
        handed.close();
        while let Ok(late) = handed.try_recv() {
            spawn_connection(&mut connections, &shared, Arrival::Handed(late));
        }
        // Clients get until shortly before the deadline, so that what they hand over can
        // still be passed on (or accounted for) downstream in time.
        let until = shutdown
            .requested()
            .map_or(deadline, |request| request.stop_waiting_at.min(deadline));
        shared.draining.set(true);
        shared.table.borrow().raise_all();
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

/// Spawns the task of a connection, entered in the core's table.
fn spawn_connection(connections: &mut JoinSet<()>, shared: &Rc<Connections>, arrival: Arrival) {
    let exchange = Rc::new(match &arrival {
        Arrival::Accepted(_) => Exchange::default(),
        Arrival::Handed(handed) => Exchange::continued(handed.requests, handed.accepted),
    });
    let number = shared.table.borrow_mut().add(&exchange);
    let entry = Entry {
        table: shared.table.clone(),
        number,
    };
    connections.spawn_local(connection(arrival, exchange, entry, shared.clone()));
}

/// The most connections this core had open since memory was last given back: once a burst
/// of at least [`Peak::BURST`] is down to a quarter, the memory it used goes back to the
/// system ([`crate::allocator`]), once per burst.
#[derive(Default)]
struct Peak(usize);

impl Peak {
    const BURST: usize = 1024;

    fn saw(&mut self, open: usize) {
        self.0 = self.0.max(open);
    }

    fn fell_to(&mut self, open: usize) {
        if self.0 >= Self::BURST && open <= self.0 / 4 {
            let released = crate::allocator::release_free_memory();
            tracing::debug!(
                peak = self.0,
                open,
                released,
                "a burst of connections is over"
            );
            self.0 = open;
        }
    }
}
