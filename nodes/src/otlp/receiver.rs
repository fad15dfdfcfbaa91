//! `receiver:otlp`: one OTLP receiver for both transports, as the OpenTelemetry Collector's
//! `otlp` receiver is configured — `protocols: { grpc: ..., http: ... }`, each on its own
//! address, either or both.
//!
//! Each protocol is served exactly as its own receiver serves it (`receiver:otlp_grpc`,
//! `receiver:otlp_http`), with that receiver's options and their checks, into the node's one
//! output: the same admission before work, the same refusals, the same hand-over or `GOAWAY`
//! on a reload. A bound `bearer_token_authorizer` guards both. The node's counters add up both
//! protocols (`requests`, `accepted`, `refused.<reason>`, ...).
//!
//! On a reload, each protocol keeps its socket while its address stays, whatever the other's
//! does: moving one protocol to another address leaves the other's clients connected.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use otap_df_core::capability::CapabilityId;
use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{
    CapabilityRequirement, LocalReceiver, NodeContext, NodeError, NodeFactory, NodeInstance,
    ReceiverContext,
};
use serde::Deserialize;
use tokio::sync::watch;

use crate::otlp_grpc::receiver::{OtlpGrpcReceiver, OtlpGrpcReceiverConfig};
use crate::otlp_http::receiver::{Handed, OtlpHttpReceiver, OtlpHttpReceiverConfig};
use crate::receive::listener::Listener;
use crate::receive::{authorization, cannot_listen, shutdown_deadline, tls_acceptor};

/// `receiver:otlp`.
pub static OTLP_RECEIVER: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "otlp", env!("CARGO_PKG_NAME"))
        .description(
            "OTLP over gRPC and HTTP, each on its own address (the Collector's `protocols:`), \
             optionally behind bearer tokens",
        )
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenAuthorizer,
        )])
        .validate_config(|config| OtlpReceiverConfig::decode(config).map(drop))
        .listens(|config| {
            let decoded = OtlpReceiverConfig::decode(config).ok()?;
            let grpc = decoded.grpc.map(|g| ("protocols.grpc.listen", g.listen));
            let http = decoded.http.map(|h| ("protocols.http.listen", h.listen));
            Some(grpc.into_iter().chain(http).collect())
        })
        .create(create);

/// `config:` of `receiver:otlp`: `protocols:` with `grpc:`, `http:` or both, each holding
/// the options of its own receiver (`grpc:` with no value: all defaults).
#[derive(Debug, Clone)]
pub struct OtlpReceiverConfig {
    /// `protocols.grpc`: the options of `receiver:otlp_grpc`.
    pub grpc: Option<OtlpGrpcReceiverConfig>,
    /// `protocols.http`: the options of `receiver:otlp_http`.
    pub http: Option<OtlpHttpReceiverConfig>,
}

/// The block's own fields, for their unknown-field errors (each protocol's options are
/// decoded by its receiver's own code).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Fields {
    #[serde(default)]
    protocols: Option<Protocols>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Protocols {
    #[serde(default)]
    grpc: serde::de::IgnoredAny,
    #[serde(default)]
    http: serde::de::IgnoredAny,
}

impl OtlpReceiverConfig {
    /// Decodes and checks the block, each protocol's options by its own receiver's checks
    /// (errors located at `config.protocols.<protocol>.<option>`).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let _: Fields = config.decode()?;
        let grpc = config
            .nested("protocols.grpc", OtlpGrpcReceiverConfig::decode)
            .transpose()?;
        let http = config
            .nested("protocols.http", OtlpHttpReceiverConfig::decode)
            .transpose()?;
        match (&grpc, &http) {
            (None, None) => {
                return Err(config.invalid(
                    "protocols",
                    "no protocol is enabled; configure `protocols:` with `grpc:`, `http:` or \
                     both (each takes the options of `receiver:otlp_grpc` / \
                     `receiver:otlp_http`; `grpc:` alone serves its defaults)",
                ));
            }
            (Some(grpc), Some(http)) if grpc.listen == http.listen => {
                return Err(config.invalid(
                    "protocols.http.listen",
                    format!(
                        "gRPC and HTTP both listen on `{}`; each protocol needs its own address \
                         (by default 4317 and 4318)",
                        http.listen
                    ),
                ));
            }
            _ => {}
        }
        Ok(Self { grpc, http })
    }
}

/// The node's sockets.
struct Listeners {
    grpc: Option<Arc<Listener<Infallible>>>,
    http: Option<Arc<Listener<Handed>>>,
}

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = OtlpReceiverConfig::decode(config)?;
    let authorizer = authorization(context, capabilities)?;
    for permissions in [
        config.grpc.as_ref().map(|grpc| &grpc.permissions),
        config.http.as_ref().map(|http| &http.permissions),
    ]
    .into_iter()
    .flatten()
    {
        crate::receive::check_permissions(context, permissions, authorizer.is_some())?;
    }
    // One socket per protocol, each kept by a reload that keeps its address.
    let listeners = Listeners {
        grpc: config
            .grpc
            .as_ref()
            .map(|g| bind(context, "protocols.grpc.listen", g.listen))
            .transpose()?,
        http: config
            .http
            .as_ref()
            .map(|h| bind(context, "protocols.http.listen", h.listen))
            .transpose()?,
    };
    let grpc = match (config.grpc, &listeners.grpc) {
        (Some(grpc), Some(listener)) => {
            let tls = tls_acceptor(context, grpc.tls.as_ref(), b"h2")?;
            let socket = listener
                .handle()
                .map_err(|e| cannot_listen(context, grpc.listen, e))?;
            let authorizer = authorizer.clone();
            Some(OtlpGrpcReceiver::new(
                context, grpc, authorizer, tls, listener, socket,
            ))
        }
        _ => None,
    };
    let http = match (config.http, &listeners.http) {
        (Some(http), Some(listener)) => {
            let tls = tls_acceptor(context, http.tls.as_ref(), b"http/1.1")?;
            let socket = listener
                .handle()
                .map_err(|e| cannot_listen(context, http.listen, e))?;
            Some(OtlpHttpReceiver::new(
                context, http, authorizer, tls, listener, socket,
            ))
        }
        _ => None,
    };
    Ok(NodeInstance::Receiver(Box::new(OtlpReceiver {
        grpc,
        http,
    })))
}

