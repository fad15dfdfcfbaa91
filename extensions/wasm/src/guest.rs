//! One core's instance of the module: its store (fuel and memory limits), its exports, and
//! calls into it. Nothing is shared with other cores: no lock, no atomic on a call besides
//! the counters' own shard.
//!
//! A call that traps — out of fuel, past the memory limit, or the guest's own fault — fails
//! closed (the caller denies or errs) and the instance is replaced by a fresh one before the
//! next call: a guest stopped halfway may have left its own state (its allocator, a table)
//! inconsistent.
//!
//! A guest granted a `key_value_store` (the extension's `capabilities:`) runs its calls on a
//! fiber (wasmtime's async calls): while it serves a `key_value_store` call, a host store
//! call suspends it until the store answers and the core serves other work meanwhile. A call
//! that comes while one waits gets an instance of its own (kept for the next, up to
//! [`INSTANCES_KEPT`]). The engine's other calls (`otap_authorize`, `otap_start`,
//! `otap_token`) do not wait: there, the store's functions answer `NOT_HERE` at once and the
//! call completes in one poll.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use otap_df_core::capability::{Identity, KvError, local};
use send_wrapper::SendWrapper;
use wasmtime::{
    Caller, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
    WasmParams, WasmResults,
};

use crate::abi;
use crate::config::Limits;
use crate::module::{engine, error_chain};

/// What a store holds for the host functions.
pub(crate) struct Host {
    limits: StoreLimits,
    /// The extension id, for the guest's log lines.
    pub(crate) extension: String,
    /// The store granted to the guest; used on the core that built it, which the wrapper
    /// checks.
    granted: Option<SendWrapper<Rc<dyn local::KeyValueStore>>>,
    /// Whether the running call may wait for the granted store.
    may_wait: bool,
    /// A value `kv_get` found that did not fit the guest's buffer, for `kv_value`.
    held: Option<Vec<u8>>,
}

/// Why a call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The call burnt its fuel.
    OutOfFuel,
    /// The guest trapped (its memory limit reached included).
    Trapped(String),
    /// The guest broke the ABI: an answer outside its memory, a result it may not give.
    Broke(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::OutOfFuel => f.write_str("the call ran out of fuel (`limits.fuel_per_call`)"),
            Failure::Trapped(why) | Failure::Broke(why) => f.write_str(why),
        }
    }
}

/// Consecutive failed calls after which the extension reports itself degraded.
pub(crate) const FAILURES_TO_DEGRADE: u32 = 3;

/// How the guest's calls have gone lately: what the extension's task reports as its health.
/// Changes are signalled only when the guest crosses into or out of failing, so a successful
/// call costs one relaxed load. One for all of a shared extension's threads.
#[derive(Default)]
pub(crate) struct Health {
    failures_in_a_row: AtomicU32,
    failing: Mutex<Option<String>>,
    /// Woken when `failing` changes.
    pub(crate) changed: tokio::sync::Notify,
}

impl Health {
    fn failed(&self, failure: &Failure) {
        let failures = self
            .failures_in_a_row
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures == FAILURES_TO_DEGRADE {
            *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!(
                "the guest failed {failures} calls in a row, the last: {failure}"
            ));
            self.changed.notify_one();
        }
    }

    fn succeeded(&self) {
        if self.failures_in_a_row.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.failures_in_a_row.swap(0, Ordering::Relaxed) >= FAILURES_TO_DEGRADE {
            *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = None;
            self.changed.notify_one();
        }
    }

    /// Why the guest is failing, or `None` while its calls succeed.
    pub(crate) fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A running instance and its exports.
struct Running {
    store: Store<Host>,
    memory: Memory,
    /// Shared by reference count so that a call holds them while it uses the store: a
    /// `TypedFunc` is costly to clone (its type is registered).
    exports: Rc<Exports>,
    /// The input buffer the guest handed over, and its size.
    buffer: Option<(u32, u32)>,
}

