//! `extension:wasm`: the factory, and the capabilities an instance serves from its guest.
//!
//! Local: one instance (one store, one guest) per core, serving that core's nodes with no
//! lock. Which capabilities an instance provides is its `config:`'s `provides:`, checked
//! against the module's exports when the configuration is validated.

use std::rc::Rc;
use std::sync::Arc;

use otap_df_core::capability::{
    AuthorizeError, AuthzDecision, BearerTokenAuthorizer, CapabilityId, DenyReason, Identity, local,
};
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::extension::{
    ExtensionContext, ExtensionError, ExtensionFactory, LocalExtension, ShardedCounter,
};
use otap_df_core::secret::{AuthHeader, Credential};

use crate::abi::status;
use crate::config::{PROVIDABLE, WasmConfig};
use crate::error::WasmError;
use crate::guest::{Answer, Failure, Guest};

/// `extension:wasm`.
pub static WASM: ExtensionFactory = ExtensionFactory::new("wasm", env!("CARGO_PKG_NAME"))
    .description(
        "capability providers as sandboxed WebAssembly modules (fuel and memory limits, no \
         WASI): bearer_token_authorizer",
    )
    .provides(PROVIDABLE)
    .provides_configured(|config| {
        let decoded = WasmConfig::decode(config).ok()?;
        decoded.capabilities(config).ok()
    })
    .validate_config(validate)
    .local(create)
    .build();

/// The options checked, then the module read, compiled and checked against what `provides`
/// names (errors at `config.module`).
fn validate(config: &ComponentConfig<'_>) -> Result<(), ConfigError> {
    let decoded = WasmConfig::decode(config)?;
    let capabilities = decoded.capabilities(config)?;
    crate::module::load(&decoded.module, &capabilities)
        .map(drop)
        .map_err(|message| config.invalid("module", message))
}

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<LocalExtension, ExtensionError> {
    let decoded = WasmConfig::decode(config)?;
    let capabilities = decoded.capabilities(config)?;
    let id = context.extension_id();
    let wasm = Wasm::start(id, &decoded, &capabilities, Counters::of(context))
        .map_err(|error| ExtensionError::typed(id, error))?;
    let builder = context.local_builder();
    let Some(authorizer) = wasm.authorizer() else {
        return Err(context.error("`provides` names no capability this build serves"));
    };
    Ok(builder
        .provide::<BearerTokenAuthorizer>(authorizer)
        .passive()?)
}

/// One instance of `extension:wasm` on one core: the guest and the capabilities it serves.
pub struct Wasm {
    authorizer: Option<Rc<WasmAuthorizer>>,
}

impl Wasm {
    /// An instance with `config` (checked), outside an engine: its counters count for no
    /// one. What the crate's tests and a host embedding the guest use.
    pub fn new(id: &str, config: &WasmConfig) -> Result<Self, WasmError> {
        let capabilities: Vec<CapabilityId> = config
            .provides
            .iter()
            .filter_map(|name| CapabilityId::from_name(name))
            .filter(|c| PROVIDABLE.contains(c))
            .collect();
        Self::start(id, config, &capabilities, Counters::default())
    }

    fn start(
        id: &str,
        config: &WasmConfig,
        capabilities: &[CapabilityId],
        counters: Counters,
    ) -> Result<Self, WasmError> {
        let module =
            crate::module::load(&config.module, capabilities).map_err(WasmError::Module)?;
        let start_config = serde_json::to_vec(&config.config).unwrap_or_else(|_| b"null".to_vec());
        let guest = Rc::new(
            Guest::start(module, config.limits, id, start_config).map_err(WasmError::Start)?,
        );
        let authorizer = capabilities
            .contains(&CapabilityId::BearerTokenAuthorizer)
            .then(|| {
                Rc::new(WasmAuthorizer {
                    guest: guest.clone(),
                    extension: Identity::from(id.to_owned()),
                    header: AuthHeader::new(&config.header, &config.scheme),
                    counters,
                })
            });
        Ok(Self { authorizer })
    }

