//! What the Collector's goroutines hand a component's engine — payloads for its inlet —
//! queued for the engine's tasks to take. (The next consumer's answers need no mailbox: they
//! are settled where they come, `otapdf_complete`.)
//!
//! A goroutine that finds the taking task asleep is told so and owes it a wake-up, which it
//! may give a moment later: the Go side first lets its other ready goroutines run (and queue
//! theirs), so that one wake-up of the engine's thread takes what many of them queued. A
//! wake-up of a sleeping thread costs a write, two context switches and, with more threads
//! than CPUs, a preempted one: more than the rest of a crossing.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Why an item was not queued; the item comes back.
#[derive(Debug)]
pub(crate) enum Rejected<T> {
    /// The mailbox holds as many as it may.
    Full(T),
    /// Nothing takes from it any more.
    Closed(T),
}

/// A wake-up owed to a task that was asleep when an item was queued: given when this is
/// dropped, or by whoever the C ABI hands it to as a ticket (`otapdf_wake`).
#[must_use = "the task sleeps until it is woken"]
#[derive(Debug, Default)]
pub struct Wake(Option<Arc<Notify>>);

impl Wake {
    /// The wake-up as a ticket for the C ABI: 0 when none is owed, else a strong count of
    /// what to notify (`Arc::into_raw`), which `otapdf_wake` takes back, exactly once.
    pub(crate) fn into_ticket(mut self) -> u64 {
        self.0.take().map_or(0, |woken| Arc::into_raw(woken) as u64)
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let Some(woken) = self.0.take() {
            woken.notify_one();
        }
    }
}

struct State<T> {
    queued: VecDeque<T>,
    closed: bool,
    /// A task found the mailbox empty and waits; no wake-up was owed since.
    asleep: bool,
}