/// The exports the host calls.
struct Exports {
    alloc: TypedFunc<i32, i32>,
    authorize: Option<TypedFunc<(i32, i32), i64>>,
    store_calls: Option<StoreCalls>,
    token_calls: Option<(TypedFunc<(), i64>, TypedFunc<(), i64>)>,
}

/// `key_value_store`'s exports.
struct StoreCalls {
    get: TypedFunc<(i32, i32), i64>,
    set: TypedFunc<(i32, i32, i32, i32, i64), i32>,
    set_if_absent: TypedFunc<(i32, i32, i32, i32, i64), i32>,
    delete: TypedFunc<(i32, i32), i32>,
}

/// One core's guest.
pub(crate) struct Guest {
    module: Module,
    linker: Linker<Host>,
    limits: Limits,
    pub(crate) extension: String,
    config: Vec<u8>,
    /// The store granted to the guest, when one is.
    granted: Option<Rc<dyn local::KeyValueStore>>,
    /// Started instances: the last serves calls that do not wait; a call that waits takes
    /// one out while it runs.
    running: RefCell<Vec<Running>>,
    /// Identities the guest answered with, kept so that a repeated one costs no allocation
    /// (at most [`IDENTITIES_KEPT`]).
    identities: RefCell<HashMap<Box<[u8]>, Identity>>,
    pub(crate) health: Arc<Health>,
}

/// How many distinct identities an instance keeps ready.
const IDENTITIES_KEPT: usize = 4096;

/// How many started instances a guest keeps for calls that overlap while one waits for the
/// granted store.
pub(crate) const INSTANCES_KEPT: usize = 4;

/// Fuel for the guest's start (its runtime's initialisation and `otap_start`), in calls'
/// worth.
const START_CALLS: u64 = 100;

impl Guest {
    /// The module's instance for one core, started (`_initialize`, then `otap_start` with
    /// `config`, its ABI version checked). The error says why it did not start.
    pub(crate) fn start(
        module: Module,
        limits: Limits,
        extension: &str,
        config: Vec<u8>,
        granted: Option<Rc<dyn local::KeyValueStore>>,
        health: Arc<Health>,
    ) -> Result<Self, String> {
        let mut linker = Linker::new(engine()?);
        host_functions(&mut linker).map_err(|e| error_chain(&e))?;
        if granted.is_some() {
            granted_store_functions(&mut linker).map_err(|e| error_chain(&e))?;
        }
        let guest = Self {
            module,
            linker,
            limits,
            extension: extension.to_owned(),
            config,
            granted,
            running: RefCell::new(Vec::new()),
            identities: RefCell::new(HashMap::new()),
            health,
        };
        let running = guest.instantiate()?;
        guest.running.borrow_mut().push(running);
        Ok(guest)
    }

