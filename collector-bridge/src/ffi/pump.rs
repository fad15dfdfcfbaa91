//! What crosses from Rust to Go and back through the Go side's pump: the events it takes in
//! batches ([`otapdf_events_fd`], [`otapdf_events`], [`otapdf_events_done`]) — deliveries,
//! answers, releases, endings — the answers it gives to deliveries ([`otapdf_complete`]) and
//! the wake-ups it owes the engine ([`otapdf_wake`]).

use std::sync::Arc;

use bytes::Bytes;
use otap_df::core::capability::Identity;
use otap_df::core::data::Signal;
use tokio::sync::Notify;

use super::{ACCEPTED, PERMANENT, bytes_at, guarded, identity_json, signal_code};
use crate::events::{self, Event};
use crate::host::{Refusal, Reply};

/// Hands the Go side a payload for component `handle`'s next consumer; its answer settles
/// it through `settle`, where the answer comes ([`otapdf_complete`]).
pub(crate) fn hand_over(
    handle: u64,
    signal: Signal,
    bytes: Bytes,
    identity: Option<&Identity>,
    settle: Reply,
) {
    let completion = Box::into_raw(Box::new(settle)) as u64;
    events::push(Event::Deliver {
        handle,
        signal: signal_code(signal),
        bytes,
        completion,
        identity: identity.map(identity_json),
    });
}

/// Answers a payload a delivery event handed over: `status` [`ACCEPTED`],
/// [`RETRYABLE`](super::RETRYABLE) or [`PERMANENT`], with why in `message` (`len` bytes
/// of UTF-8, may be null). It is settled here, on the caller's thread: what waited for it
/// (the acknowledgement the outlet holds, and down the chain of nodes that forward theirs,
/// a processor's caller) learns it now, and no thread of the engine is woken unless one of
/// its tasks waits for it. `look` not 0: the caller has the pump take events after this
/// call, so what the settlement queues writes no wake-up byte (see [`otapdf_wake`]).
///
/// # Safety
/// `completion` is one a delivery event carried, not answered before; `message`
/// points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_complete(
    completion: u64,
    status: i32,
    message: *const u8,
    len: usize,
    look: i32,
) {
    if completion == 0 {
        return;
    }
    if look != 0 {
        events::looking();
    }
    // SAFETY: the caller's contract: a pointer `hand_over` leaked, answered once.
    let settle = *unsafe { Box::from_raw(completion as *mut Reply) };
    // SAFETY: the caller's contract, for the duration of the call.
    let why = String::from_utf8_lossy(unsafe { bytes_at(message, len) }).into_owned();
    let outcome = match status {
        ACCEPTED => Ok(()),
        PERMANENT => Err(Refusal::Permanent(why)),
        _ => Err(Refusal::Retryable(why)),
    };
    // The settlement runs the outlet's and what it forwards to on the Go side's thread: a
    // panic in it stops at the boundary, never unwinding into Go.
    let _ = guarded(|| {
        settle.send(outcome);
        Ok(())
    });
}

/// What one event looks like to the Go side (`otapdf_event` in the header).
#[repr(C)]
pub struct CEvent {
    /// 0 delivery, 1 answer, 2 release, 3 an engine ended by itself.
    pub kind: u32,
    /// A delivery's signal (0 logs, 1 traces, 2 metrics).
    pub signal: u32,
    /// A delivery's or an ending's component handle; an answer's or a release's token.
    pub id: u64,
    /// A delivery's completion, for [`otapdf_complete`].
    pub completion: u64,
    /// A delivery's bytes; an answer's or an ending's message (UTF-8).
    pub data: *const u8,
    /// Their length.
    pub len: usize,
    /// An answer's status.
    pub status: i32,
    /// An answer's: 1 when the bytes are released already.
    pub released: i32,
    /// A delivery's sender, when known: JSON as `otapdf_authorize` gives it (null, 0: none).
    pub identity: *const u8,
    /// Its length.
    pub identity_len: usize,
}

/// Gives a wake-up [`otapdf_submit`](super::otapdf_submit) said the caller owed (`ticket`,
/// not 0): the engine's inlet, asleep, takes what was queued meanwhile. `look` not 0: the
/// caller has the pump take events after this call, so what the engine queues until then
/// writes no wake-up byte — where the engine's thread runs as soon as it is woken (on the
/// caller's CPU, as in a Collector pinned to one), its deliveries are queued by then; where
/// it runs later, the take finds nothing and the engine's events wake the pump.
///
/// # Safety
/// `ticket` is one of those, given once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_wake(ticket: u64, look: i32) {
    if ticket == 0 {
        return;
    }
    if look != 0 {
        events::looking();
    }
    // SAFETY: the caller's contract: a strong count `Wake::into_ticket` leaked, taken once.
    let woken = unsafe { Arc::from_raw(ticket as *const Notify) };
    woken.notify_one();
}

