//! `extension:wasm`: the factory, and the capabilities an instance serves from its guest.
//!
//! Local: one instance (one store, one guest) per core, serving that core's nodes with no
//! lock. Which capabilities an instance provides is its `config:`'s `provides:`, checked
//! against the module's exports when the configuration is validated.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use std::time::{Instant, SystemTime};

use otap_df_core::capability::{
    AuthorizeError, AuthzDecision, BearerTokenAuthorizer, BearerTokenProvider, Capability,
    CapabilityId, DenyReason, Identity, KeyValueStore, KvError, TokenCell, TokenError,
    TokenSubscription, key_value, local, shared,
};
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::extension::{
    ExecutionModel, ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory,
    ExtensionMessage, LocalExtension, LocalExtensionBuilder, LocalTask, Readiness, ShardedCounter,
    SharedExtension, SharedExtensionBuilder, SharedTask, WithCapabilities,
};
use otap_df_core::secret::{AuthHeader, BearerToken, Credential, EXPIRY_MARGIN};

use crate::abi::status;
// The local traits' methods, called on this crate's own local capabilities.
use crate::config::{PROVIDABLE, WasmConfig};
use crate::error::WasmError;
use crate::guest::{Answer, Failure, Guest, GuestToken, Health};
use otap_df_core::capability::local::BearerTokenAuthorizer as _;

/// `extension:wasm`.
pub static WASM: ExtensionFactory = ExtensionFactory::new("wasm", env!("CARGO_PKG_NAME"))
    .description(
        "capability providers as sandboxed WebAssembly modules (fuel and memory limits, \
         nothing opened to them)",
    )
    .provides(PROVIDABLE)
    .consumes(&[CapabilityId::KeyValueStore])
    .provides_configured(|config| {
        let decoded = WasmConfig::decode(config).ok()?;
        decoded.capabilities(config).ok()
    })
    .validate_config(validate)
    .validate_bindings(validate_bindings)
    .local(create)
    .shared(create_shared)
    .preferred_model(model)
    .build();

/// The options checked, then the module read, compiled and checked against what `provides`
/// names (errors at `config.module`).
fn validate(config: &ComponentConfig<'_>) -> Result<(), ConfigError> {
    let decoded = WasmConfig::decode(config)?;
    let capabilities = decoded.capabilities(config)?;
    crate::module::load(
        &decoded.module,
        &capabilities,
        decoded.compile_cache.as_deref(),
    )
    .map(drop)
    .map_err(|message| config.invalid("module", message))
}

/// A store runs one instance per core (its entries live in each instance's memory, so one
/// instance per thread would not be one store), and so does a guest granted a store (its calls
/// wait on the core that makes them); an authorizer or a provider runs the shared variant,
/// whose instances are per thread too (started on each thread's first call), so that it can
/// serve every pipeline from the engine or a group.
fn model(config: &ComponentConfig<'_>, bound: &[CapabilityId]) -> ExecutionModel {
    if !bound.is_empty() {
        return ExecutionModel::Local;
    }
    let store = WasmConfig::decode(config)
        .ok()
        .and_then(|decoded| decoded.capabilities(config).ok())
        .is_some_and(|capabilities| capabilities.contains(&CapabilityId::KeyValueStore));
    if store {
        ExecutionModel::Local
    } else {
        ExecutionModel::Shared
    }
}