    /// A fresh instance, started.
    fn instantiate(&self) -> Result<Running, String> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory_bytes)
            .instances(1)
            .memories(1)
            .tables(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            engine()?,
            Host {
                limits,
                extension: self.extension.clone(),
                granted: self.granted.clone().map(SendWrapper::new),
                may_wait: false,
                held: None,
            },
        );
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(self.limits.fuel_per_call.saturating_mul(START_CALLS))
            .map_err(|e| error_chain(&e))?;
        let instance = if self.granted.is_some() {
            now(self.linker.instantiate_async(&mut store, &self.module))
        } else {
            self.linker.instantiate(&mut store, &self.module)
        }
        .map_err(|e| format!("the module did not instantiate: {}", error_chain(&e)))?;
        let export = |store: &mut Store<Host>, name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or_else(|| format!("no export `{name}`"))
        };
        if let Some(initialize) = instance.get_func(&mut store, abi::INITIALIZE) {
            let initialize = initialize
                .typed::<(), ()>(&store)
                .map_err(|e| format!("`{}`: {}", abi::INITIALIZE, error_chain(&e)))?;
            invoke(&mut store, &initialize, ())
                .map_err(|e| format!("`{}` failed: {}", abi::INITIALIZE, error_chain(&e)))?;
        }
        let version = export(&mut store, abi::ABI_VERSION)?
            .typed::<(), i32>(&store)
            .map_err(|e| error_chain(&e))?;
        let version = invoke(&mut store, &version, ())
            .map_err(|e| format!("`{}` failed: {}", abi::ABI_VERSION, error_chain(&e)))?;
        if version != abi::VERSION {
            return Err(format!(
                "the module speaks guest ABI version {version}; this host speaks version {}",
                abi::VERSION
            ));
        }
        let memory = instance
            .get_memory(&mut store, abi::MEMORY)
            .ok_or_else(|| format!("no memory export `{}`", abi::MEMORY))?;
        let alloc = export(&mut store, abi::ALLOC)?
            .typed::<i32, i32>(&store)
            .map_err(|e| error_chain(&e))?;
        let authorize = match instance.get_func(&mut store, abi::AUTHORIZE) {
            Some(function) => Some(
                function
                    .typed::<(i32, i32), i64>(&store)
                    .map_err(|e| error_chain(&e))?,
            ),
            None => None,
        };
        let store_calls = match instance.get_func(&mut store, abi::KV_GET) {
            None => None,
            Some(get) => Some(StoreCalls {
                get: get.typed(&store).map_err(|e| error_chain(&e))?,
                set: export(&mut store, abi::KV_SET)?
                    .typed(&store)
                    .map_err(|e| error_chain(&e))?,
                set_if_absent: export(&mut store, abi::KV_SET_IF_ABSENT)?
                    .typed(&store)
                    .map_err(|e| error_chain(&e))?,
                delete: export(&mut store, abi::KV_DELETE)?
                    .typed(&store)
                    .map_err(|e| error_chain(&e))?,
            }),
        };
        let token_calls = match instance.get_func(&mut store, abi::TOKEN) {
            None => None,
            Some(token) => Some((
                token.typed(&store).map_err(|e| error_chain(&e))?,
                export(&mut store, abi::TOKEN_VALID_MS)?
                    .typed(&store)
                    .map_err(|e| error_chain(&e))?,
            )),
        };
        let mut running = Running {
            store,
            memory,
            exports: Rc::new(Exports {
                alloc,
                authorize,
                store_calls,
                token_calls,
            }),
            buffer: None,
        };
        if let Some(start) = instance.get_func(&mut running.store, abi::START) {
            let start = start
                .typed::<(i32, i32), i32>(&running.store)
                .map_err(|e| format!("`{}`: {}", abi::START, error_chain(&e)))?;
            let (pointer, length) = running
                .input(&[&self.config])
                .map_err(|failure| format!("handing the config over failed: {failure}"))?;
            let refused = invoke(&mut running.store, &start, (pointer as i32, length as i32))
                .map_err(|e| format!("`{}` failed: {}", abi::START, error_chain(&e)))?;
            if refused != 0 {
                return Err(format!(
                    "the module refused its `config:` (`{}` returned {refused})",
                    abi::START
                ));
            }
        }
        Ok(running)
    }

    /// Runs `call` on the running instance (a fresh one started first when the last call
    /// failed), with a full call's fuel. A failed call drops the instance.
    fn call<R>(&self, call: impl FnOnce(&mut Running) -> Result<R, Failure>) -> Result<R, Failure> {
        let mut pool = self.running.borrow_mut();
        if pool.is_empty() {
            pool.push(self.restart()?);
        }
        let Some(running) = pool.last_mut() else {
            return Err(Failure::Broke("no instance".to_owned()));
        };
        let result = running
            .store
            .set_fuel(self.limits.fuel_per_call)
            .map_err(|e| Failure::Broke(error_chain(&e)))
            .and_then(|()| call(running));
        match &result {
            Ok(_) => self.health.succeeded(),
            Err(failure) => {
                self.health.failed(failure);
                pool.pop();
            }
        }
        result
    }

    /// [`call`](Self::call) for a call that may wait for the granted store: the instance is
    /// taken out while it runs (a call meanwhile gets another) and kept again after a
    /// success.
    async fn call_waiting<R>(
        &self,
        call: impl AsyncFnOnce(&mut Running) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        let taken = self.running.borrow_mut().pop();
        let mut running = match taken {
            Some(running) => running,
            None => self.restart()?,
        };
        let result = match running.store.set_fuel(self.limits.fuel_per_call) {
            Ok(()) => call(&mut running).await,
            Err(e) => Err(Failure::Broke(error_chain(&e))),
        };
        match &result {
            Ok(_) => {
                self.health.succeeded();
                let mut pool = self.running.borrow_mut();
                if pool.len() < INSTANCES_KEPT {
                    pool.push(running);
                }
            }
            Err(failure) => self.health.failed(failure),
        }
        result
    }

    /// A fresh instance, after a failed call dropped the last one; its failure to start is a
    /// failed call.
    fn restart(&self) -> Result<Running, Failure> {
        self.instantiate().map_err(|why| {
            let failure = Failure::Trapped(format!("the guest did not start again: {why}"));
            self.health.failed(&failure);
            failure
        })
    }

    /// The bytes of linear memory the running instance holds now (0 between a failed call
    /// and the next).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.running
            .borrow()
            .last()
            .map_or(0, |running| running.memory.data_size(&running.store))
    }

    /// Calls `otap_authorize` with `credential`.
    pub(crate) fn authorize(&self, credential: &[u8]) -> Result<Answer, Failure> {
        self.call(|running| running.authorize(credential, &self.identities))
    }

    /// Calls `otap_authorize` with `credential`, the guest free to wait for its granted store.
    pub(crate) async fn authorize_waiting(&self, credential: &[u8]) -> Result<Answer, Failure> {
        self.call_waiting(async |running: &mut Running| {
            running
                .authorize_waiting(credential, &self.identities)
                .await
        })
        .await
    }

    /// Whether the guest is granted a store (its calls may wait for it).
    pub(crate) fn granted(&self) -> bool {
        self.granted.is_some()
    }

    /// Calls `otap_kv_get`: the value, `None` when absent, or the guest's negative status.
    pub(crate) async fn kv_get(&self, key: &[u8]) -> Result<Result<Option<Vec<u8>>, i64>, Failure> {
        self.call_waiting(async |running: &mut Running| {
            let exports = running.exports.clone();
            let calls = store_calls(&exports)?;
            let (pointer, _) = running.input(&[key])?;
            let value = invoke_waiting(
                &mut running.store,
                &calls.get,
                (pointer as i32, key.len() as i32),
            )
            .await
            .map_err(failure)?;
            match abi::unpack(value) {
                Some((at, length)) => running.read(at, length, abi::KV_GET).map(|v| Ok(Some(v))),
                None if value == abi::status::ABSENT => Ok(Ok(None)),
                None => Ok(Err(value)),
            }
        })
        .await
    }

    /// Calls `otap_kv_set` (`only_if_absent`: `otap_kv_set_if_absent`): the guest's status.
    pub(crate) async fn kv_set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl_ms: i64,
        only_if_absent: bool,
    ) -> Result<i32, Failure> {
        self.call_waiting(async |running: &mut Running| {
            let exports = running.exports.clone();
            let calls = store_calls(&exports)?;
            let function = if only_if_absent {
                &calls.set_if_absent
            } else {
                &calls.set
            };
            let (pointer, _) = running.input(&[key, value])?;
            let key_length = key.len() as i32;
            let arguments = (
                pointer as i32,
                key_length,
                pointer as i32 + key_length,
                value.len() as i32,
                ttl_ms,
            );
            invoke_waiting(&mut running.store, function, arguments)
                .await
                .map_err(failure)
        })
        .await
    }

    /// Calls `otap_token`, then `otap_token_valid_ms`: the token, or the guest's negative
    /// status.
    pub(crate) fn token(&self) -> Result<Result<GuestToken, i64>, Failure> {
        self.call(|running| {
            let exports = running.exports.clone();
            let Some((token, valid)) = &exports.token_calls else {
                return Err(Failure::Broke(format!("no export `{}`", abi::TOKEN)));
            };
            let value = invoke(&mut running.store, token, ()).map_err(failure)?;
            let Some((at, length)) = abi::unpack(value) else {
                return Ok(Err(value));
            };
            let bytes = running.read(at, length, abi::TOKEN)?;
            let valid = invoke(&mut running.store, valid, ()).map_err(failure)?;
            Ok(Ok(GuestToken {
                bytes,
                valid_ms: u64::try_from(valid).ok().filter(|ms| *ms > 0),
            }))
        })
    }

    /// Calls `otap_kv_delete`: the guest's status.
    pub(crate) async fn kv_delete(&self, key: &[u8]) -> Result<i32, Failure> {
        self.call_waiting(async |running: &mut Running| {
            let exports = running.exports.clone();
            let calls = store_calls(&exports)?;
            let (pointer, _) = running.input(&[key])?;
            invoke_waiting(
                &mut running.store,
                &calls.delete,
                (pointer as i32, key.len() as i32),
            )
            .await
            .map_err(failure)
        })
        .await
    }
}

