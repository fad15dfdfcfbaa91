//! `extension:wasm`: the factory, and the capabilities an instance serves from its guest.
//!
//! Local: one instance (one store, one guest) per core, serving that core's nodes with no
//! lock. Which capabilities an instance provides is its `config:`'s `provides:`, checked
//! against the module's exports when the configuration is validated.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use otap_df_core::capability::{
    AuthorizeError, AuthzDecision, BearerTokenAuthorizer, CapabilityId, DenyReason, Identity,
    KeyValueStore, KvError, key_value, local,
};
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::extension::{
    ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory, ExtensionMessage,
    LocalExtension, LocalTask, Readiness, ShardedCounter,
};
use otap_df_core::secret::{AuthHeader, Credential};

use crate::abi::status;
use crate::config::{PROVIDABLE, WasmConfig};
use crate::error::WasmError;
use crate::guest::{Answer, Failure, Guest};

/// `extension:wasm`.
pub static WASM: ExtensionFactory = ExtensionFactory::new("wasm", env!("CARGO_PKG_NAME"))
    .description(
        "capability providers as sandboxed WebAssembly modules (fuel and memory limits, \
         nothing opened to them)",
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
    let builder = match (wasm.authorizer(), wasm.store()) {
        (Some(authorizer), Some(store)) => builder
            .provide::<BearerTokenAuthorizer>(authorizer)
            .provide::<KeyValueStore>(store),
        (Some(authorizer), None) => builder.provide::<BearerTokenAuthorizer>(authorizer),
        (None, Some(store)) => builder.provide::<KeyValueStore>(store),
        (None, None) => {
            return Err(context.error("`provides` names no capability this build serves"));
        }
    };
    let watch = HealthWatch {
        health: wasm.guest.health.clone(),
    };
    Ok(builder.active(Box::new(watch), Readiness::Immediate)?)
}

/// The extension's task: reports it degraded, with the reason, while its guest keeps failing
/// (the engine's readiness turns red), and healthy again at the guest's next success.
struct HealthWatch {
    health: Rc<crate::guest::Health>,
}

#[otap_df_core::async_trait(?Send)]
impl LocalTask for HealthWatch {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => {}
                },
                () = self.health.changed.notified() => match self.health.failing() {
                    Some(why) => control.set_degraded(why),
                    None => control.set_healthy(),
                },
            }
        }
    }
}

/// One instance of `extension:wasm` on one core: the guest and the capabilities it serves.
pub struct Wasm {
    guest: Rc<Guest>,
    authorizer: Option<Rc<WasmAuthorizer>>,
    store: Option<Rc<WasmStore>>,
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
                    counters: counters.clone(),
                })
            });
        let store = capabilities
            .contains(&CapabilityId::KeyValueStore)
            .then(|| {
                Rc::new(WasmStore {
                    guest: guest.clone(),
                    id: id.to_owned(),
                    counters,
                })
            });
        Ok(Self {
            guest,
            authorizer,
            store,
        })
    }

    /// Its `bearer_token_authorizer`, when `provides` names it.
    pub fn authorizer(&self) -> Option<Rc<dyn local::BearerTokenAuthorizer>> {
        self.authorizer
            .clone()
            .map(|a| a as Rc<dyn local::BearerTokenAuthorizer>)
    }

    /// The bytes of linear memory its guest holds now: what one instance (one core) costs
    /// besides wasmtime's own bookkeeping.
    pub fn memory_bytes(&self) -> usize {
        self.guest.memory_bytes()
    }

    /// Its `key_value_store`, when `provides` names it.
    pub fn store(&self) -> Option<Rc<dyn local::KeyValueStore>> {
        self.store
            .clone()
            .map(|s| s as Rc<dyn local::KeyValueStore>)
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
    store_errors: Arc<ShardedCounter>,
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
            store_errors: context.sharded_counter("store.errors"),
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

/// `key_value_store` served by the guest's `otap_kv_*` exports. A call that fails (out of
/// fuel, a trap) is `Unavailable` (the next call gets a fresh instance, and with it an empty
/// store for a guest that keeps its entries in its own memory); a negative status is
/// `Refused`.
struct WasmStore {
    guest: Rc<Guest>,
    id: String,
    counters: Counters,
}

impl WasmStore {
    fn failed(&self, failure: &Failure) -> KvError {
        match failure {
            Failure::OutOfFuel => self.counters.out_of_fuel.add(1),
            Failure::Trapped(_) | Failure::Broke(_) => self.counters.trapped.add(1),
        }
        self.counters.store_errors.add(1);
        KvError::Unavailable {
            store: self.id.clone(),
            message: format!("the guest failed: {failure}"),
        }
    }

    fn refused(&self, function: &str, status: i64) -> KvError {
        self.counters.store_errors.add(1);
        KvError::Refused {
            store: self.id.clone(),
            message: format!("`{function}` answered {status}"),
        }
    }

    /// `ttl` in whole milliseconds (rounded up), `-1` for none; refused out of range.
    fn ttl_ms(&self, ttl: Option<Duration>) -> Result<i64, KvError> {
        let Some(ttl) = ttl else {
            return Ok(-1);
        };
        if let Some(reason) = key_value::ttl_out_of_range("ttl", ttl) {
            return Err(KvError::Refused {
                store: self.id.clone(),
                message: reason,
            });
        }
        Ok(i64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX))
    }

    fn set_with(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        only_if_absent: bool,
    ) -> Result<i32, KvError> {
        let ttl = self.ttl_ms(ttl)?;
        let function = if only_if_absent {
            crate::abi::KV_SET_IF_ABSENT
        } else {
            crate::abi::KV_SET
        };
        match self.guest.kv_set(key, value, ttl, only_if_absent) {
            Ok(status) if status >= 0 => Ok(status),
            Ok(status) => Err(self.refused(function, i64::from(status))),
            Err(failure) => Err(self.failed(&failure)),
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl local::KeyValueStore for WasmStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        match self.guest.kv_get(key) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(self.refused(crate::abi::KV_GET, status)),
            Err(failure) => Err(self.failed(&failure)),
        }
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.set_with(key, value, ttl, false).map(drop)
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        self.set_with(key, value, ttl, true)
            .map(|status| status == 1)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        match self.guest.kv_delete(key) {
            Ok(status) if status >= 0 => Ok(status == 1),
            Ok(status) => Err(self.refused(crate::abi::KV_DELETE, i64::from(status))),
            Err(failure) => Err(self.failed(&failure)),
        }
    }
}