/// The mailbox; the tasks that take from it may be several (a component's cores).
pub(crate) struct Mailbox<T> {
    state: Mutex<State<T>>,
    woken: Arc<Notify>,
    capacity: usize,
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> Mailbox<T> {
    /// A mailbox that holds at most `capacity` items at once.
    pub(crate) fn new(capacity: usize) -> Self {
        Mailbox {
            state: Mutex::new(State {
                queued: VecDeque::new(),
                closed: false,
                asleep: false,
            }),
            woken: Arc::new(Notify::new()),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`; the [`Wake`] says whether a task sleeps and must be woken.
    pub(crate) fn offer(&self, item: T) -> Result<Wake, Rejected<T>> {
        let mut state = self.state();
        if state.closed {
            return Err(Rejected::Closed(item));
        }
        if state.queued.len() >= self.capacity {
            return Err(Rejected::Full(item));
        }
        state.queued.push_back(item);
        let asleep = std::mem::take(&mut state.asleep);
        drop(state);
        Ok(Wake(asleep.then(|| self.woken.clone())))
    }

    /// Moves up to `most` queued items into `into`, waiting while there are none; 0 once the
    /// mailbox is closed and empty.
    pub(crate) async fn take(&self, into: &mut Vec<T>, most: usize) -> usize {
        loop {
            if let Some(taken) = self.take_now(into, most) {
                return taken;
            }
            // Listening before looking again: a wake-up given after the look is not lost.
            let mut woken = pin!(self.woken.notified());
            woken.as_mut().enable();
            {
                let mut state = self.state();
                if !state.queued.is_empty() || state.closed {
                    continue;
                }
                state.asleep = true;
            }
            woken.await;
        }
    }

    fn take_now(&self, into: &mut Vec<T>, most: usize) -> Option<usize> {
        let mut state = self.state();
        let taken = state.queued.len().min(most);
        if taken == 0 {
            return state.closed.then_some(0);
        }
        into.extend(state.queued.drain(..taken));
        Some(taken)
    }

    /// Closes the mailbox: what it held comes back, later offers are refused, waiting tasks
    /// get nothing more.
    pub(crate) fn close(&self) -> Vec<T> {
        let queued = {
            let mut state = self.state();
            state.closed = true;
            state.asleep = false;
            state.queued.drain(..).collect()
        };
        self.woken.notify_waiters();
        queued
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// A waker that counts its wake-ups.
    struct Counted(AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Counted>, Waker) {
        let count = Arc::new(Counted(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn woken(count: &Counted) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    #[test]
    fn only_the_first_item_for_a_sleeping_taker_owes_a_wake_up_and_it_is_given_when_dropped() {
        let mailbox = Mailbox::new(8);
        // Nobody asleep yet: nothing is owed.
        let wake = mailbox.offer(1).unwrap();
        assert_eq!(wake.into_ticket(), 0);

        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        let mut into = Vec::new();
        {
            let mut take = pin!(mailbox.take(&mut into, 8));
            assert_eq!(take.as_mut().poll(&mut cx), Poll::Ready(1));
        }
        assert_eq!(into, [1]);
        into.clear();

        {
            let mut take = pin!(mailbox.take(&mut into, 8));
            assert_eq!(
                take.as_mut().poll(&mut cx),
                Poll::Pending,
                "empty: it sleeps"
            );
            let owed = mailbox.offer(2).unwrap();
            let none = mailbox.offer(3).unwrap();
            assert_eq!(none.into_ticket(), 0, "one wake-up per sleep");
            assert_eq!(woken(&count), 0, "queued, not woken: the wake-up is owed");
            drop(owed);
            assert_eq!(woken(&count), 1);
            assert_eq!(take.as_mut().poll(&mut cx), Poll::Ready(2));
        }
        assert_eq!(into, [2, 3], "both, in order, one wake-up");
    }

    #[test]
    fn a_ticket_is_the_same_wake_up() {
        let mailbox = Mailbox::new(8);
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        let mut into = Vec::new();
        let mut take = pin!(mailbox.take(&mut into, 8));
        assert_eq!(take.as_mut().poll(&mut cx), Poll::Pending);
        let ticket = mailbox.offer(7).unwrap().into_ticket();
        assert_ne!(ticket, 0);
        assert_eq!(woken(&count), 0);
        // What `otapdf_wake` does with it.
        // SAFETY (test): the strong count `into_ticket` leaked, taken back once.
        #[allow(unsafe_code)]
        let woke = unsafe { Arc::from_raw(ticket as *const Notify) };
        woke.notify_one();
        drop(woke);
        assert_eq!(woken(&count), 1);
        assert_eq!(take.as_mut().poll(&mut cx), Poll::Ready(1));
        assert_eq!(
            Arc::strong_count(&mailbox.woken),
            1,
            "the ticket's count is back"
        );
    }

    #[test]
    fn a_full_mailbox_and_a_closed_one_give_the_item_back() {
        let mailbox = Mailbox::new(2);
        drop(mailbox.offer("a").unwrap());
        drop(mailbox.offer("b").unwrap());
        assert!(matches!(mailbox.offer("c"), Err(Rejected::Full("c"))));

        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(mailbox.close(), ["a", "b"], "what it held comes back");
        assert!(matches!(mailbox.offer("d"), Err(Rejected::Closed("d"))));
        let mut into = Vec::new();
        assert_eq!(
            pin!(mailbox.take(&mut into, 8)).poll(&mut cx),
            Poll::Ready(0),
            "closed and empty"
        );
        assert_eq!(woken(&count), 0);
    }

    #[test]
    fn closing_wakes_a_sleeping_taker_with_nothing() {
        let mailbox: Mailbox<u8> = Mailbox::new(2);
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        let mut into = Vec::new();
        let mut take = pin!(mailbox.take(&mut into, 8));
        assert_eq!(take.as_mut().poll(&mut cx), Poll::Pending);
        assert!(mailbox.close().is_empty());
        assert_eq!(woken(&count), 1);
        assert_eq!(take.as_mut().poll(&mut cx), Poll::Ready(0));
    }

    #[test]
    fn a_burst_takes_at_most_what_it_asks_for() {
        let mailbox = Mailbox::new(8);
        for i in 0..5 {
            drop(mailbox.offer(i).unwrap());
        }
        let (_, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        let mut into = Vec::new();
        assert_eq!(
            pin!(mailbox.take(&mut into, 3)).poll(&mut cx),
            Poll::Ready(3)
        );
        assert_eq!(
            pin!(mailbox.take(&mut into, 3)).poll(&mut cx),
            Poll::Ready(2)
        );
        assert_eq!(into, [0, 1, 2, 3, 4]);
    }
}