/// What `otap_token` and `otap_token_valid_ms` answered.
pub(crate) struct GuestToken {
    /// The token's bytes.
    pub(crate) bytes: Vec<u8>,
    /// How long it stays valid; `None`: no expiry.
    pub(crate) valid_ms: Option<u64>,
}

/// What `otap_authorize` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Allowed, as this identity (`None`: the guest named none).
    Allow(Option<Identity>),
    /// Denied or failed with this negative status.
    Status(i64),
}

impl Running {
    /// `parts` written one after the other into the guest's input buffer (asked for when it
    /// is missing or too small): where they start, and their whole length.
    fn input(&mut self, parts: &[&[u8]]) -> Result<(u32, u32), Failure> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let length = u32::try_from(total)
            .ok()
            .filter(|l| *l <= i32::MAX as u32)
            .ok_or_else(|| Failure::Broke("an input over 2 GiB".to_owned()))?;
        let pointer = match self.buffer {
            Some((pointer, size)) if size >= length => pointer,
            _ => {
                let asked = length.max(256);
                let pointer = invoke(&mut self.store, &self.exports.alloc, asked as i32)
                    .map_err(failure)? as u32;
                self.buffer = Some((pointer, asked));
                pointer
            }
        };
        let mut at = pointer as usize;
        for part in parts {
            self.memory.write(&mut self.store, at, part).map_err(|_| {
                Failure::Broke(format!(
                    "`{}` handed a buffer at {pointer} outside the guest's memory",
                    abi::ALLOC
                ))
            })?;
            at += part.len();
        }
        Ok((pointer, length))
    }

    /// `length` bytes at `at` of the guest's memory, which `function` answered with.
    fn read(&self, at: u32, length: u32, function: &str) -> Result<Vec<u8>, Failure> {
        self.bytes(at, length, function).map(<[u8]>::to_vec)
    }

    /// The bytes at `at`, borrowed.
    fn bytes(&self, at: u32, length: u32, function: &str) -> Result<&[u8], Failure> {
        let start = at as usize;
        self.memory
            .data(&self.store)
            .get(start..start + length as usize)
            .ok_or_else(|| {
                Failure::Broke(format!(
                    "`{function}` answered bytes at {at}..+{length}, outside the guest's memory"
                ))
            })
    }

    fn authorize(
        &mut self,
        credential: &[u8],
        identities: &RefCell<HashMap<Box<[u8]>, Identity>>,
    ) -> Result<Answer, Failure> {
        let exports = self.exports.clone();
        let authorize = authorize_export(&exports)?;
        let (pointer, length) = self.input(&[credential])?;
        let value =
            invoke(&mut self.store, authorize, (pointer as i32, length as i32)).map_err(failure)?;
        self.answer(value, identities)
    }

    /// [`authorize`](Self::authorize) where the guest may wait for its granted store.
    async fn authorize_waiting(
        &mut self,
        credential: &[u8],
        identities: &RefCell<HashMap<Box<[u8]>, Identity>>,
    ) -> Result<Answer, Failure> {
        let exports = self.exports.clone();
        let authorize = authorize_export(&exports)?;
        let (pointer, length) = self.input(&[credential])?;
        let value = invoke_waiting(&mut self.store, authorize, (pointer as i32, length as i32))
            .await
            .map_err(failure)?;
        self.answer(value, identities)
    }

    /// What `otap_authorize`'s `value` says: an identity (looked up among those the guest
    /// answered before: a known one costs no allocation), or a status.
    fn answer(
        &self,
        value: i64,
        identities: &RefCell<HashMap<Box<[u8]>, Identity>>,
    ) -> Result<Answer, Failure> {
        let Some((pointer, length)) = abi::unpack(value) else {
            return Ok(Answer::Status(value));
        };
        if length == 0 {
            return Ok(Answer::Allow(None));
        }
        let name = self.bytes(pointer, length, abi::AUTHORIZE)?;
        let mut known = identities.borrow_mut();
        if let Some(identity) = known.get(name) {
            return Ok(Answer::Allow(Some(identity.clone())));
        }
        let text = std::str::from_utf8(name).map_err(|_| {
            Failure::Broke(format!(
                "`{}` answered an identity that is not UTF-8",
                abi::AUTHORIZE
            ))
        })?;
        let identity = Identity::from(text.to_owned());
        if known.len() < IDENTITIES_KEPT {
            known.insert(name.into(), identity.clone());
        }
        Ok(Answer::Allow(Some(identity)))
    }
}

