//! Instrumented extensions and nodes that write what happens to them into named event logs,
//! so tests can assert the order in which the engine starts, drains and stops things.
//!
//! Every component takes `log: <name>` in its `config:`; tests use a name of their own, so
//! they can run in parallel in one process. Events are `<id>:<what>` strings, e.g.
//! `auth:start`, `auth:ready`, `source:start`, `sink:finish 10`, `auth:stop`.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use otap_df_core::capability::{
    BearerTokenProvider, CapabilityId, KeyValueStore, KvError, local, shared,
};
use otap_df_core::config::{ComponentConfig, ComponentKind};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::extension::Capabilities;
use otap_df_core::extension::{
    ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory, ExtensionMessage,
    LocalTask, Readiness, SharedTask,
};
use otap_df_core::memory_kv::{LocalMemoryKv, MemoryKvConfig, SharedMemoryKv};
use otap_df_core::node::{CapabilityRequirement, NodeFactory};
use otap_df_core::node::{
    ControlMessage, LocalExporter, LocalReceiver, NodeContext, NodeError, NodeInstance,
    ReceiverContext,
};
use otap_df_core::registry::Registry;
use serde::Deserialize;

use crate::fixtures::FixedToken;

const REGISTRANT: &str = env!("CARGO_PKG_NAME");

#[derive(Default)]
struct Log {
    events: Vec<String>,
    /// Payloads a recording source has handed to its outputs.
    sent: u64,
    /// Records a recording sink has exported.
    received: u64,
    /// The largest `sent - received` a sink saw after an export.
    max_lag: u64,
}

static LOGS: Mutex<Option<HashMap<String, Log>>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();

fn with_log<R>(name: &str, f: impl FnOnce(&mut Log) -> R) -> R {
    let mut logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    let result = f(logs
        .get_or_insert_with(HashMap::new)
        .entry(name.to_owned())
        .or_default());
    CHANGED.notify_all();
    result
}

/// Appends `event` to log `name`.
pub fn record(name: &str, event: impl Into<String>) {
    let event = event.into();
    with_log(name, |log| log.events.push(event));
}

/// The events of log `name`, in order.
pub fn events(name: &str) -> Vec<String> {
    with_log(name, |log| log.events.clone())
}

/// The largest number of payloads a source of log `name` had sent beyond what its sink had
/// exported, as seen by the sink after each export.
pub fn max_lag(name: &str) -> u64 {
    with_log(name, |log| log.max_lag)
}

/// Waits until log `name` holds `event`, for at most `timeout`; whether it does.
pub fn wait_for(name: &str, event: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let found = logs
            .as_ref()
            .and_then(|logs| logs.get(name))
            .is_some_and(|log| log.events.iter().any(|e| e == event));
        let now = Instant::now();
        if found || now >= deadline {
            return found;
        }
        logs = CHANGED
            .wait_timeout(logs, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// What a recording extension's task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Probed: signals readiness after `ready_after`, then runs until shutdown.
    Ready,
    /// Probed: never signals readiness.
    NeverReady,
    /// Probed: returns an error (after `ready_after`) instead of becoming ready.
    FailStart,
    /// Probed: signals readiness, then reports itself degraded and runs until shutdown.
    Degraded,
    /// Probed: signals readiness, then returns an error at once.
    Exit,
    /// Probed: signals readiness, then panics.
    Panic,
    /// Not probed (ready at once): runs until shutdown.
    Background,
    /// No task.
    Passive,
}

/// `config:` of `extension:recorder` and `extension:local_recorder`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderConfig {
    /// The event log.
    pub log: String,
    /// What the task does.
    pub behaviour: Behaviour,
    /// How long the task takes to become ready.
    #[serde(default, with = "humantime_serde")]
    pub ready_after: Option<Duration>,
}

