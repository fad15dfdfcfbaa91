//! What the Rust side tells the Go side, queued: payloads for a component's next consumer,
//! outcomes of submitted payloads, borrowed bytes released.
//!
//! The Go side never runs on a Rust thread: a pump goroutine waits on a socket (Go's own
//! poller, so it parks like any goroutine waiting for the network), takes every queued event
//! in one C call and hands the batch back when it is done with it. One wake-up byte is
//! written when the queue goes from empty to not empty; events that come while the pump
//! works on a batch ride along with the next. An engine thread that calls into Go instead
//! would have to win one of the Go scheduler's processors for every call — with
//! `GOMAXPROCS=1`, the one the Collector's goroutines hold — and wait for it.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock, PoisonError};

use bytes::Bytes;

/// One event for the Go side.
#[derive(Debug)]
pub(crate) enum Event {
    /// A payload for the next consumer of component `handle` (the Go side's handle); the
    /// outcome goes back through `otapdf_complete` with `completion`.
    Deliver {
        handle: u64,
        signal: u32,
        bytes: Bytes,
        completion: u64,
        /// Who sent it (the identity's JSON, as `otapdf_authorize` gives it), when known.
        identity: Option<String>,
    },
    /// The outcome of the payload submitted with `token`; whether its bytes are released.
    Answer {
        token: u64,
        status: i32,
        message: String,
        released: bool,
    },
    /// The bytes submitted with `token` are no longer referenced.
    Release { token: u64 },
    /// The engine of component `handle` ended by itself (a node failed), not stopped.
    Ended { handle: u64, message: String },
}

struct Queue {
    events: Mutex<Vec<Event>>,
    /// The end the wake-up bytes are written to (non-blocking: a full socket already holds
    /// a wake-up).
    wake: UnixStream,
    /// The end the Go side reads, until it takes it.
    read: Mutex<Option<UnixStream>>,
}

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        // Without a socket pair nothing can cross: the first caller's C call reports the
        // panic as its error (every C function catches panics), a node's fails the node.
        let (wake, read) = UnixStream::pair()
            .unwrap_or_else(|e| panic!("the Collector bridge cannot create its event socket: {e}"));
        let _ = wake.set_nonblocking(true);
        Queue {
            events: Mutex::new(Vec::new()),
            wake,
            read: Mutex::new(Some(read)),
        }
    })
}

/// Queues `event` for the Go side, waking its pump when the queue was empty.
pub(crate) fn push(event: Event) {
    push_with(|| Some(event));
}

/// Queues the event `make` decides on, if any, deciding under the queue's lock: two threads
/// that each decide on an event from one shared state (an answer, a release) queue them in
/// the order they decided.
pub(crate) fn push_with(make: impl FnOnce() -> Option<Event>) {
    let queue = queue();
    let mut events = queue.events.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(event) = make() else {
        return;
    };
    let was_empty = events.is_empty();
    events.push(event);
    drop(events);
    if was_empty {
        // A full socket already holds a wake-up; any other error leaves nothing to do.
        let _ = (&queue.wake).write(&[1]);
    }
}

/// Every queued event, in order.
pub(crate) fn take() -> Vec<Event> {
    std::mem::take(
        &mut *queue()
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    )
}

/// The reading end of the wake-up socket, once (later calls get `None`).
pub(crate) fn take_reader() -> Option<UnixStream> {
    queue()
        .read
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}