/// A batch of events the Go side works on, kept until [`otapdf_events_done`].
struct Batch {
    /// What the view points into (held, never read here).
    _events: Vec<Event>,
    view: Vec<CEvent>,
}

/// The socket the Go side waits on for events (a byte arrives when there are new ones),
/// given once: the Go side owns it; later calls return -1.
#[unsafe(no_mangle)]
pub extern "C" fn otapdf_events_fd() -> i32 {
    use std::os::fd::IntoRawFd;
    guarded(|| Ok(events::take_reader().map_or(-1, IntoRawFd::into_raw_fd))).unwrap_or(-1)
}

/// Takes every queued event: `*events` points to `*count` of them, valid until
/// [`otapdf_events_done`] with the returned batch.
///
/// # Safety
/// `events` and `count` point to writable values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_events(events: *mut *const CEvent, count: *mut usize) -> u64 {
    let taken = events::take();
    let view = taken
        .iter()
        .map(|event| match event {
            Event::Deliver {
                handle,
                signal,
                bytes,
                completion,
                identity,
            } => CEvent {
                kind: 0,
                signal: *signal,
                id: *handle,
                completion: *completion,
                data: bytes.as_ptr(),
                len: bytes.len(),
                status: 0,
                released: 0,
                identity: identity.as_ref().map_or(std::ptr::null(), |i| i.as_ptr()),
                identity_len: identity.as_ref().map_or(0, String::len),
            },
            Event::Answer {
                token,
                status,
                message,
                released,
            } => CEvent {
                kind: 1,
                signal: 0,
                id: *token,
                completion: 0,
                data: message.as_ptr(),
                len: message.len(),
                status: *status,
                released: i32::from(*released),
                identity: std::ptr::null(),
                identity_len: 0,
            },
            Event::Ended { handle, message } => CEvent {
                kind: 3,
                signal: 0,
                id: *handle,
                completion: 0,
                data: message.as_ptr(),
                len: message.len(),
                status: 0,
                released: 0,
                identity: std::ptr::null(),
                identity_len: 0,
            },
            Event::Release { token } => CEvent {
                kind: 2,
                signal: 0,
                id: *token,
                completion: 0,
                data: std::ptr::null(),
                len: 0,
                status: 0,
                released: 0,
                identity: std::ptr::null(),
                identity_len: 0,
            },
        })
        .collect::<Vec<_>>();
    let batch = Box::new(Batch {
        _events: taken,
        view,
    });
    if !events.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *events = batch.view.as_ptr() };
    }
    if !count.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *count = batch.view.len() };
    }
    Box::into_raw(batch) as u64
}

/// Gives back a batch [`otapdf_events`] returned: its bytes and messages may go.
///
/// # Safety
/// `batch` came from [`otapdf_events`] and is given back once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn otapdf_events_done(batch: u64) {
    if batch != 0 {
        // SAFETY: the caller's contract: made by `Box::into_raw` in `otapdf_events`.
        drop(unsafe { Box::from_raw(batch as *mut Batch) });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use otap_df::core::data::Signal;

    use super::*;
    use crate::fragment::Role;
    use crate::host;

    #[test]
    fn an_answer_settles_a_processors_caller_before_otapdf_complete_returns() {
        // Without nodes, and through dedup, which forwards the acknowledgement.
        let dedup = r#"{"extensions": {"seen": {"type": "extension:memory_kv"}},
            "nodes": {"dedup": {"type": "processor:dedup",
                                "capabilities": {"key_value_store": "seen"}}}}"#;
        let _one = crate::events::tests::ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (handle, config) in [(7, "{}"), (8, dedup)] {
            let id = host::start(Role::Processor, config, handle).expect("started");
            let told = Arc::new(Mutex::new(None));
            let outcome = told.clone();
            let payload = otap_df::nodes::otlp::synthetic(Signal::Logs, 10, "a", 1);
            drop(
                host::submit(id, payload, move |result| {
                    *outcome.lock().unwrap() = Some(result);
                })
                .expect("queued"),
            );
            // The delivery for the next consumer (this test stands in for the Go side's pump).
            let deadline = Instant::now() + Duration::from_secs(10);
            let completion = loop {
                let delivered = events::take().into_iter().find_map(|event| match event {
                    Event::Deliver {
                        handle: to,
                        completion,
                        ..
                    } if to == handle => Some(completion),
                    _ => None,
                });
                if let Some(completion) = delivered {
                    break completion;
                }
                assert!(Instant::now() < deadline, "nothing was delivered");
                std::thread::yield_now();
            };
            assert!(
                told.lock().unwrap().is_none(),
                "{config}: told before the answer"
            );
            // SAFETY: the completion the delivery carried, answered once.
            unsafe { otapdf_complete(completion, ACCEPTED, std::ptr::null(), 0, 0) };
            // Settled on this thread, down to the caller: nothing of the engine ran for it.
            assert_eq!(*told.lock().unwrap(), Some(Ok(())), "{config}");
            host::stop(id).expect("stopped");
        }
    }
}