/// The task of a recording extension, the same for both variants.
async fn recorder_task(
    log: String,
    id: String,
    config: RecorderConfig,
    mut control: ExtensionControl,
) -> Result<(), ExtensionError> {
    record(&log, format!("{id}:start"));
    if let Some(delay) = config.ready_after {
        tokio::time::sleep(delay).await;
    }
    match config.behaviour {
        Behaviour::NeverReady | Behaviour::Background | Behaviour::Passive => {}
        Behaviour::FailStart => {
            return Err(ExtensionError::Failed {
                extension: id,
                message: "cannot reach its upstream".into(),
            });
        }
        Behaviour::Ready | Behaviour::Exit | Behaviour::Panic | Behaviour::Degraded => {
            record(&log, format!("{id}:ready"));
            control.set_ready();
        }
    }
    if config.behaviour == Behaviour::Degraded {
        control.set_degraded("its source went away; serving the last good value");
        record(&log, format!("{id}:degraded"));
    }
    match config.behaviour {
        Behaviour::Exit => {
            return Err(ExtensionError::Failed {
                extension: id,
                message: "lost its upstream".into(),
            });
        }
        Behaviour::Panic => panic!("recorder `{id}` panicked on purpose"),
        _ => {}
    }
    while let Some(message) = control.recv().await {
        if let ExtensionMessage::Shutdown { .. } = message {
            record(&log, format!("{id}:stop"));
            return Ok(());
        }
    }
    record(&log, format!("{id}:dropped"));
    Ok(())
}

struct RecorderTask {
    id: String,
    config: RecorderConfig,
}

#[otap_df_core::async_trait(?Send)]
impl LocalTask for RecorderTask {
    async fn run(self: Box<Self>, control: ExtensionControl) -> Result<(), ExtensionError> {
        recorder_task(self.config.log.clone(), self.id, self.config, control).await
    }
}

#[otap_df_core::async_trait]
impl SharedTask for RecorderTask {
    async fn run(self: Box<Self>, control: ExtensionControl) -> Result<(), ExtensionError> {
        recorder_task(self.config.log.clone(), self.id, self.config, control).await
    }
}

fn recorder_task_for(
    context: &ExtensionContext,
    config: RecorderConfig,
) -> (Option<RecorderTask>, Readiness) {
    let readiness = match config.behaviour {
        Behaviour::Background | Behaviour::Passive => Readiness::Immediate,
        _ => Readiness::Probe,
    };
    let task = (config.behaviour != Behaviour::Passive).then(|| RecorderTask {
        id: context.extension_id().to_owned(),
        config,
    });
    (task, readiness)
}

/// `extension:recorder`: shared; a key/value store and a fixed token provider whose task
/// records its lifecycle. It may bind another extension's `key_value_store` (recording
/// `<id>:binds` when it does), and then provides that store as its own.
pub static RECORDER: ExtensionFactory = ExtensionFactory::new("recorder", REGISTRANT)
    .description("test: shared extension that records its lifecycle")
    .provides(&[
        CapabilityId::KeyValueStore,
        CapabilityId::BearerTokenProvider,
    ])
    .consumes(&[CapabilityId::KeyValueStore])
    .validate_config(|config| config.decode::<RecorderConfig>().map(drop))
    .shared(|context, config| {
        let config: RecorderConfig = config.decode()?;
        let bound = context
            .capabilities()
            .optional_shared::<KeyValueStore>()
            .map_err(|error| context.error(error.to_string()))?;
        let store: Arc<dyn shared::KeyValueStore> = match bound {
            Some(bound) => {
                record(&config.log, format!("{}:binds", context.extension_id()));
                bound
            }
            None => Arc::new(SharedMemoryKv::new(
                context.extension_id(),
                &MemoryKvConfig::default(),
            )),
        };
        let token: Arc<dyn shared::BearerTokenProvider> = Arc::new(FixedToken::new("recorded"));
        let builder = context
            .shared_builder()
            .provide::<KeyValueStore>(store)
            .provide::<BearerTokenProvider>(token);
        Ok(match recorder_task_for(context, config) {
            (None, _) => builder.passive()?,
            (Some(task), readiness) => builder.active(Box::new(task), readiness)?,
        })
    })
    .build();

/// `extension:local_recorder`: like `extension:recorder`, local (one instance per core).
pub static LOCAL_RECORDER: ExtensionFactory = ExtensionFactory::new("local_recorder", REGISTRANT)
    .description("test: local extension that records its lifecycle")
    .provides(&[
        CapabilityId::KeyValueStore,
        CapabilityId::BearerTokenProvider,
    ])
    .consumes(&[CapabilityId::KeyValueStore])
    .validate_config(|config| config.decode::<RecorderConfig>().map(drop))
    .local(|context, config| {
        let config: RecorderConfig = config.decode()?;
        let bound = context
            .capabilities()
            .optional_local::<KeyValueStore>()
            .map_err(|error| context.error(error.to_string()))?;
        let store: Rc<dyn local::KeyValueStore> = match bound {
            Some(bound) => {
                record(&config.log, format!("{}:binds", context.extension_id()));
                bound
            }
            None => Rc::new(LocalMemoryKv::new(
                context.extension_id(),
                &MemoryKvConfig::default(),
            )),
        };
        let token = <BearerTokenProvider as otap_df_core::capability::Capability>::shared_as_local(
            Arc::new(FixedToken::new("recorded")),
        );
        let builder = context
            .local_builder()
            .provide::<KeyValueStore>(store)
            .provide::<BearerTokenProvider>(token);
        Ok(match recorder_task_for(context, config) {
            (None, _) => builder.passive()?,
            (Some(task), readiness) => builder.active(Box::new(task), readiness)?,
        })
    })
    .build();