/// A module that imports a granted store's functions needs a `key_value_store` bound (error
/// at `config.module`). A config or module that is wrong otherwise is `validate`'s to report.
fn validate_bindings(
    config: &ComponentConfig<'_>,
    bound: &[CapabilityId],
) -> Result<(), ConfigError> {
    if bound.contains(&CapabilityId::KeyValueStore) {
        return Ok(());
    }
    let Ok(decoded) = WasmConfig::decode(config) else {
        return Ok(());
    };
    let Ok(capabilities) = decoded.capabilities(config) else {
        return Ok(());
    };
    let Ok(module) = crate::module::load(
        &decoded.module,
        &capabilities,
        decoded.compile_cache.as_deref(),
    ) else {
        return Ok(());
    };
    let imports = crate::module::granted_imports(&module);
    if imports.is_empty() {
        Ok(())
    } else {
        Err(config.invalid("module", ungranted(&imports)))
    }
}

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<LocalExtension, ExtensionError> {
    let decoded = WasmConfig::decode(config)?;
    let capabilities = decoded.capabilities(config)?;
    let id = context.extension_id();
    let granted = context
        .capabilities()
        .optional_local::<KeyValueStore>()
        .map_err(|error| context.error(error.to_string()))?;
    let wasm = Wasm::start(
        id,
        &decoded,
        &capabilities,
        granted,
        Counters::of(context),
        Arc::default(),
    )
    .map_err(|error| ExtensionError::typed(id, error))?;
    let mut provided = None;
    if let Some(authorizer) = wasm.authorizer() {
        provided = Some(add::<BearerTokenAuthorizer>(context, provided, authorizer));
    }
    if let Some(store) = wasm.store() {
        provided = Some(add::<KeyValueStore>(context, provided, store));
    }
    if let Some(provider) = wasm.provider() {
        provided = Some(add::<BearerTokenProvider>(context, provided, provider));
    }
    let Some(builder) = provided else {
        return Err(context.error("`provides` names no capability this build serves"));
    };
    let watch = HealthWatch {
        health: wasm.guest.health.clone(),
        provider: wasm.provider.clone(),
    };
    Ok(builder.active(Box::new(watch), Readiness::Immediate)?)
}

/// `instance` provided as `C`, by `provided` or by a new builder when nothing is provided yet.
fn add<C: Capability>(
    context: &ExtensionContext,
    provided: Option<LocalExtensionBuilder<WithCapabilities>>,
    instance: Rc<C::Local>,
) -> LocalExtensionBuilder<WithCapabilities> {
    match provided {
        Some(builder) => builder.provide::<C>(instance),
        None => context.local_builder().provide::<C>(instance),
    }
}

/// `instance` provided as `C` by a shared instance, by `provided` or by a new builder.
fn add_shared<C: Capability>(
    context: &ExtensionContext,
    provided: Option<SharedExtensionBuilder<WithCapabilities>>,
    instance: Arc<C::Shared>,
) -> SharedExtensionBuilder<WithCapabilities> {
    match provided {
        Some(builder) => builder.provide::<C>(instance),
        None => context.shared_builder().provide::<C>(instance),
    }
}

/// The extension's task: reports it degraded, with the reason, while its guest keeps failing
/// (the engine's readiness turns red), and healthy again at the guest's next success; renews a
/// provider's token when it is due.
struct HealthWatch<P> {
    health: Arc<Health>,
    /// A provider's token, asked for again before it expires.
    provider: Option<P>,
}

/// What the task renews: a provider's token.
trait Renews {
    /// When the token is to be asked for again.
    fn due(&self) -> Option<Instant>;
    /// Asks the guest for its token now.
    fn renew(&self) -> Result<BearerToken, TokenError>;
}

impl<T: Renews + ?Sized> Renews for Rc<T> {
    fn due(&self) -> Option<Instant> {
        (**self).due()
    }
    fn renew(&self) -> Result<BearerToken, TokenError> {
        (**self).renew()
    }
}

impl<T: Renews + ?Sized> Renews for Arc<T> {
    fn due(&self) -> Option<Instant> {
        (**self).due()
    }
    fn renew(&self) -> Result<BearerToken, TokenError> {
        (**self).renew()
    }
}