/// The `bearer_token_authorizer` export among `exports`.
fn authorize_export(exports: &Exports) -> Result<&TypedFunc<(i32, i32), i64>, Failure> {
    exports
        .authorize
        .as_ref()
        .ok_or_else(|| Failure::Broke(format!("no export `{}`", abi::AUTHORIZE)))
}

/// The `key_value_store` exports among `exports`.
fn store_calls(exports: &Exports) -> Result<&StoreCalls, Failure> {
    exports
        .store_calls
        .as_ref()
        .ok_or_else(|| Failure::Broke(format!("no export `{}`", abi::KV_GET)))
}

/// A call's error as a [`Failure`].
fn failure(error: wasmtime::Error) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel,
        _ => Failure::Trapped(format!("the guest trapped: {}", error_chain(&error))),
    }
}

/// Calls `function` where the engine does not wait: directly, or for a guest granted a store
/// (whose calls run on a fiber) in one poll, its store's functions answering `NOT_HERE`.
fn invoke<P, R>(
    store: &mut Store<Host>,
    function: &TypedFunc<P, R>,
    params: P,
) -> wasmtime::Result<R>
where
    P: WasmParams + Sync,
    R: WasmResults + Sync,
{
    if store.data().granted.is_none() {
        return function.call(store, params);
    }
    now(on_fiber(store, function, params, false))
}

