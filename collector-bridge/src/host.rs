//! The components the Collector started: each an otap-df engine on a thread of its own, found
//! by the id the C ABI hands the Go side.
//!
//! A component's engine runs the document [`fragment::build`] wrote. Its bridge nodes find
//! the component by the id in their `config`: the inlet takes what [`submit`] queues, the
//! outlet hands payloads to the Go side through [`crate::ffi`], the capability holder stores
//! what an extension component grants.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use otap_df::Registry;
use otap_df::core::capability::shared;
use otap_df::core::data::{NotAccepted, OtlpPayload};
use otap_df::core::resolve::{ResolvedConfig, load_with_env};
use otap_df::core::runtime::{Engine, RunOptions, RunPhase, ShutdownHandle, Telemetry};
use tokio::sync::{Semaphore, oneshot};

use crate::fragment::{self, Role};
pub use crate::mailbox::Wake;
use crate::mailbox::{Mailbox, Rejected};

/// Why the bridge did not take, or did not deliver, a payload — as the Collector's consumer
/// errors say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Send it again later (the Collector's retryable error): a full queue between the
    /// runtimes, a durable queue at its cap, a node that failed, a component stopping.
    Retryable(String),
    /// Sending it again cannot help (`consumererror.NewPermanent`): it is not OTLP.
    Permanent(String),
}

impl From<NotAccepted> for Refusal {
    fn from(why: NotAccepted) -> Self {
        Refusal::Retryable(why.to_string())
    }
}

/// A payload the Collector handed a component, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) payload: OtlpPayload,
    pub(crate) reply: Reply,
}

/// What tells a payload's outcome.
type Deliver = Box<dyn FnOnce(Result<(), Refusal>) + Send>;

/// Where an outcome goes: told exactly once — a payload's to the Collector's caller, or the
/// next consumer's answer to what settles a payload the outlet handed over. Dropped untold, it
/// tells why, retryable: the component stopped with the payload queued, or the answer never
/// came.
pub struct Reply {
    deliver: Option<Deliver>,
    untold: Untold,
}

/// Why a reply dropped untold was not told.
enum Untold {
    /// The component stopped (its engine ended, how when it says).
    Stopped(Arc<OnceLock<String>>),
    /// The Collector's next consumer never answered.
    AnswerDropped,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("told", &self.deliver.is_none())
            .finish()
    }
}

impl Reply {
    /// What settles a payload the outlet handed over, with the next consumer's answer.
    pub(crate) fn settling(settle: impl FnOnce(Result<(), Refusal>) + Send + 'static) -> Self {
        Reply {
            deliver: Some(Box::new(settle)),
            untold: Untold::AnswerDropped,
        }
    }

    /// Tells `outcome`.
    pub(crate) fn send(mut self, outcome: Result<(), Refusal>) {
        if let Some(deliver) = self.deliver.take() {
            deliver(outcome);
        }
    }

    /// Will tell nothing (the caller was answered otherwise).
    fn disarm(mut self) {
        self.deliver = None;
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(deliver) = self.deliver.take() {
            deliver(Err(Refusal::Retryable(match &self.untold {
                Untold::Stopped(ended) => stopped(ended),
                Untold::AnswerDropped => "the Collector dropped the payload's answer".to_owned(),
            })));
        }
    }
}

fn stopped(ended: &OnceLock<String>) -> String {
    match ended.get() {
        Some(why) => format!("the otapdf component's engine ended: {why}"),
        None => "the otapdf component stopped before the payload was accepted".to_owned(),
    }
}

/// What an extension component's instance grants the Collector.
#[derive(Default, Clone)]
pub(crate) struct Granted {
    pub(crate) authorizer: Option<Arc<dyn shared::BearerTokenAuthorizer>>,
    pub(crate) provider: Option<Arc<dyn shared::BearerTokenProvider>>,
}

/// One running component.
pub(crate) struct Host {
    pub(crate) role: Role,
    /// The Go side's handle of the component: what the outlet names when it hands data over.
    pub(crate) go_handle: u64,
    /// The inlet's queue (`queue_size`), which every core's inlet node takes from.
    pub(crate) inlet: Option<Arc<Mailbox<Inbound>>>,
    /// Payloads handed to the Go side and not yet answered, across cores (`queue_size`).
    pub(crate) outlet_room: Arc<Semaphore>,
    pub(crate) queue_size: usize,
    pub(crate) granted: Mutex<Granted>,
    /// Set when the engine ended (stopped, or a node failed): how.
    ended: Arc<OnceLock<String>>,
    /// Set when the Collector asked it to stop.
    stopping: std::sync::atomic::AtomicBool,
    shutdown: ShutdownHandle,
    telemetry: Arc<Telemetry>,
    thread: Mutex<Option<std::thread::JoinHandle<Result<(), otap_df::core::runtime::EngineError>>>>,
}

/// The running components, by id: read on every call (readers never wait for each other),
/// written as components start and stop.
fn hosts() -> &'static RwLock<BTreeMap<u64, Arc<Host>>> {
    static HOSTS: OnceLock<RwLock<BTreeMap<u64, Arc<Host>>>> = OnceLock::new();
    HOSTS.get_or_init(RwLock::default)
}