/// `config:` of `extension:flaky_kv`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlakyKvConfig {
    /// How many calls fail with [`KvError::Unavailable`] before the store answers.
    pub fail_first: u64,
}

/// An in-memory store whose first calls fail, as a store does while it is down.
pub struct FlakyKv {
    id: String,
    failures_left: std::cell::Cell<u64>,
    store: LocalMemoryKv,
}

impl FlakyKv {
    fn check(&self) -> Result<(), KvError> {
        let left = self.failures_left.get();
        if left == 0 {
            return Ok(());
        }
        self.failures_left.set(left - 1);
        Err(KvError::Unavailable {
            store: self.id.clone(),
            message: "connection refused".into(),
        })
    }
}

#[otap_df_core::async_trait(?Send)]
impl local::KeyValueStore for FlakyKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.check()?;
        self.store.get(key).await
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.check()?;
        self.store.set(key, value, ttl).await
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        self.check()?;
        self.store.set_if_absent(key, value, ttl).await
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        self.check()?;
        self.store.delete(key).await
    }
}

/// `extension:flaky_kv`: local key/value store that is unavailable for its first calls.
pub static FLAKY_KV: ExtensionFactory = ExtensionFactory::new("flaky_kv", REGISTRANT)
    .description("test: key/value store unavailable for its first calls")
    .provides(&[CapabilityId::KeyValueStore])
    .validate_config(|config| config.decode::<FlakyKvConfig>().map(drop))
    .local(|context, config| {
        let config: FlakyKvConfig = config.decode()?;
        let store: Rc<dyn local::KeyValueStore> = Rc::new(FlakyKv {
            id: context.extension_id().to_owned(),
            failures_left: std::cell::Cell::new(config.fail_first),
            store: LocalMemoryKv::new(context.extension_id(), &MemoryKvConfig::default()),
        });
        Ok(context
            .local_builder()
            .provide::<KeyValueStore>(store)
            .passive()?)
    })
    .build();

/// What a recording source does once it has sent its payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// Returns: the pipeline drains and ends.
    #[default]
    Finish,
    /// Waits for shutdown.
    Wait,
    /// Returns an error.
    Fail,
    /// Panics.
    Panic,
}

/// `config:` of `receiver:recording_source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The event log.
    pub log: String,
    /// Payloads to send (one record each).
    pub count: u64,
    /// Payload `i` has content `i % distinct`: with `distinct < count`, repeats.
    #[serde(default)]
    pub distinct: Option<u64>,
    /// What to do once sent.
    #[serde(default)]
    pub then: Then,
}

struct Source {
    id: String,
    config: SourceConfig,
}

/// `receiver:recording_source`: sends `count` one-record payloads, recording its lifecycle.
/// Claims an optional key/value store and token provider, so extensions bound to it start.
pub static RECORDING_SOURCE: NodeFactory =
    NodeFactory::new(ComponentKind::Receiver, "recording_source", REGISTRANT)
        .description("test: receiver that records its lifecycle")
        .accepts(&[
            CapabilityRequirement::optional(CapabilityId::KeyValueStore),
            CapabilityRequirement::optional(CapabilityId::BearerTokenProvider),
        ])
        .validate_config(|config| config.decode::<SourceConfig>().map(drop))
        .create(create_source);

fn create_source(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config: SourceConfig = config.decode()?;
    capabilities.optional_local::<KeyValueStore>()?;
    capabilities.optional_local::<BearerTokenProvider>()?;
    Ok(NodeInstance::Receiver(Box::new(Source {
        id: context.node_id.clone(),
        config,
    })))
}