/// Calls `function` where the engine waits: a guest granted a store may call it, and is
/// suspended until it answers.
async fn invoke_waiting<P, R>(
    store: &mut Store<Host>,
    function: &TypedFunc<P, R>,
    params: P,
) -> wasmtime::Result<R>
where
    P: WasmParams + Sync,
    R: WasmResults + Sync,
{
    if store.data().granted.is_none() {
        return function.call(store, params);
    }
    on_fiber(store, function, params, true).await
}

/// A granted guest's call, on a fiber; its store's functions wait for the store only when
/// `may_wait`.
async fn on_fiber<P, R>(
    store: &mut Store<Host>,
    function: &TypedFunc<P, R>,
    params: P,
    may_wait: bool,
) -> wasmtime::Result<R>
where
    P: WasmParams + Sync,
    R: WasmResults + Sync,
{
    store.data_mut().may_wait = may_wait;
    let result = function.call_async(&mut *store, params).await;
    store.data_mut().may_wait = false;
    result
}

/// `future`'s output when one poll completes it.
pub(crate) fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// `future`'s output from one poll: a call on a fiber that nothing suspends (the store's
/// functions do not wait where `may_wait` is off) completes in it.
fn now<T>(future: impl std::future::Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    poll_once(future).unwrap_or_else(|| {
        Err(wasmtime::format_err!(
            "the guest waited in a call the engine does not wait for"
        ))
    })
}

