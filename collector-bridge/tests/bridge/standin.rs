//! The stand-in Collector of the C ABI tests: the Go side's part played in Rust — the pump
//! taking events, each delivery recorded and answered as the component's mode says, each
//! call's answer kept for the test that waits on it — and the C ABI's calls wrapped.

use std::collections::HashMap;
use std::ffi::{CStr, c_char};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use otap_df_collector_bridge::ffi::{self, ACCEPTED};

use crate::support;

/// What the stand-in Collector does with what a component hands it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Accept,
    Refuse(i32),
    /// Keep the completion unanswered (in `held`) until the test answers it.
    Hold,
}

#[derive(Default)]
pub(crate) struct Collector {
    pub(crate) modes: HashMap<u64, Mode>,
    /// (handle, signal, bytes) of every payload handed over.
    pub(crate) received: Vec<(u64, u32, Vec<u8>)>,
    /// (handle, identity JSON) of every payload handed over with its sender.
    pub(crate) senders: Vec<(u64, String)>,
    /// Tokens of borrowed bytes released after their call returned.
    pub(crate) released: Vec<u64>,
    /// Completions kept unanswered (`Mode::Hold`), by handle.
    pub(crate) held: HashMap<u64, Vec<u64>>,
    /// Outcomes of submitted payloads, by token: status, why, released with the answer.
    pub(crate) answers: HashMap<u64, (i32, String, bool)>,
    /// Components whose engine ended by itself, by handle: why.
    pub(crate) ended: HashMap<u64, String>,
}

static COLLECTOR: OnceLock<Mutex<Collector>> = OnceLock::new();
static ANSWERED: Condvar = Condvar::new();

pub(crate) fn collector() -> MutexGuard<'static, Collector> {
    COLLECTOR
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A payload for component `handle`'s next consumer: recorded, then answered as the
/// component's mode says (on another thread, as the Go side answers from a goroutine).
fn deliver(handle: u64, signal: u32, bytes: &[u8], completion: u64) {
    let mode = {
        let mut collector = collector();
        collector.received.push((handle, signal, bytes.to_vec()));
        let mode = collector
            .modes
            .get(&handle)
            .copied()
            .unwrap_or(Mode::Accept);
        if mode == Mode::Hold {
            collector.held.entry(handle).or_default().push(completion);
            return;
        }
        mode
    };
    std::thread::spawn(move || {
        let (status, why) = match mode {
            Mode::Accept | Mode::Hold => (ACCEPTED, ""),
            Mode::Refuse(status) => (status, "refused by the stand-in"),
        };
        // SAFETY: a completion a delivery carried, answered once.
        unsafe { ffi::otapdf_complete(completion, status, why.as_ptr(), why.len(), 0) };
    });
}

/// What the stand-in Collector does with one event.
fn on_event(event: &ffi::CEvent, bytes: &[u8]) {
    match event.kind {
        0 => {
            if !event.identity.is_null() {
                // SAFETY: the event's identity bytes, valid while the batch is held.
                let identity =
                    unsafe { std::slice::from_raw_parts(event.identity, event.identity_len) };
                collector()
                    .senders
                    .push((event.id, String::from_utf8_lossy(identity).into_owned()));
            }
            deliver(event.id, event.signal, bytes, event.completion);
        }
        1 => {
            let why = String::from_utf8_lossy(bytes).into_owned();
            collector()
                .answers
                .insert(event.id, (event.status, why, event.released == 1));
            ANSWERED.notify_all();
        }
        2 => collector().released.push(event.id),
        _ => {
            let why = String::from_utf8_lossy(bytes).into_owned();
            collector().ended.insert(event.id, why);
        }
    }
}

fn init() {
    static PUMP: OnceLock<()> = OnceLock::new();
    PUMP.get_or_init(|| support::start_pump(on_event));
}

/// Takes a string the bridge handed out.
pub(crate) fn take(text: *mut c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: a string from the bridge, freed once below.
    let owned = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above.
    unsafe { ffi::otapdf_free(text) };
    Some(owned)
}

pub(crate) const EXTENSION: u32 = 0;
pub(crate) const RECEIVER: u32 = 1;
pub(crate) const PROCESSOR: u32 = 2;
pub(crate) const EXPORTER: u32 = 3;

pub(crate) fn start(role: u32, config: &str, handle: u64) -> Result<u64, String> {
    init();
    let mut id = 0;
    // SAFETY: valid pointers for the call.
    let error = unsafe { ffi::otapdf_start(role, config.as_ptr(), config.len(), handle, &mut id) };
    match take(error) {
        None => Ok(id),
        Some(error) => Err(error),
    }
}

pub(crate) fn started(role: u32, config: &str, handle: u64) -> u64 {
    start(role, config, handle).unwrap_or_else(|e| panic!("the component did not start: {e}"))
}

pub(crate) fn stop(id: u64) {
    if let Some(error) = take(ffi::otapdf_stop(id)) {
        panic!("the component did not stop cleanly: {error}");
    }
}

pub(crate) fn validate(role: u32, config: &str) -> Option<String> {
    // SAFETY: valid pointers for the call.
    take(unsafe { ffi::otapdf_validate(role, config.as_ptr(), config.len()) })
}

/// Hands `bytes` to component `id` and waits (bounded) for the outcome: the status, whether
/// the bytes were released by then, and why when refused. `token` must be unique in the test
/// binary.
pub(crate) fn consume_bytes(
    id: u64,
    signal: u32,
    bytes: &[u8],
    token: u64,
) -> (i32, bool, Option<String>) {
    consume_as(id, signal, bytes, token, "")
}

/// [`consume_bytes`] with who sent it (`identity`: JSON; empty: `otapdf_submit`).
pub(crate) fn consume_as(
    id: u64,
    signal: u32,
    bytes: &[u8],
    token: u64,
    identity: &str,
) -> (i32, bool, Option<String>) {
    let mut message = std::ptr::null_mut();
    let mut wake = 0;
    // SAFETY: the bytes outlive the call; a test keeps them alive (leaked) when the bridge
    // may still hold them after the answer.
    let queued = unsafe {
        if identity.is_empty() {
            ffi::otapdf_submit(
                id,
                signal,
                bytes.as_ptr(),
                bytes.len(),
                u64::MAX,
                token,
                &mut wake,
                &mut message,
            )
        } else {
            ffi::otapdf_submit_as(
                id,
                signal,
                bytes.as_ptr(),
                bytes.len(),
                u64::MAX,
                token,
                identity.as_ptr(),
                identity.len(),
                &mut wake,
                &mut message,
            )
        }
    };
    if queued != ACCEPTED {
        // Refused now: the bytes are released, nothing is owed.
        assert_eq!(wake, 0, "a refusal owes no wake-up");
        return (queued, true, take(message));
    }
    // SAFETY: the wake-up it said was owed, given once.
    unsafe { ffi::otapdf_wake(wake, 0) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut collector = collector();
    loop {
        if let Some((status, why, released)) = collector.answers.remove(&token) {
            return (status, released, (status != ACCEPTED).then_some(why));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no answer for token {token}");
        collector = ANSWERED
            .wait_timeout(collector, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
