//! `exporter:acme_stamp`: writes one line per payload — signal, records, and the scheme and
//! length of the token it would send (never the token) — with the token of the bound
//! `bearer_token_provider`. Without a usable token it does not deliver: the node fails,
//! naming the provider's reason.
//!
//! The token is read as the capability's contract says: the generation first (one atomic
//! read per payload), the token only when the generation moved, its expiry checked before
//! each use, and `fresh_token` when the one in hand is not usable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::rc::Rc;

use otap_df::node::serde::Deserialize;
use otap_df::node::{
    BearerToken, BearerTokenProvider, Capabilities, CapabilityId, CapabilityRequirement,
    ComponentConfig, ComponentKind, ConfigError, LocalExporter, NodeContext, NodeError,
    NodeFactory, NodeInstance, OtlpPayload, async_trait, local,
};

/// `config:` of `exporter:acme_stamp`.
#[derive(Debug, Deserialize)]
#[serde(crate = "otap_df::node::serde", deny_unknown_fields)]
pub struct StampConfig {
    /// The file the lines go to (created or truncated; one file per core: `.<core>` is
    /// appended when the pipeline runs on more than one).
    pub path: PathBuf,
}

impl StampConfig {
    /// Decodes and checks the path.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.path.as_os_str().is_empty() {
            return Err(config.invalid("path", "`path` must name a file"));
        }
        Ok(decoded)
    }
}

/// `exporter:acme_stamp`.
pub static STAMP: NodeFactory = NodeFactory::new(
    ComponentKind::Exporter,
    "acme_stamp",
    env!("CARGO_PKG_NAME"),
)
.description("writes a line per payload with the token scheme and length it would send")
.accepts(&[CapabilityRequirement::required(
    CapabilityId::BearerTokenProvider,
)])
.validate_config(|config| StampConfig::decode(config).map(drop))
.create(create);

otap_df::node::submit_node!(STAMP);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = StampConfig::decode(config)?;
    let provider = capabilities.require_local::<BearerTokenProvider>()?;
    let mut path = config.path.into_os_string();
    if context.cores > 1 {
        path.push(format!(".{}", context.core));
    }
    let file = File::create(&path).map_err(|e| {
        context.error(format!(
            "cannot create `{}`: {e}",
            PathBuf::from(&path).display()
        ))
    })?;
    Ok(NodeInstance::Exporter(Box::new(Stamp::new(
        context.node_id.clone(),
        provider,
        Box::new(BufWriter::new(file)),
    ))))
}

/// The exporter; `out` is where its lines go.
pub struct Stamp {
    node: String,
    provider: Rc<dyn local::BearerTokenProvider>,
    out: Box<dyn Write>,
    /// The generation `token` was read at.
    generation: Option<u64>,
    token: Option<BearerToken>,
}

impl Stamp {
    /// An exporter writing to `out`.
    pub fn new(
        node: String,
        provider: Rc<dyn local::BearerTokenProvider>,
        out: Box<dyn Write>,
    ) -> Self {
        Self {
            node,
            provider,
            out,
            generation: None,
            token: None,
        }
    }

    fn error(&self, message: String) -> NodeError {
        NodeError::Failed {
            node: self.node.clone(),
            message,
        }
    }

    /// A usable token: the one in hand while its generation holds and it has not expired,
    /// else the provider's freshest.
    async fn token(&mut self) -> Result<BearerToken, NodeError> {
        let generation = self.provider.token_generation();
        if self.generation != Some(generation) {
            self.token = self.provider.current_token();
            self.generation = Some(generation);
        }
        if let Some(token) = self.token.as_ref().filter(|t| t.is_usable()) {
            return Ok(token.clone());
        }
        match self.provider.fresh_token().await {
            Ok(token) if token.is_usable() => Ok(token),
            Ok(_) => Err(self.error("no usable token: the freshest one has expired".into())),
            Err(error) => Err(self.error(format!("no usable token, not delivering: {error}"))),
        }
    }
}

#[async_trait(?Send)]
impl LocalExporter for Stamp {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        let token = self.token().await?;
        let line = format!(
            "{} {} {} {}",
            data.signal(),
            data.records(),
            self.provider.header().scheme(),
            token.secret().expose().len()
        );
        writeln!(self.out, "{line}").map_err(|e| self.error(format!("cannot write: {e}")))
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        self.out
            .flush()
            .map_err(|e| self.error(format!("cannot flush: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use otap_df::node::{AuthHeader, Encoding, Signal, TokenError, TokenSubscription};

    use super::*;

    /// A provider that has no token and cannot get one.
    struct NoToken(AuthHeader);

    #[async_trait(?Send)]
    impl local::BearerTokenProvider for NoToken {
        fn current_token(&self) -> Option<BearerToken> {
            None
        }
        fn token_generation(&self) -> u64 {
            0
        }
        fn subscribe(&self) -> TokenSubscription {
            TokenSubscription::fixed(BearerToken::new("unused"))
        }
        fn header(&self) -> &AuthHeader {
            &self.0
        }
        async fn fresh_token(&self) -> Result<BearerToken, TokenError> {
            Err(TokenError {
                provider: "auth".into(),
                message: "the token service is down".into(),
            })
        }
    }

    #[test]
    fn without_a_usable_token_nothing_is_written_and_the_reason_is_given() {
        let written = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut stamp = Stamp::new(
            "out".into(),
            Rc::new(NoToken(AuthHeader::new("Authorization", "Bearer"))),
            Box::new(Shared(written.clone())),
        );
        let payload = OtlpPayload::new(Signal::Logs, Encoding::Protobuf, 1, Vec::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let error = runtime
            .block_on(stamp.export(payload))
            .expect_err("no token, no delivery");
        assert_eq!(
            error.to_string(),
            "node `out` failed: no usable token, not delivering: token provider `auth` has no \
             usable token: the token service is down"
        );
        assert!(written.borrow().is_empty());
    }
}