/// The store granted to the running guest when the call may wait for it; otherwise the
/// status the guest gets.
fn granted_store(
    caller: &Caller<'_, Host>,
) -> Result<SendWrapper<Rc<dyn local::KeyValueStore>>, i64> {
    let host = caller.data();
    match &host.granted {
        Some(store) if host.may_wait => Ok(store.clone()),
        _ => Err(abi::status::NOT_HERE),
    }
}

/// `length` bytes of the guest's memory at `pointer`, copied; `BAD_ARGUMENTS` outside it.
fn guest_bytes(caller: &mut Caller<'_, Host>, pointer: i32, length: i32) -> Result<Vec<u8>, i64> {
    let memory = caller
        .get_export(abi::MEMORY)
        .and_then(|export| export.into_memory())
        .ok_or(abi::status::BAD_ARGUMENTS)?;
    let (Ok(start), Ok(length)) = (usize::try_from(pointer), usize::try_from(length)) else {
        return Err(abi::status::BAD_ARGUMENTS);
    };
    memory
        .data(&*caller)
        .get(start..start.saturating_add(length))
        .map(<[u8]>::to_vec)
        .ok_or(abi::status::BAD_ARGUMENTS)
}

/// Writes `bytes` at `pointer` of the guest's memory; `false` outside it.
fn write_guest(caller: &mut Caller<'_, Host>, pointer: i32, bytes: &[u8]) -> bool {
    let Some(memory) = caller
        .get_export(abi::MEMORY)
        .and_then(|export| export.into_memory())
    else {
        return false;
    };
    usize::try_from(pointer).is_ok_and(|at| memory.write(&mut *caller, at, bytes).is_ok())
}

/// A store error as the guest's status.
fn store_status(error: &KvError) -> i64 {
    if error.is_transient() {
        abi::status::STORE_UNAVAILABLE
    } else {
        abi::status::STORE_REFUSED
    }
}

/// A TTL in milliseconds from the guest (`-1`: none); `None` when out of range.
fn guest_ttl(ttl_ms: i64) -> Option<Option<std::time::Duration>> {
    if ttl_ms == -1 {
        return Some(None);
    }
    let ttl = std::time::Duration::from_millis(u64::try_from(ttl_ms).ok()?);
    otap_df_core::capability::key_value::ttl_out_of_range("ttl", ttl)
        .is_none()
        .then_some(Some(ttl))
}

