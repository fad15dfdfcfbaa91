//! Extension and node types for otap-df's own tests: small, real implementations whose
//! declarations cover every binding combination (local-only and shared-only extensions, local
//! and shared nodes, required and optional capabilities).

use std::rc::Rc;
use std::sync::Arc;

use otap_df_core::capability::{
    AuthorizeError, AuthzDecision, BearerTokenAuthorizer, BearerTokenProvider, CapabilityId,
    DenyReason, Identity, KeyValueStore, TokenError, TokenSubscription, local, shared,
};
use otap_df_core::config::ComponentKind;
use otap_df_core::extension::{ExecutionModel, ExtensionFactory};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig};
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::registry::Registry;
use otap_df_core::secret::{AuthHeader, BearerToken, Credential, Secret};

const REGISTRANT: &str = env!("CARGO_PKG_NAME");

/// `extension:local_kv`: a key/value store with a local variant only.
pub static LOCAL_ONLY_KV: ExtensionFactory = ExtensionFactory::new("local_kv", REGISTRANT)
    .description("test: key/value store without a shared variant")
    .provides(&[CapabilityId::KeyValueStore])
    .local(|context, _| {
        let store: Rc<dyn local::KeyValueStore> = Rc::new(LocalMemoryKv::new(
            context.extension_id(),
            &MemoryKvConfig::default(),
        ));
        Ok(context
            .local_builder()
            .provide::<KeyValueStore>(store)
            .passive()?)
    })
    .build();

/// A token provider and authorizer around one fixed token.
pub struct FixedToken {
    token: BearerToken,
    header: AuthHeader,
    /// Every `authorize` fails (an authorizer whose source of truth is down).
    pub undecided: bool,
    /// `current_token` gives the token already expired; `fresh_token` gives `fresh-<token>`.
    pub current_expired: bool,
    /// Decides only with `authorize_waiting` (an authorizer that waits for a store).
    pub waits: bool,
}

impl FixedToken {
    fn fresh(&self) -> BearerToken {
        BearerToken::new(format!("fresh-{}", self.token.secret().expose()))
    }
}

impl FixedToken {
    /// Serves and accepts `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token: BearerToken::new(token),
            header: AuthHeader::default(),
            undecided: false,
            current_expired: false,
            waits: false,
        }
    }
}

#[otap_df_core::async_trait]
impl shared::BearerTokenProvider for FixedToken {
    fn current_token(&self) -> Option<BearerToken> {
        if self.current_expired {
            return Some(self.token.clone().with_expiry(std::time::UNIX_EPOCH));
        }
        Some(self.token.clone())
    }

    /// The token never changes.
    fn token_generation(&self) -> u64 {
        0
    }

    fn subscribe(&self) -> TokenSubscription {
        TokenSubscription::fixed(self.token.clone())
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }

    async fn fresh_token(&self) -> Result<BearerToken, TokenError> {
        if self.current_expired {
            return Ok(self.fresh());
        }
        Ok(self.token.clone())
    }
}

#[otap_df_core::async_trait]
impl shared::BearerTokenAuthorizer for FixedToken {
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        if self.waits {
            return Err(AuthorizeError {
                authorizer: "fixed_token".to_owned(),
                message: "configured to decide only where the caller waits".to_owned(),
            });
        }
        self.decide(credential)
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }

    fn waits(&self) -> bool {
        self.waits
    }

    /// Lets the caller's task yield once (as a store's round trip does), then decides.
    async fn authorize_waiting(
        &self,
        credential: Credential<'_>,
    ) -> Result<AuthzDecision, AuthorizeError> {
        tokio::task::yield_now().await;
        self.decide(credential)
    }
}

impl FixedToken {
    fn decide(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        if self.undecided {
            return Err(AuthorizeError {
                authorizer: "fixed_token".to_owned(),
                message: "configured to be undecided".to_owned(),
            });
        }
        Ok(if credential.is_empty() {
            AuthzDecision::Deny {
                reason: DenyReason::Missing,
            }
        } else if credential.ct_eq(self.token.secret())
            || (self.current_expired && credential.ct_eq(self.fresh().secret()))
        {
            AuthzDecision::Allow {
                identity: Identity::from_static("fixed"),
            }
        } else {
            AuthzDecision::Deny {
                reason: DenyReason::Invalid,
            }
        })
    }
}