#[otap_df_core::async_trait(?Send)]
impl LocalReceiver for Source {
    async fn run(self: Box<Self>, mut context: ReceiverContext) -> Result<(), NodeError> {
        let log = &self.config.log;
        record(log, format!("{}:start", self.id));
        let distinct = self.config.distinct.unwrap_or(u64::MAX).max(1);
        for i in 0..self.config.count {
            if let Some(ControlMessage::Shutdown { .. }) = context.control.try_recv() {
                record(log, format!("{}:shutdown", self.id));
                return Ok(());
            }
            let payload = OtlpPayload::new(
                Signal::Logs,
                Encoding::Protobuf,
                1,
                format!("payload {}", i % distinct).into_bytes(),
            );
            context.outputs.send(payload).await?;
            with_log(log, |l| l.sent += 1);
        }
        record(log, format!("{}:sent {}", self.id, self.config.count));
        match self.config.then {
            Then::Finish => Ok(()),
            Then::Fail => Err(NodeError::Failed {
                node: self.id.clone(),
                message: "failed on purpose".into(),
            }),
            Then::Panic => panic!("source `{}` panicked on purpose", self.id),
            Then::Wait => loop {
                if let ControlMessage::Shutdown { .. } = context.control.recv().await {
                    record(log, format!("{}:shutdown", self.id));
                    return Ok(());
                }
            },
        }
    }
}

/// `config:` of `exporter:recording_sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The event log.
    pub log: String,
    /// How long each export takes.
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Export number (from 1) that returns an error.
    #[serde(default)]
    pub fail_at: Option<u64>,
    /// Export number (from 1) that panics.
    #[serde(default)]
    pub panic_at: Option<u64>,
    /// Leaves a bound key/value store unclaimed.
    #[serde(default)]
    pub ignore_store: bool,
}

struct Sink {
    id: String,
    config: SinkConfig,
    exported: u64,
    records: u64,
    ticked: bool,
}

/// `exporter:recording_sink`: counts what it exports, can be slow, fail or panic; records
/// `<id>:finish <records it exported>` when drained and `<id>:tick` on its first timer tick. Claims an
/// optional key/value store.
pub static RECORDING_SINK: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "recording_sink", REGISTRANT)
        .description("test: exporter that records what it exports")
        .accepts(&[CapabilityRequirement::optional(CapabilityId::KeyValueStore)])
        .validate_config(|config| config.decode::<SinkConfig>().map(drop))
        .create(create_sink);

fn create_sink(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    capabilities: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config: SinkConfig = config.decode()?;
    if !config.ignore_store {
        capabilities.optional_local::<KeyValueStore>()?;
    }
    Ok(NodeInstance::Exporter(Box::new(Sink {
        id: context.node_id.clone(),
        config,
        exported: 0,
        records: 0,
        ticked: false,
    })))
}

#[otap_df_core::async_trait(?Send)]
impl LocalExporter for Sink {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        self.exported += 1;
        if self.config.fail_at == Some(self.exported) {
            record(&self.config.log, format!("{}:fail", self.id));
            return Err(NodeError::Failed {
                node: self.id.clone(),
                message: "failed on purpose".into(),
            });
        }
        if self.config.panic_at == Some(self.exported) {
            record(&self.config.log, format!("{}:panic", self.id));
            panic!("sink `{}` panicked on purpose", self.id);
        }
        if let Some(delay) = self.config.delay {
            tokio::time::sleep(delay).await;
        }
        self.records += data.records();
        with_log(&self.config.log, |log| {
            log.received += data.records();
            log.max_lag = log.max_lag.max(log.sent.saturating_sub(log.received));
        });
        Ok(())
    }

    async fn control(&mut self, message: ControlMessage) -> Result<(), NodeError> {
        if matches!(message, ControlMessage::TimerTick) && !self.ticked {
            self.ticked = true;
            record(&self.config.log, format!("{}:tick", self.id));
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        record(
            &self.config.log,
            format!("{}:finish {}", self.id, self.records),
        );
        Ok(())
    }
}

/// Registers the recording components in `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&RECORDER);
    registry.register_extension(&LOCAL_RECORDER);
    registry.register_extension(&FLAKY_KV);
    registry.register_node(&RECORDING_SOURCE);
    registry.register_node(&RECORDING_SINK);
}

/// A registry with core's built-in extensions, the fixtures and the recording components;
/// `more` adds what a test needs besides (the built-in nodes, an extension crate).
pub fn registry_with(more: impl FnOnce(&mut Registry)) -> Registry {
    let mut registry = Registry::new();
    otap_df_core::register_builtins(&mut registry);
    more(&mut registry);
    crate::fixtures::register(&mut registry);
    register(&mut registry);
    match registry.finish() {
        Ok(registry) => registry,
        Err(error) => panic!("recording registry: {error}"),
    }
}

/// [`registry_with`] nothing more.
pub fn registry() -> Registry {
    registry_with(|_| {})
}
