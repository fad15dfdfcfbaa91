//! One core's instance of the module: its store (fuel and memory limits), its exports, and
//! calls into it. Nothing is shared with other cores: no lock, no atomic on a call besides
//! the counters' own shard.
//!
//! A call that traps — out of fuel, past the memory limit, or the guest's own fault — fails
//! closed (the caller denies or errs) and the instance is replaced by a fresh one before the
//! next call: a guest stopped halfway may have left its own state (its allocator, a table)
//! inconsistent.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use otap_df_core::capability::Identity;
use wasmtime::{
    Caller, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use crate::abi;
use crate::config::Limits;
use crate::module::{engine, error_chain};

/// What a store holds for the host functions.
pub(crate) struct Host {
    limits: StoreLimits,
    /// The extension id, for the guest's log lines.
    extension: String,
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

/// A running instance and its exports.
struct Running {
    store: Store<Host>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    authorize: Option<TypedFunc<(i32, i32), i64>>,
    /// The input buffer the guest handed over, and its size.
    buffer: Option<(u32, u32)>,
}

/// One core's guest.
pub(crate) struct Guest {
    module: Module,
    linker: Linker<Host>,
    limits: Limits,
    extension: String,
    config: Vec<u8>,
    running: RefCell<Option<Running>>,
    /// Identities the guest answered with, kept so that a repeated one costs no allocation
    /// (at most [`IDENTITIES_KEPT`]).
    identities: RefCell<HashMap<Box<[u8]>, Identity>>,
}

/// How many distinct identities an instance keeps ready.
const IDENTITIES_KEPT: usize = 4096;

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
    ) -> Result<Self, String> {
        let mut linker = Linker::new(engine()?);
        host_functions(&mut linker).map_err(|e| error_chain(&e))?;
        let guest = Self {
            module,
            linker,
            limits,
            extension: extension.to_owned(),
            config,
            running: RefCell::new(None),
            identities: RefCell::new(HashMap::new()),
        };
        let running = guest.instantiate()?;
        *guest.running.borrow_mut() = Some(running);
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
            },
        );
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(self.limits.fuel_per_call.saturating_mul(START_CALLS))
            .map_err(|e| error_chain(&e))?;
        let instance = self
            .linker
            .instantiate(&mut store, &self.module)
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
            initialize
                .call(&mut store, ())
                .map_err(|e| format!("`{}` failed: {}", abi::INITIALIZE, error_chain(&e)))?;
        }
        let version = export(&mut store, abi::ABI_VERSION)?
            .typed::<(), i32>(&store)
            .map_err(|e| error_chain(&e))?
            .call(&mut store, ())
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
        let mut running = Running {
            store,
            memory,
            alloc,
            authorize,
            buffer: None,
        };
        if let Some(start) = instance.get_func(&mut running.store, abi::START) {
            let start = start
                .typed::<(i32, i32), i32>(&running.store)
                .map_err(|e| format!("`{}`: {}", abi::START, error_chain(&e)))?;
            let (pointer, length) = running
                .input(&self.config)
                .map_err(|failure| format!("handing the config over failed: {failure}"))?;
            let refused = start
                .call(&mut running.store, (pointer as i32, length as i32))
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

    /// Calls `otap_authorize` with `credential`: `Ok(status)` for a negative status,
    /// `Ok(identity)` for an allow. A failed call drops the instance.
    pub(crate) fn authorize(&self, credential: &[u8]) -> Result<Answer, Failure> {
        let mut slot = self.running.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.instantiate().map_err(Failure::Trapped)?);
        }
        let Some(running) = slot.as_mut() else {
            return Err(Failure::Broke("no instance".to_owned()));
        };
        let answer = running.authorize(credential, self.limits.fuel_per_call, &self.identities);
        if answer.is_err() {
            *slot = None;
        }
        answer
    }
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
    /// `bytes` written into the guest's input buffer (asked for when it is missing or too
    /// small): where they are.
    fn input(&mut self, bytes: &[u8]) -> Result<(u32, u32), Failure> {
        let length = u32::try_from(bytes.len())
            .map_err(|_| Failure::Broke("an input over 4 GiB".to_owned()))?;
        let pointer = match self.buffer {
            Some((pointer, size)) if size >= length => pointer,
            _ => {
                let asked = length.max(256);
                let pointer = self
                    .alloc
                    .call(&mut self.store, asked as i32)
                    .map_err(failure)? as u32;
                self.buffer = Some((pointer, asked));
                pointer
            }
        };
        self.memory
            .write(&mut self.store, pointer as usize, bytes)
            .map_err(|_| {
                Failure::Broke(format!(
                    "`{}` handed a buffer at {pointer} outside the guest's memory",
                    abi::ALLOC
                ))
            })?;
        Ok((pointer, length))
    }

    fn authorize(
        &mut self,
        credential: &[u8],
        fuel: u64,
        identities: &RefCell<HashMap<Box<[u8]>, Identity>>,
    ) -> Result<Answer, Failure> {
        self.store
            .set_fuel(fuel)
            .map_err(|e| Failure::Trapped(error_chain(&e)))?;
        let Some(authorize) = self.authorize.clone() else {
            return Err(Failure::Broke(format!("no export `{}`", abi::AUTHORIZE)));
        };
        let (pointer, length) = self.input(credential)?;
        let value = authorize
            .call(&mut self.store, (pointer as i32, length as i32))
            .map_err(failure)?;
        let Some((pointer, length)) = abi::unpack(value) else {
            return Ok(Answer::Status(value));
        };
        if length == 0 {
            return Ok(Answer::Allow(None));
        }
        let data = self.memory.data(&self.store);
        let name = data
            .get(pointer as usize..pointer as usize + length as usize)
            .ok_or_else(|| {
                Failure::Broke(format!(
                    "`{}` answered an identity at {pointer}..+{length}, outside the guest's \
                     memory",
                    abi::AUTHORIZE
                ))
            })?;
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

/// A call's error as a [`Failure`].
fn failure(error: wasmtime::Error) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel,
        _ => Failure::Trapped(format!("the guest trapped: {}", error_chain(&error))),
    }
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
    linker.func_wrap("otap", "monotonic_ns", || -> i64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        i64::try_from(origin.elapsed().as_nanos()).unwrap_or(i64::MAX)
    })?;
    Ok(())
}