/// The host functions of [`abi::GRANTED_STORE_FUNCTIONS`], for a guest granted a store.
fn granted_store_functions(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "otap",
        "kv_get",
        |mut caller: Caller<'_, Host>, (key, key_length, out, capacity): (i32, i32, i32, i32)| {
            Box::new(async move {
                let call = granted_store(&caller)
                    .and_then(|store| Ok((store, guest_bytes(&mut caller, key, key_length)?)));
                let (store, key) = match call {
                    Ok(call) => call,
                    Err(status) => return Ok(status),
                };
                let found = SendWrapper::new(async move { store.get(&key).await }).await;
                let value = match found {
                    Ok(Some(value)) => value,
                    Ok(None) => return Ok(abi::status::ABSENT),
                    Err(error) => return Ok(store_status(&error)),
                };
                let length = i64::try_from(value.len()).unwrap_or(i64::MAX);
                if usize::try_from(capacity).is_ok_and(|c| value.len() <= c) {
                    if !write_guest(&mut caller, out, &value) {
                        return Ok(abi::status::BAD_ARGUMENTS);
                    }
                } else {
                    caller.data_mut().held = Some(value);
                }
                wasmtime::Result::Ok(length)
            })
        },
    )?;
    linker.func_wrap(
        "otap",
        "kv_value",
        |mut caller: Caller<'_, Host>, out: i32, capacity: i32| -> i64 {
            let Some(value) = caller.data_mut().held.take() else {
                return abi::status::ABSENT;
            };
            let length = i64::try_from(value.len()).unwrap_or(i64::MAX);
            if usize::try_from(capacity).is_ok_and(|c| value.len() <= c) {
                if !write_guest(&mut caller, out, &value) {
                    return abi::status::BAD_ARGUMENTS;
                }
            } else {
                caller.data_mut().held = Some(value);
            }
            length
        },
    )?;
    for (name, only_if_absent) in [("kv_set", false), ("kv_set_if_absent", true)] {
        linker.func_wrap_async(
            "otap",
            name,
            move |mut caller: Caller<'_, Host>,
                  (key, key_length, value, value_length, ttl_ms): (i32, i32, i32, i32, i64)| {
                Box::new(async move {
                    let call = granted_store(&caller).and_then(|store| {
                        let key = guest_bytes(&mut caller, key, key_length)?;
                        let value = guest_bytes(&mut caller, value, value_length)?;
                        let ttl = guest_ttl(ttl_ms).ok_or(abi::status::BAD_ARGUMENTS)?;
                        Ok((store, key, value, ttl))
                    });
                    let (store, key, value, ttl) = match call {
                        Ok(call) => call,
                        Err(status) => return Ok(status as i32),
                    };
                    let done = SendWrapper::new(async move {
                        if only_if_absent {
                            store.set_if_absent(&key, &value, ttl).await
                        } else {
                            store.set(&key, &value, ttl).await.map(|()| false)
                        }
                    })
                    .await;
                    wasmtime::Result::Ok(match done {
                        Ok(set) => i32::from(only_if_absent && set),
                        Err(error) => store_status(&error) as i32,
                    })
                })
            },
        )?;
    }
    linker.func_wrap_async(
        "otap",
        "kv_delete",
        |mut caller: Caller<'_, Host>, (key, key_length): (i32, i32)| {
            Box::new(async move {
                let call = granted_store(&caller)
                    .and_then(|store| Ok((store, guest_bytes(&mut caller, key, key_length)?)));
                let (store, key) = match call {
                    Ok(call) => call,
                    Err(status) => return Ok(status as i32),
                };
                let deleted = SendWrapper::new(async move { store.delete(&key).await }).await;
                wasmtime::Result::Ok(match deleted {
                    Ok(deleted) => i32::from(deleted),
                    Err(error) => store_status(&error) as i32,
                })
            })
        },
    )?;
    Ok(())
}

/// The host functions of [`abi::HOST_FUNCTIONS`].
fn host_functions(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "otap",
        "log",
        |mut caller: Caller<'_, Host>, level: i32, pointer: i32, length: i32| {
            let Some(memory) = caller
                .get_export(abi::MEMORY)
                .and_then(|export| export.into_memory())
            else {
                return;
            };
            let length = (length.max(0) as usize).min(4096);
            let start = pointer.max(0) as usize;
            let data = memory.data(&caller);
            let text = data
                .get(start..start.saturating_add(length))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let extension = &caller.data().extension;
            match level {
                0 => tracing::error!(extension = %extension, "guest: {text}"),
                1 => tracing::warn!(extension = %extension, "guest: {text}"),
                2 => tracing::info!(extension = %extension, "guest: {text}"),
                _ => tracing::debug!(extension = %extension, "guest: {text}"),
            }
        },
    )?;
    linker.func_wrap("otap", "monotonic_ns", monotonic_ns)?;
    crate::wasi::add(linker)?;
    Ok(())
}

/// Nanoseconds of the host's monotonic clock (since its first reading).
pub(crate) fn monotonic_ns() -> i64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    i64::try_from(origin.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_turns_failing_at_the_third_failure_in_a_row_and_back_at_a_success() {
        let health = Health::default();
        let failure = Failure::OutOfFuel;
        health.failed(&failure);
        health.succeeded();
        health.failed(&failure);
        health.failed(&failure);
        assert_eq!(health.failing(), None, "two in a row");
        health.failed(&failure);
        assert_eq!(
            health.failing().as_deref(),
            Some(
                "the guest failed 3 calls in a row, the last: the call ran out of fuel \
                 (`limits.fuel_per_call`)"
            )
        );
        health.failed(&failure);
        assert!(health.failing().is_some());
        health.succeeded();
        assert_eq!(health.failing(), None);
    }
}