    /// Its `bearer_token_authorizer`, when `provides` names it.
    pub fn authorizer(&self) -> Option<Rc<dyn local::BearerTokenAuthorizer>> {
        self.authorizer
            .clone()
            .map(|a| a as Rc<dyn local::BearerTokenAuthorizer>)
    }
}

/// What an instance counts (the admin endpoint's `otap_df_extension_counter`): decisions by
/// outcome, and calls that failed, by why.
#[derive(Debug, Clone, Default)]
struct Counters {
    authorized: Arc<ShardedCounter>,
    denied_missing: Arc<ShardedCounter>,
    denied_invalid: Arc<ShardedCounter>,
    denied_expired: Arc<ShardedCounter>,
    out_of_fuel: Arc<ShardedCounter>,
    trapped: Arc<ShardedCounter>,
}

impl Counters {
    fn of(context: &ExtensionContext) -> Self {
        Self {
            authorized: context.sharded_counter("authorized"),
            denied_missing: context.sharded_counter("denied.missing"),
            denied_invalid: context.sharded_counter("denied.invalid"),
            denied_expired: context.sharded_counter("denied.expired"),
            out_of_fuel: context.sharded_counter("guest.out_of_fuel"),
            trapped: context.sharded_counter("guest.trapped"),
        }
    }
}

/// `bearer_token_authorizer` served by the guest's `otap_authorize`.
struct WasmAuthorizer {
    guest: Rc<Guest>,
    /// The identity of an allow that names none: the extension's id.
    extension: Identity,
    header: AuthHeader,
    counters: Counters,
}

impl local::BearerTokenAuthorizer for WasmAuthorizer {
    /// An empty credential is `Deny(missing)` without a call. Otherwise the guest decides;
    /// a call that fails (out of fuel, a trap, an answer outside the ABI) denies the request
    /// `invalid`, counted and logged: it fails closed.
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        if credential.is_empty() {
            self.counters.denied_missing.add(1);
            return Ok(deny(DenyReason::Missing));
        }
        match self.guest.authorize(credential.expose().as_bytes()) {
            Ok(Answer::Allow(identity)) => {
                self.counters.authorized.add(1);
                Ok(AuthzDecision::Allow {
                    identity: identity.unwrap_or_else(|| self.extension.clone()),
                })
            }
            Ok(Answer::Status(status::DENY_MISSING)) => {
                self.counters.denied_missing.add(1);
                Ok(deny(DenyReason::Missing))
            }
            Ok(Answer::Status(status::DENY_EXPIRED)) => {
                self.counters.denied_expired.add(1);
                Ok(deny(DenyReason::Expired))
            }
            Ok(Answer::Status(status::DENY_INVALID)) => {
                self.counters.denied_invalid.add(1);
                Ok(deny(DenyReason::Invalid))
            }
            Ok(Answer::Status(other)) => Ok(self.failed(&Failure::Broke(format!(
                "`otap_authorize` answered {other}, no status of the ABI (-1 missing, -2 \
                 invalid, -3 expired)"
            )))),
            Err(failure) => Ok(self.failed(&failure)),
        }
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }
}

fn deny(reason: DenyReason) -> AuthzDecision {
    AuthzDecision::Deny { reason }
}

impl WasmAuthorizer {
    /// A failed call: the request denied `invalid`, the failure counted and logged.
    fn failed(&self, failure: &Failure) -> AuthzDecision {
        match failure {
            Failure::OutOfFuel => self.counters.out_of_fuel.add(1),
            Failure::Trapped(_) | Failure::Broke(_) => self.counters.trapped.add(1),
        }
        self.counters.denied_invalid.add(1);
        tracing::warn!(extension = %self.extension, "the guest failed a decision, denied: {failure}");
        deny(DenyReason::Invalid)
    }
}