/// The socket of `option` (`listen`), bound once for all cores and versions.
fn bind<H: Send + 'static>(
    context: &NodeContext,
    option: &str,
    listen: SocketAddr,
) -> Result<Arc<Listener<H>>, NodeError> {
    context
        .shared
        .get_or_try_init_for(option, || Listener::bind(listen))
        .map_err(|e| cannot_listen(context, listen, e))
}

/// One core's servers of the node's protocols.
struct OtlpReceiver {
    grpc: Option<OtlpGrpcReceiver>,
    http: Option<OtlpHttpReceiver>,
}

#[otap_df_core::async_trait(?Send)]
impl LocalReceiver for OtlpReceiver {
    /// Serves both protocols into the one output until the engine asks to stop; both then
    /// drain by its deadline. A protocol that fails (its socket cannot be listened on) stops
    /// the other, and the node reports the failure.
    async fn run(self: Box<Self>, context: ReceiverContext) -> Result<(), NodeError> {
        let ReceiverContext { outputs, control } = context;
        let Self { grpc, http } = *self;
        let outputs = Rc::new(outputs);
        let (stop, stopping) = watch::channel(None::<Instant>);
        let stopped = |mut stopping: watch::Receiver<Option<Instant>>| async move {
            match stopping.wait_for(Option::is_some).await {
                Ok(deadline) => (*deadline).unwrap_or_else(Instant::now),
                Err(_) => Instant::now(),
            }
        };
        let ended = |served: Result<(), NodeError>| {
            if served.is_err() {
                stop.send_replace(Some(Instant::now()));
            }
            served
        };
        let control = async {
            tokio::select! {
                deadline = shutdown_deadline(control) => {
                    stop.send_replace(Some(deadline));
                }
                _ = stopped(stopping.clone()) => {}
            }
        };
        let grpc = async {
            match grpc {
                Some(grpc) => ended(grpc.serve(outputs.clone(), stopped(stopping.clone())).await),
                None => Ok(()),
            }
        };
        let http = async {
            match http {
                Some(http) => ended(http.serve(outputs.clone(), stopped(stopping.clone())).await),
                None => Ok(()),
            }
        };
        let ((), grpc, http) = tokio::join!(control, grpc, http);
        grpc.and(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<OtlpReceiverConfig, String> {
        otap_df_tests::config::try_decode(yaml, OtlpReceiverConfig::decode)
    }

    #[test]
    fn each_protocol_takes_its_own_receivers_options_and_defaults() {
        let both = decode("protocols: { grpc: , http: { max_body_size: 2048 } }").expect("valid");
        let grpc = both.grpc.expect("gRPC enabled by its bare key");
        assert_eq!(grpc.listen, SocketAddr::from(([127, 0, 0, 1], 4317)));
        let http = both.http.expect("HTTP enabled");
        assert_eq!(http.listen, SocketAddr::from(([127, 0, 0, 1], 4318)));
        assert_eq!(http.max_body_size, 2048);
        let grpc_only = decode("protocols: { grpc: { listen: '0.0.0.0:5317' } }").expect("valid");
        assert!(grpc_only.http.is_none());
        assert_eq!(
            grpc_only.grpc.expect("gRPC").listen,
            SocketAddr::from(([0, 0, 0, 0], 5317))
        );
    }

    #[test]
    fn bad_blocks_are_located_errors_that_say_what_would_do() {
        for (yaml, said) in [
            ("{}", "at `config.protocols`: no protocol is enabled"),
            ("protocols:", "no protocol is enabled"),
            (
                "protocols: { grpc: { max_message_size: 10 } }",
                "at `config.protocols.grpc.max_message_size`: `max_message_size` must be",
            ),
            (
                "protocols: { http: { max_body_size: 'big' } }",
                "config.protocols.http.max_body_size",
            ),
            (
                "protocols: { grpc: { listen: '127.0.0.1:4000' }, http: { listen: '127.0.0.1:4000' } }",
                "at `config.protocols.http.listen`: gRPC and HTTP both listen on `127.0.0.1:4000`",
            ),
            ("protocols: { thrift: {} }", "unknown field `thrift`"),
            ("protocols: { grpc: }\nlisten: x", "unknown field `listen`"),
            (
                "protocols: { grpc: { endpoint: '0.0.0.0:4317' } }",
                "unknown field `endpoint`",
            ),
        ] {
            let error = decode(yaml).expect_err(yaml);
            assert!(error.contains(said), "{yaml}: {error}");
        }
    }
}