/// The running component `id`.
pub(crate) fn host(id: u64) -> Option<Arc<Host>> {
    hosts()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .cloned()
}

/// How many components run now.
pub fn running() -> usize {
    hosts().read().unwrap_or_else(PoisonError::into_inner).len()
}

fn registry() -> Result<&'static Registry, String> {
    static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| crate::registry().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

fn resolve(
    role: Role,
    id: u64,
    config: &str,
) -> Result<(fragment::Fragment, ResolvedConfig), String> {
    let registry = registry()?;
    let fragment = fragment::build(role, id, config, registry)?;
    let resolved = load_with_env(&fragment.text, "the component", registry, &|name| {
        std::env::var(name).ok()
    })
    .map_err(|errors| fragment::located(role, &errors))?;
    Ok((fragment, resolved))
}

/// Checks a component's configuration as `start` would, starting nothing.
pub fn validate(role: Role, config: &str) -> Result<(), String> {
    resolve(role, 0, config).map(drop)
}

/// Starts a component of `role` with the Collector configuration `config`; `go_handle` is
/// what its outlet names to the Go side. Returns once its engine runs (every extension
/// ready, every node built), with the component's id.
pub fn start(role: Role, config: &str, go_handle: u64) -> Result<u64, String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let (fragment, resolved) = resolve(role, id, config)?;
    // An extension component's pipeline has an inlet too, which nothing feeds: the source
    // that keeps its capability holder running.
    let inlet = (role.has_inlet() || role == Role::Extension)
        .then(|| Arc::new(Mailbox::new(fragment.queue_size)));
    let engine = Engine::new(
        resolved,
        RunOptions {
            cores: Some(fragment.cores),
            // `queue_size` bounds every queue of the component, not only the inlet's: what
            // the Collector waits on is at most a few `queue_size`s per node.
            channel_capacity: fragment.queue_size,
            ..RunOptions::default()
        },
    );
    let host = Arc::new(Host {
        role,
        go_handle,
        inlet,
        outlet_room: Arc::new(Semaphore::new(fragment.queue_size)),
        queue_size: fragment.queue_size,
        granted: Mutex::default(),
        ended: Arc::default(),
        stopping: std::sync::atomic::AtomicBool::new(false),
        shutdown: engine.shutdown_handle(),
        telemetry: engine.telemetry(),
        thread: Mutex::new(None),
    });
    hosts()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, host.clone());
    let watched = host.clone();
    let thread = std::thread::Builder::new()
        .name(format!("otapdf-bridge-{id}"))
        .spawn(move || {
            let result = engine.run();
            // Whatever way it ended, nothing takes from the inlet any more: calls queued and
            // to come are answered at once.
            let _ = watched.ended.set(match &result {
                Ok(()) => "it stopped".to_owned(),
                Err(error) => error.to_string(),
            });
            watched.close_inlet();
            // Ended by itself, running: the Collector's side learns it (status, log).
            if !watched.stopping.load(Ordering::Acquire)
                && watched.go_handle != 0
                && let Some(how) = watched.ended.get()
            {
                crate::events::push(crate::events::Event::Ended {
                    handle: watched.go_handle,
                    message: how.clone(),
                });
            }
            result
        });
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => {
            forget(id);
            return Err(format!("cannot start the component's engine thread: {e}"));
        }
    };
    // Readiness: the engine bounds its own start (each extension's `startup_timeout`), so
    // this wait ends when it runs, fails or ends.
    while matches!(host.telemetry.phase(), RunPhase::Starting) && !thread.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if matches!(host.telemetry.phase(), RunPhase::Running) && !thread.is_finished() {
        *host.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        return Ok(id);
    }
    forget(id);
    host.shutdown.request();
    let ended = thread.join();
    Err(match ended {
        Ok(Err(error)) => format!("the component did not start: {error}"),
        Ok(Ok(())) => "the component ended as it started".to_owned(),
        Err(_) => "the component's engine panicked as it started".to_owned(),
    })
}

impl Host {
    /// Closes the inlet's queue and answers what it still held (stopped, send it again).
    fn close_inlet(&self) {
        if let Some(inlet) = &self.inlet {
            drop(inlet.close());
        }
    }
}

fn forget(id: u64) -> Option<Arc<Host>> {
    hosts()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id)
}