/// `config:` of `extension:fixed_token`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedTokenConfig {
    /// The token (default `fixed-token`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// The authorizer cannot decide: every `authorize` is an error.
    #[serde(default)]
    pub undecided: bool,
    /// The authorizer decides only where its caller waits (`authorize_waiting`, after one
    /// yield of the caller's task), as one whose tokens live in a store does.
    #[serde(default)]
    pub waits: bool,
    /// The provider's current token has expired; `fresh_token` gives `fresh-<token>`, which
    /// does not expire (and which the authorizer also accepts).
    #[serde(default)]
    pub current_expired: bool,
    /// The header the token travels in (default `authorization`), taken as given: a test
    /// can name one that is not an HTTP header name.
    #[serde(default)]
    pub header: Option<String>,
}

/// `extension:fixed_token`: shared-only provider and authorizer of one token from its config.
pub static FIXED_TOKEN: ExtensionFactory = ExtensionFactory::new("fixed_token", REGISTRANT)
    .description("test: shared-only provider and authorizer of one fixed token")
    .provides(&[
        CapabilityId::BearerTokenProvider,
        CapabilityId::BearerTokenAuthorizer,
    ])
    .validate_config(|config| config.decode::<FixedTokenConfig>().map(drop))
    .shared(|context, config| {
        let config: FixedTokenConfig = config.decode()?;
        let value = config.token.map(|t| t.expose().to_owned());
        let mut token = FixedToken::new(value.as_deref().unwrap_or("fixed-token"));
        token.undecided = config.undecided;
        token.current_expired = config.current_expired;
        token.waits = config.waits;
        if let Some(header) = config.header {
            token.header = AuthHeader::new(header, "Bearer");
        }
        let token = Arc::new(token);
        let provider: Arc<dyn shared::BearerTokenProvider> = token.clone();
        let authorizer: Arc<dyn shared::BearerTokenAuthorizer> = token;
        Ok(context
            .shared_builder()
            .provide::<BearerTokenProvider>(provider)
            .provide::<BearerTokenAuthorizer>(authorizer)
            .passive()?)
    })
    .build();

/// `receiver:probe`: local; accepts an optional authorizer.
pub static PROBE_RECEIVER: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "probe", REGISTRANT)
        .description("test receiver")
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenAuthorizer,
        )]);

/// `processor:local_kv_user`: local; requires a key/value store.
pub static LOCAL_KV_USER: NodeFactory =
    NodeFactory::new(ComponentKind::Processor, "local_kv_user", REGISTRANT)
        .description("test processor, local, requires a key/value store")
        .accepts(&[CapabilityRequirement::required(CapabilityId::KeyValueStore)]);

/// `processor:shared_kv_user`: shared; requires a key/value store.
pub static SHARED_KV_USER: NodeFactory =
    NodeFactory::new(ComponentKind::Processor, "shared_kv_user", REGISTRANT)
        .description("test processor, shared, requires a key/value store")
        .execution(ExecutionModel::Shared)
        .accepts(&[CapabilityRequirement::required(CapabilityId::KeyValueStore)]);

/// `exporter:probe`: local; accepts an optional token provider; `config: { path: <string> }`.
pub static PROBE_EXPORTER: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "probe", REGISTRANT)
        .description("test exporter")
        .accepts(&[CapabilityRequirement::optional(
            CapabilityId::BearerTokenProvider,
        )])
        .validate_config(|config| config.decode::<ProbeExporterConfig>().map(drop));

/// `config:` of `exporter:probe`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeExporterConfig {
    /// Required string.
    pub path: String,
    /// Optional number.
    #[serde(default)]
    pub batch: Option<u32>,
}

/// A registry with the built-ins and every fixture, and `extension:azure_auth` declared as
/// not compiled in.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    register(&mut registry);
    registry.declare_not_compiled_in(
        ComponentKind::Extension,
        "azure_auth",
        "extension-azure-auth",
    );
    match registry.finish() {
        Ok(registry) => registry,
        Err(error) => panic!("fixture registry: {error}"),
    }
}

/// Registers every fixture type in `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&LOCAL_ONLY_KV);
    registry.register_extension(&FIXED_TOKEN);
    registry.register_node(&PROBE_RECEIVER);
    registry.register_node(&LOCAL_KV_USER);
    registry.register_node(&SHARED_KV_USER);
    registry.register_node(&PROBE_EXPORTER);
}
