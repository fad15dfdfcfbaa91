//! What the Rust side tells the Go side, queued: payloads for a component's next consumer,
//! outcomes of submitted payloads, borrowed bytes released.
//!
//! The Go side never runs on a Rust thread: a pump goroutine takes every queued event in one
//! C call and hands the batch back when it is done with it. It takes when kicked: by a
//! goroutine that waits on a socket (Go's own poller, so it parks like any goroutine waiting
//! for the network), to which one wake-up byte is written when the queue goes from empty to
//! not empty — events that come while the pump works on a batch ride along with the next —
//! or by a goroutine that is about to have it take anyway: one that gave the engine a
//! wake-up, or answered a delivery (whose settlement queues events on its own thread). Such
//! a goroutine says so first ([`looking`]); until the pump's next take, no byte is written
//! (a write, and on the Go side a poll and two reads, saved). An engine thread that calls
//! into Go instead would have to win one of the Go scheduler's processors for every call —
//! with `GOMAXPROCS=1`, the one the Collector's goroutines hold — and wait for it.

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
    events: Mutex<Pending>,
    /// The end the wake-up bytes are written to (non-blocking: a full socket already holds
    /// a wake-up).
    wake: UnixStream,
    /// The end the Go side reads, until it takes it.
    read: Mutex<Option<UnixStream>>,
}

/// What the queue holds.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    /// The Go side has its pump take before long ([`looking`]): no wake-up byte is needed.
    looked_for: bool,
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
            events: Mutex::default(),
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
    let mut pending = queue.events.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(event) = make() else {
        return;
    };
    let wake = pending.events.is_empty() && !pending.looked_for;
    pending.events.push(event);
    drop(pending);
    if wake {
        // A full socket already holds a wake-up; any other error leaves nothing to do.
        let _ = (&queue.wake).write(&[1]);
    }
}

/// The Go side has its pump take soon (it says so before it wakes the engine or settles an
/// answer, and kicks the pump after): events queued until that take need no wake-up byte.
pub(crate) fn looking() {
    queue()
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .looked_for = true;
}

/// Every queued event, in order. Events queued from now on wake the pump again.
pub(crate) fn take() -> Vec<Event> {
    let mut pending = queue()
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    pending.looked_for = false;
    std::mem::take(&mut pending.events)
}

/// The reading end of the wake-up socket, once (later calls get `None`).
pub(crate) fn take_reader() -> Option<UnixStream> {
    queue()
        .read
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read;

    use super::*;

    /// The event queue is the process's: the tests that take from it run one at a time.
    pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// The wake-up bytes written since the last look.
    fn bytes(reader: &mut UnixStream) -> usize {
        let mut buffer = [0; 64];
        match reader.read(&mut buffer) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("the event socket: {e}"),
        }
    }

    #[test]
    fn while_the_go_side_looks_no_wake_up_byte_is_written_and_its_take_ends_that() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reader = take_reader().expect("the reading end, taken by this test only");
        reader.set_nonblocking(true).unwrap();
        drop(take());
        bytes(&mut reader);
        looking();
        push(Event::Release { token: 1 });
        push(Event::Release { token: 2 });
        assert_eq!(bytes(&mut reader), 0, "the Go side looks: no byte");
        assert_eq!(take().len(), 2);
        push(Event::Release { token: 3 });
        assert_eq!(
            bytes(&mut reader),
            1,
            "after its take, the first event wakes the pump"
        );
        push(Event::Release { token: 4 });
        assert_eq!(bytes(&mut reader), 0, "one byte until the next take");
        assert_eq!(take().len(), 2);
    }
}