/// Component `id`'s engine metrics as JSON, what the Collector's side reports as its own
/// telemetry: each node's record counts and own counters (summed over its cores), each
/// extension's counters and gauges.
///
/// `{"nodes": [{"pipeline", "node", "records_in", "records_out", "records_dropped",
/// "records_failed", "errors", "counters": {name: value}}], "extensions": [{"pipeline",
/// "extension", "core", "counters": {...}, "gauges": {...}}]}`
pub fn metrics(id: u64) -> Result<String, String> {
    let host = host(id).ok_or_else(|| format!("no component {id} runs"))?;
    let nodes: Vec<serde_json::Value> = host
        .telemetry
        .node_totals()
        .into_iter()
        .map(|totals| {
            serde_json::json!({
                "pipeline": totals.pipeline,
                "node": totals.node,
                "records_in": totals.counts.records_in,
                "records_out": totals.counts.records_out,
                "records_dropped": totals.counts.records_dropped,
                "records_failed": totals.counts.records_failed,
                "errors": totals.counts.errors,
                "counters": by_name(&totals.named),
            })
        })
        .collect();
    let extensions: Vec<serde_json::Value> = host
        .telemetry
        .extension_metrics()
        .into_iter()
        .map(|of| {
            serde_json::json!({
                "pipeline": of.pipeline,
                "extension": of.extension,
                "core": of.core,
                "counters": by_name(&of.metrics.counters),
                "gauges": by_name(&of.metrics.gauges),
            })
        })
        .collect();
    Ok(serde_json::json!({ "nodes": nodes, "extensions": extensions }).to_string())
}

/// Named values as a JSON object.
fn by_name<V: Copy + Into<serde_json::Value>>(
    values: &[(&'static str, V)],
) -> serde_json::Map<String, serde_json::Value> {
    values
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).into()))
        .collect()
}

/// Stops component `id` gracefully: its receivers stop taking, what it holds drains (within
/// the engine's shutdown timeout), its extensions stop. Returns once its threads are gone.
pub fn stop(id: u64) -> Result<(), String> {
    let Some(host) = forget(id) else {
        return Err(format!("no component {id} runs"));
    };
    host.stopping.store(true, Ordering::Release);
    host.shutdown.request();
    let thread = host
        .thread
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let ended = thread.map(std::thread::JoinHandle::join);
    host.close_inlet();
    match ended {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(error))) => Err(format!("the component stopped with errors: {error}")),
        Some(Err(_)) => Err("the component's engine panicked while stopping".to_owned()),
    }
}

/// Hands `payload` to component `id`; `deliver` is told its outcome, exactly once: accepted
/// (by the node that settles acknowledgements — the outlet, once the Collector's next
/// consumer took it; a durable queue, once on disk — or else as the fragment's exporters take
/// it) or refused. What cannot be queued — a full queue (`queue_size`), a component that is
/// not running, one that takes no data — is refused at once, here, and `deliver` is not told.
///
/// Queued, it returns the [`Wake`] its inlet is owed when it was asleep: dropping it wakes
/// the inlet; a caller that has more to queue first may hold it a moment.
pub fn submit(
    id: u64,
    payload: OtlpPayload,
    deliver: impl FnOnce(Result<(), Refusal>) + Send + 'static,
) -> Result<Wake, Refusal> {
    let Some(host) = host(id) else {
        return Err(Refusal::Retryable(format!(
            "otapdf component {id} is not running"
        )));
    };
    let Some(inlet) = host.inlet.as_ref().filter(|_| host.role.has_inlet()) else {
        return Err(Refusal::Permanent(format!(
            "an otapdf {:?} component takes no data",
            host.role
        )));
    };
    let reply = Reply {
        deliver: Some(Box::new(deliver)),
        untold: Untold::Stopped(host.ended.clone()),
    };
    match inlet.offer(Inbound { payload, reply }) {
        Ok(wake) => Ok(wake),
        Err(Rejected::Full(inbound)) => {
            inbound.reply.disarm();
            Err(Refusal::Retryable(format!(
                "the otapdf component's queue is full (queue_size {})",
                host.queue_size
            )))
        }
        Err(Rejected::Closed(inbound)) => {
            inbound.reply.disarm();
            Err(Refusal::Retryable(match host.ended.get() {
                Some(why) => format!("the otapdf component's engine ended: {why}"),
                None => "the otapdf component is stopping".to_owned(),
            }))
        }
    }
}

/// [`submit`], waiting on the calling thread for the outcome (not a thread of a Tokio runtime).
pub fn consume(id: u64, payload: OtlpPayload) -> Result<(), Refusal> {
    let (answer, outcome) = oneshot::channel();
    drop(submit(id, payload, move |result| {
        let _ = answer.send(result);
    })?);
    outcome.blocking_recv().unwrap_or_else(|_| {
        Err(Refusal::Retryable(
            "the otapdf component dropped the payload's answer".to_owned(),
        ))
    })
}

/// What an extension component grants; `None` when it is not running.
pub(crate) fn granted(id: u64) -> Option<Granted> {
    host(id).map(|h| {
        h.granted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_settling_reply_is_told_once_and_one_dropped_untold_tells_dropped_retryable() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let record = |told: &Arc<Mutex<Vec<Result<(), Refusal>>>>| {
            let told = told.clone();
            Reply::settling(move |outcome| told.lock().unwrap().push(outcome))
        };
        record(&told).send(Ok(()));
        drop(record(&told));
        assert_eq!(
            *told.lock().unwrap(),
            [
                Ok(()),
                Err(Refusal::Retryable(
                    "the Collector dropped the payload's answer".to_owned()
                ))
            ]
        );
    }
}