impl<P: Renews> HealthWatch<P> {
    async fn watch(&self, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        loop {
            let refresh_at = self.provider.as_ref().and_then(Renews::due);
            let refresh = async {
                match refresh_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => {}
                },
                () = self.health.changed.notified() => match self.health.failing() {
                    Some(why) => control.set_degraded(why),
                    None => control.set_healthy(),
                },
                () = refresh => {
                    if let Some(provider) = &self.provider
                        && let Err(error) = provider.renew()
                    {
                        tracing::warn!(extension = %error.provider, "{}; serving the last token", error.message);
                    }
                }
            }
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl LocalTask for HealthWatch<Rc<WasmProvider>> {
    async fn run(self: Box<Self>, control: ExtensionControl) -> Result<(), ExtensionError> {
        self.watch(control).await
    }
}

#[otap_df_core::async_trait]
impl SharedTask for HealthWatch<Arc<SharedProvider>> {
    async fn run(self: Box<Self>, control: ExtensionControl) -> Result<(), ExtensionError> {
        self.watch(control).await
    }
}

/// What `provides` names, each a capability a module can provide.
fn capabilities(config: &WasmConfig) -> Result<Vec<CapabilityId>, WasmError> {
    config
        .provides
        .iter()
        .map(|name| {
            CapabilityId::from_name(name)
                .filter(|c| PROVIDABLE.contains(c))
                .ok_or_else(|| {
                    WasmError::Module(format!(
                        "`{name}` is not a capability a WebAssembly module can provide"
                    ))
                })
        })
        .collect()
}

/// Why a module that imports a granted store's functions (`imports`) cannot run without one.
pub(crate) fn ungranted(imports: &[String]) -> String {
    format!(
        "the module imports {}, which call the `key_value_store` granted to it, and the \
         extension binds none: add `capabilities: {{ key_value_store: <extension id> }}` to it",
        imports.join(", ")
    )
}

/// One instance of `extension:wasm` on one core: the guest and the capabilities it serves.
pub struct Wasm {
    guest: Rc<Guest>,
    authorizer: Option<Rc<WasmAuthorizer>>,
    store: Option<Rc<WasmStore>>,
    provider: Option<Rc<WasmProvider>>,
}

impl Wasm {
    /// An instance with `config` (checked), outside an engine: its counters count for no
    /// one. What the crate's tests and a host embedding the guest use.
    pub fn new(id: &str, config: &WasmConfig) -> Result<Self, WasmError> {
        Self::start(
            id,
            config,
            &capabilities(config)?,
            None,
            Counters::default(),
            Arc::default(),
        )
    }

    /// [`new`](Self::new) for a guest granted `store`: the key/value store its
    /// `otap.kv_*` imports call (what binding one in the extension's `capabilities:` does).
    pub fn granted(
        id: &str,
        config: &WasmConfig,
        store: Rc<dyn local::KeyValueStore>,
    ) -> Result<Self, WasmError> {
        Self::start(
            id,
            config,
            &capabilities(config)?,
            Some(store),
            Counters::default(),
            Arc::default(),
        )
    }

    fn start(
        id: &str,
        config: &WasmConfig,
        capabilities: &[CapabilityId],
        granted: Option<Rc<dyn local::KeyValueStore>>,
        counters: Counters,
        health: Arc<Health>,
    ) -> Result<Self, WasmError> {
        let module = crate::module::load(
            &config.module,
            capabilities,
            config.compile_cache.as_deref(),
        )
        .map_err(WasmError::Module)?;
        let imports = crate::module::granted_imports(&module);
        if granted.is_none() && !imports.is_empty() {
            return Err(WasmError::Module(ungranted(&imports)));
        }
        let start_config = serde_json::to_vec(&config.config).unwrap_or_else(|_| b"null".to_vec());
        let guest = Rc::new(
            Guest::start(module, config.limits, id, start_config, granted, health)
                .map_err(WasmError::Start)?,
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
        let provider = match capabilities.contains(&CapabilityId::BearerTokenProvider) {
            false => None,
            true => {
                let provider = Rc::new(WasmProvider {
                    guest: guest.clone(),
                    token: Token::new(id, config),
                });
                provider
                    .renew()
                    .map_err(|error| WasmError::Start(error.message))?;
                Some(provider)
            }
        };
        Ok(Self {
            guest,
            authorizer,
            store,
            provider,
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

    /// Its `bearer_token_provider`, when `provides` names it.
    pub fn provider(&self) -> Option<Rc<dyn local::BearerTokenProvider>> {
        self.provider
            .clone()
            .map(|p| p as Rc<dyn local::BearerTokenProvider>)
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
    undecided: Arc<ShardedCounter>,
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
            undecided: context.sharded_counter("undecided"),
            out_of_fuel: context.sharded_counter("guest.out_of_fuel"),
            trapped: context.sharded_counter("guest.trapped"),
            store_errors: context.sharded_counter("store.errors"),
        }
    }

    /// A failed call, by why.
    fn failed(&self, failure: &Failure) {
        match failure {
            Failure::OutOfFuel => self.out_of_fuel.add(1),
            Failure::Trapped(_) | Failure::Broke(_) => self.trapped.add(1),
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

#[otap_df_core::async_trait(?Send)]
impl local::BearerTokenAuthorizer for WasmAuthorizer {
    /// An empty credential is `Deny(missing)` without a call. Otherwise the guest decides;
    /// a call that fails (out of fuel, a trap, an answer outside the ABI) denies the request
    /// `invalid`, counted and logged: it fails closed. A guest granted a store decides only
    /// with [`authorize_waiting`](Self::authorize_waiting): here it cannot decide.
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        if credential.is_empty() {
            self.counters.denied_missing.add(1);
            return Ok(deny(DenyReason::Missing));
        }
        if self.guest.granted() {
            return Err(AuthorizeError {
                authorizer: self.extension.to_string(),
                message: "its guest reads a granted store, and decides only where the caller \
                          waits (`authorize_waiting`)"
                    .to_owned(),
            });
        }
        self.decided(self.guest.authorize(credential.expose().as_bytes()))
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }

    fn waits(&self) -> bool {
        self.guest.granted()
    }

    /// [`authorize`](Self::authorize), the guest free to wait for its granted store.
    async fn authorize_waiting(
        &self,
        credential: Credential<'_>,
    ) -> Result<AuthzDecision, AuthorizeError> {
        if credential.is_empty() {
            self.counters.denied_missing.add(1);
            return Ok(deny(DenyReason::Missing));
        }
        let answer = self
            .guest
            .authorize_waiting(credential.expose().as_bytes())
            .await;
        self.decided(answer)
    }
}

fn deny(reason: DenyReason) -> AuthzDecision {
    AuthzDecision::Deny { reason }
}

impl WasmAuthorizer {
    /// The decision the guest's answer is.
    fn decided(&self, answer: Result<Answer, Failure>) -> Result<AuthzDecision, AuthorizeError> {
        match answer {
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
            Ok(Answer::Status(status::UNDECIDED)) => {
                self.counters.undecided.add(1);
                Err(AuthorizeError {
                    authorizer: self.extension.to_string(),
                    message: "the guest could not decide now (`otap_authorize` answered -4)"
                        .to_owned(),
                })
            }
            Ok(Answer::Status(other)) => Ok(self.failed(&Failure::Broke(format!(
                "`otap_authorize` answered {other}, no status of the ABI (-1 missing, -2 \
                 invalid, -3 expired, -4 undecided)"
            )))),
            Err(failure) => Ok(self.failed(&failure)),
        }
    }

    /// A failed call: the request denied `invalid`, the failure counted and logged.
    fn failed(&self, failure: &Failure) -> AuthzDecision {
        self.counters.failed(failure);
        self.counters.denied_invalid.add(1);
        tracing::warn!(extension = %self.extension, "the guest failed a decision, denied: {failure}");
        deny(DenyReason::Invalid)
    }
}

/// `key_value_store` served by the guest's `otap_kv_*` exports. A call that fails (out of
/// fuel, a trap) is `Unavailable` (the next call gets a fresh instance, and with it an empty
/// store for a guest that keeps its entries in its own memory); a negative status is
/// `Refused`, but `-2`, `Unavailable`.
struct WasmStore {
    guest: Rc<Guest>,
    id: String,
    counters: Counters,
}

impl WasmStore {
    fn failed(&self, failure: &Failure) -> KvError {
        self.counters.failed(failure);
        self.counters.store_errors.add(1);
        KvError::Unavailable {
            store: self.id.clone(),
            message: format!("the guest failed: {failure}"),
        }
    }

    /// A negative status from `function`: `-2` says the guest's own store is unavailable now
    /// (transient, as a granted store's failure reaches it); any other refuses the call.
    fn refused(&self, function: &str, status: i64) -> KvError {
        self.counters.store_errors.add(1);
        if status == status::STORE_UNAVAILABLE {
            return KvError::Unavailable {
                store: self.id.clone(),
                message: format!(
                    "`{function}` answered {status}: the guest's store is unavailable"
                ),
            };
        }
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

    async fn set_with(
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
        match self.guest.kv_set(key, value, ttl, only_if_absent).await {
            Ok(status) if status >= 0 => Ok(status),
            Ok(status) => Err(self.refused(function, i64::from(status))),
            Err(failure) => Err(self.failed(&failure)),
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl local::KeyValueStore for WasmStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        match self.guest.kv_get(key).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(self.refused(crate::abi::KV_GET, status)),
            Err(failure) => Err(self.failed(&failure)),
        }
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.set_with(key, value, ttl, false).await.map(drop)
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        self.set_with(key, value, ttl, true)
            .await
            .map(|status| status == 1)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        match self.guest.kv_delete(key).await {
            Ok(status) if status >= 0 => Ok(status == 1),
            Ok(status) => Err(self.refused(crate::abi::KV_DELETE, i64::from(status))),
            Err(failure) => Err(self.failed(&failure)),
        }
    }
}

/// A provider's token: asked of the guest at start (a guest with no token does not start),
/// again by the extension's task at four fifths of the time the token is usable (its validity
/// less the 30 s before expiry in which consumers no longer send it; never, for a token without
/// expiry), and at once by `fresh_token`. Consumers read the last token from a [`TokenCell`]:
/// no call into the guest per request.
struct Token {
    id: String,
    header: AuthHeader,
    cell: TokenCell,
    updates: tokio::sync::watch::Sender<Option<BearerToken>>,
    /// When the task asks the guest again.
    refresh_at: std::sync::Mutex<Option<Instant>>,
}

impl Token {
    fn new(id: &str, config: &WasmConfig) -> Self {
        Self {
            id: id.to_owned(),
            header: AuthHeader::new(&config.header, &config.scheme),
            cell: TokenCell::new(),
            updates: tokio::sync::watch::Sender::new(None),
            refresh_at: std::sync::Mutex::new(None),
        }
    }

    fn set_due(&self, at: Option<Instant>) {
        *self
            .refresh_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    fn due(&self) -> Option<Instant> {
        *self
            .refresh_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves what the guest answered from now on; on failure the last token stays and the
    /// task asks again in a second.
    fn take(
        &self,
        answer: Result<Result<GuestToken, i64>, Failure>,
    ) -> Result<BearerToken, TokenError> {
        let error = |message: String| TokenError {
            provider: self.id.clone(),
            message,
        };
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(status)) => {
                self.set_due(Some(Instant::now() + Duration::from_secs(1)));
                return Err(error(format!(
                    "`otap_token` answered {status}: no token now"
                )));
            }
            Err(failure) => {
                self.set_due(Some(Instant::now() + Duration::from_secs(1)));
                return Err(error(format!("the guest failed: {failure}")));
            }
        };
        let text = String::from_utf8(answer.bytes)
            .map_err(|_| error("`otap_token` answered a token that is not UTF-8".to_owned()))?;
        let mut token = BearerToken::new(text);
        match answer.valid_ms {
            Some(ms) => {
                // Consumers stop sending a token `EXPIRY_MARGIN` before it expires: the next
                // one is asked for at four fifths of the time it is usable, at least 100 ms on.
                let valid = Duration::from_millis(ms);
                token = token.with_expiry(SystemTime::now() + valid);
                let usable = valid.saturating_sub(EXPIRY_MARGIN);
                if usable.is_zero() {
                    tracing::warn!(
                        extension = %self.id,
                        "the guest's token is valid {valid:?}, within the {EXPIRY_MARGIN:?} before \
                         expiry in which consumers no longer send a token"
                    );
                }
                let next = usable.mul_f64(0.8).max(Duration::from_millis(100));
                self.set_due(Some(Instant::now() + next));
            }
            None => self.set_due(None),
        }
        self.cell.store(Some(token.clone()));
        self.updates.send_replace(Some(token.clone()));
        Ok(token)
    }
}

/// `bearer_token_provider` served by the guest's `otap_token` and `otap_token_valid_ms` (see
/// [`Token`]).
struct WasmProvider {
    guest: Rc<Guest>,
    token: Token,
}

impl Renews for WasmProvider {
    fn due(&self) -> Option<Instant> {
        self.token.due()
    }

    fn renew(&self) -> Result<BearerToken, TokenError> {
        self.token.take(self.guest.token())
    }
}

/// The provider trait of `$trait_` for a [`Token`] holder, local or shared.
macro_rules! serve_token {
    ($holder:ty, $trait_:path, $($attribute:tt)*) => {
        #[otap_df_core::async_trait $($attribute)*]
        impl $trait_ for $holder {
            fn current_token(&self) -> Option<BearerToken> {
                self.token.cell.load()
            }

            fn token_generation(&self) -> u64 {
                self.token.cell.generation()
            }

            fn subscribe(&self) -> TokenSubscription {
                TokenSubscription::new(self.token.updates.subscribe())
            }

            fn header(&self) -> &AuthHeader {
                &self.token.header
            }

            /// Asks the guest now.
            async fn fresh_token(&self) -> Result<BearerToken, TokenError> {
                self.renew()
            }
        }
    };
}

serve_token!(WasmProvider, local::BearerTokenProvider, (?Send));
serve_token!(SharedProvider, shared::BearerTokenProvider,);

/// The shared variant's guests: one instance per thread that calls it, started on the
/// thread's first call and kept in a thread-local table, so that a call takes no lock: what
/// an authorizer or a provider runs as, in a pipeline or for every pipeline of the engine or a
/// group.
struct SharedGuests {
    id: String,
    config: WasmConfig,
    /// What each thread's instance serves: the authorizer (the token is the extension's,
    /// renewed by its task).
    capabilities: Vec<CapabilityId>,
    counters: Counters,
    health: Arc<Health>,
}

thread_local! {
    /// This thread's instances of shared extensions, by the extension they belong to.
    static THREAD_GUESTS: std::cell::RefCell<Vec<(std::sync::Weak<SharedGuests>, Rc<Wasm>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl SharedGuests {
    /// This thread's instance, started on its first call here (those of extensions that
    /// are gone are dropped then).
    fn here(self: &Arc<Self>) -> Result<Rc<Wasm>, Failure> {
        THREAD_GUESTS.with(|guests| {
            let mut guests = guests.borrow_mut();
            let mine = guests
                .iter()
                .find(|(owner, _)| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(self)));
            if let Some((_, wasm)) = mine {
                return Ok(wasm.clone());
            }
            guests.retain(|(owner, _)| owner.strong_count() > 0);
            let wasm = Rc::new(self.start().map_err(|error| {
                let failure =
                    Failure::Trapped(format!("the guest did not start on this thread: {error}"));
                self.counters.failed(&failure);
                failure
            })?);
            guests.push((Arc::downgrade(self), wasm.clone()));
            Ok(wasm)
        })
    }

    fn start(&self) -> Result<Wasm, WasmError> {
        Wasm::start(
            &self.id,
            &self.config,
            &self.capabilities,
            None,
            self.counters.clone(),
            self.health.clone(),
        )
    }
}

/// The shared variant: each thread's calls go to its own instance ([`SharedGuests`]).
fn create_shared(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let decoded = WasmConfig::decode(config)?;
    let capabilities = decoded.capabilities(config)?;
    let id = context.extension_id();
    // Only a shared node makes a store's or a granted guest's instance shared: those run
    // one instance per core (see `model`), on the core that calls them.
    if capabilities.contains(&CapabilityId::KeyValueStore)
        || !context.capabilities().unclaimed().is_empty()
    {
        return Err(context.error(
            "a shared node binds it, and a WebAssembly key_value_store, like a guest granted a \
             store, runs one instance per core (its state is each instance's own): bind it from \
             local nodes only",
        ));
    }
    let guests = Arc::new(SharedGuests {
        id: id.to_owned(),
        config: decoded.clone(),
        capabilities: capabilities
            .iter()
            .copied()
            .filter(|c| *c == CapabilityId::BearerTokenAuthorizer)
            .collect(),
        counters: Counters::of(context),
        health: Arc::default(),
    });
    // A module that does not start is refused now, not at the first request of each thread.
    drop(
        guests
            .start()
            .map_err(|error| ExtensionError::typed(id, error))?,
    );
    let mut provided = None;
    if capabilities.contains(&CapabilityId::BearerTokenAuthorizer) {
        let authorizer: Arc<dyn shared::BearerTokenAuthorizer> = Arc::new(SharedAuthorizer {
            guests: guests.clone(),
            header: AuthHeader::new(&decoded.header, &decoded.scheme),
        });
        provided = Some(add_shared::<BearerTokenAuthorizer>(
            context, provided, authorizer,
        ));
    }
    let mut provider = None;
    if capabilities.contains(&CapabilityId::BearerTokenProvider) {
        let shared_provider = Arc::new(SharedProvider {
            guests: guests.clone(),
            token: Token::new(id, &decoded),
        });
        shared_provider
            .renew()
            .map_err(|error| context.error(error.message))?;
        let instance: Arc<dyn shared::BearerTokenProvider> = shared_provider.clone();
        provided = Some(add_shared::<BearerTokenProvider>(
            context, provided, instance,
        ));
        provider = Some(shared_provider);
    }
    let Some(builder) = provided else {
        return Err(context.error("`provides` names no capability this build serves"));
    };
    let watch = HealthWatch {
        health: guests.health.clone(),
        provider,
    };
    Ok(builder.active(Box::new(watch), Readiness::Immediate)?)
}

/// The shared `bearer_token_authorizer`: the calling thread's instance decides.
struct SharedAuthorizer {
    guests: Arc<SharedGuests>,
    header: AuthHeader,
}

impl shared::BearerTokenAuthorizer for SharedAuthorizer {
    fn authorize(&self, credential: Credential<'_>) -> Result<AuthzDecision, AuthorizeError> {
        match self.guests.here() {
            Ok(wasm) => match &wasm.authorizer {
                Some(authorizer) => authorizer.authorize(credential),
                None => Ok(deny(DenyReason::Invalid)),
            },
            Err(_) => {
                self.guests.counters.denied_invalid.add(1);
                Ok(deny(DenyReason::Invalid))
            }
        }
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }
}

/// The shared `bearer_token_provider`: one token for every core, asked of the instance on the
/// thread the extension's task (or a consumer's `fresh_token`) runs on.
struct SharedProvider {
    guests: Arc<SharedGuests>,
    token: Token,
}

impl Renews for SharedProvider {
    fn due(&self) -> Option<Instant> {
        self.token.due()
    }

    fn renew(&self) -> Result<BearerToken, TokenError> {
        let answer = self.guests.here().and_then(|wasm| wasm.guest.token());
        self.token.take(answer)
    }
}
