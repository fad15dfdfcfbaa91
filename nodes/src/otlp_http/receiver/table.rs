//! The open connections of one core: what each is doing ([`Exchange`]), and which one a new
//! connection displaces when the core is at `max_connections` ([`ConnectionTable`]).
//!
//! A client that opens connections and sends nothing, or sends only requests that are
//! refused, must not lock out the clients whose requests are accepted. At the cap, a new
//! connection displaces an idle one, in this order: one that has sent nothing yet (the oldest
//! first: a real client sends its request right after connecting, so it has moved on long
//! before a flood of silent connections reaches it, and each new connection is read at least
//! once before it can be displaced); then one whose requests were all refused
//! (the first refused first); then the one idle longest. A connection with a request in
//! flight is never displaced: only when every connection is busy is the new one closed at
//! once. The first two kinds are kept in arrival order, so the choice costs a few steps; only
//! a core full of accepted, idle connections is searched through.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// What a connection's task knows of its requests: for its header timer, its drain, and
/// whether it is shed at the cap.
#[derive(Default)]
pub(super) struct Exchange {
    /// Since when the connection has been waiting for a request's head: since it was
    /// accepted (or its TLS handshake ended) or its last request was answered; `None` while a
    /// request is being answered.
    pub(super) waiting_since: Cell<Option<tokio::time::Instant>>,
    /// How many requests have come, and the wake-up of the drain waiting for the first.
    pub(super) requests: Cell<u64>,
    pub(super) first: tokio::sync::Notify,
    /// Whether answers close the connection (the receiver drains and no version takes the
    /// connection over).
    pub(super) closing: Cell<bool>,
    /// Whether a request of it was accepted (answered `2xx`).
    pub(super) accepted: Cell<bool>,
    /// Whether a request of it was refused while none had been accepted.
    refused: Cell<bool>,
    /// Whether its task has run: a connection gets that one chance to be read before it can
    /// be displaced, however fast others come.
    pub(super) seen: Cell<bool>,
    /// Told to close, to make room for a new connection.
    shed: Cell<bool>,
    /// Wakes the connection's task when it is shed or the receiver drains.
    pub(super) attention: Attention,
}

/// Wakes one connection's task when something concerns it (it is displaced, or the receiver
/// drains): a flag and the task's waker, on the core's thread. Cheaper to poll on every wake-up
/// of a connection than a `Notify`, which takes its lock to keep the waker current.
#[derive(Default)]
pub(super) struct Attention {
    raised: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Attention {
    /// Raises it: the task's next wait returns.
    pub(super) fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Returns once it is raised (at once if it is), and lowers it.
    pub(super) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.raised.replace(false) {
                return Poll::Ready(());
            }
            let waker = match self.waker.take() {
                Some(waker) if waker.will_wake(cx.waker()) => waker,
                _ => cx.waker().clone(),
            };
            self.waker.set(Some(waker));
            Poll::Pending
        })
    }
}

impl Exchange {
    /// A connection that an older version of the receiver hands over, with what it did
    /// there.
    pub(super) fn continued(requests: u64, accepted: bool) -> Self {
        let exchange = Self::default();
        exchange.requests.set(requests);
        exchange.accepted.set(accepted);
        exchange
    }

    /// A request's head has been read.
    pub(super) fn started(&self) {
        self.waiting_since.set(None);
        let requests = self.requests.get();
        self.requests.set(requests + 1);
        if requests == 0 {
            self.first.notify_one();
        }
    }

    /// The connection waits for the next request's head from now on.
    pub(super) fn answered(&self) {
        self.waiting_since.set(Some(tokio::time::Instant::now()));
    }

    /// Whether the connection is between two requests, having answered at least one. hyper
    /// keeps a connection alive only after a first answer; until then, it is not idle for
    /// it.
    pub(super) fn between_requests(&self) -> bool {
        self.requests.get() > 0 && self.waiting_since.get().is_some()
    }

    /// Whether it may be closed now to make room: it has sent nothing (and its task had its
    /// chance to read), or is between two requests.
    pub(super) fn idle(&self) -> bool {
        (self.requests.get() == 0 && self.seen.get()) || self.between_requests()
    }

    /// Whether it was told to close to make room.
    pub(super) fn is_shed(&self) -> bool {
        self.shed.get()
    }

    fn shed(&self) {
        self.shed.set(true);
        self.attention.raise();
    }
}

/// The connections of one core (see the module documentation).
///
/// It holds each open connection by number; the queues hold numbers only, so a closed
/// connection's state is freed when its task ends, whatever the queues still name (small
/// blocks kept alive by a queue would pin the allocator's pages long after a flood).
#[derive(Default)]
pub(super) struct ConnectionTable {
    /// Every open connection, by number.
    open: HashMap<u64, Rc<Exchange>>,
    /// The next connection's number.
    next: u64,
    /// Connections that had sent nothing when they came, in arrival order.
    silent: VecDeque<u64>,
    /// Connections refused before any of their requests was accepted, in the order of their
    /// first refusal.
    refused: VecDeque<u64>,
}

impl ConnectionTable {
    /// A connection that came (accepted, or handed over with its history): its number, to
    /// [`remove`](Self::remove) it by when it ends.
    pub(super) fn add(&mut self, exchange: &Rc<Exchange>) -> u64 {
        let number = self.next;
        self.next += 1;
        if exchange.requests.get() == 0 {
            self.silent.push_back(number);
        } else if !exchange.accepted.get() {
            exchange.refused.set(true);
            self.refused.push_back(number);
        }
        self.open.insert(number, exchange.clone());
        // Numbers of closed connections are dropped once a queue holds twice what is open.
        let bound = self.open.len() * 2 + 64;
        if self.silent.len() > bound {
            let open = &self.open;
            self.silent
                .retain(|n| open.get(n).is_some_and(|e| e.requests.get() == 0));
        }
        if self.refused.len() > bound {
            let open = &self.open;
            self.refused
                .retain(|n| open.get(n).is_some_and(|e| !e.accepted.get()));
        }
        number
    }

    /// Wakes every open connection (the receiver drains).
    pub(super) fn raise_all(&self) {
        for exchange in self.open.values() {
            exchange.attention.raise();
        }
    }

    /// The connection numbered `number` ended.
    pub(super) fn remove(&mut self, number: u64) {
        self.open.remove(&number);
    }

    /// A request of `exchange` (numbered `number`) was answered with `success` (a `2xx`) or
    /// not.
    pub(super) fn answered(&mut self, number: u64, exchange: &Exchange, success: bool) {
        if success {
            exchange.accepted.set(true);
        } else if !exchange.accepted.get() && !exchange.refused.replace(true) {
            self.refused.push_back(number);
        }
    }

    /// Tells the connection that a new one displaces to close (see the module
    /// documentation); `false` when every connection is busy.
    pub(super) fn shed_one(&mut self) -> bool {
        let victim = Self::first_in(&self.open, &mut self.silent, |e| e.requests.get() == 0)
            .or_else(|| Self::first_in(&self.open, &mut self.refused, |e| !e.accepted.get()))
            .or_else(|| self.longest_idle());
        match victim {
            Some(victim) => {
                victim.shed();
                true
            }
            None => false,
        }
    }

    /// The first connection of `queue` that is open, idle and not told to close yet, taken
    /// off the queue; those that left the queue's kind (`stays` false) or closed are dropped
    /// on the way, busy ones go to the back.
    fn first_in(
        open: &HashMap<u64, Rc<Exchange>>,
        queue: &mut VecDeque<u64>,
        stays: impl Fn(&Exchange) -> bool,
    ) -> Option<Rc<Exchange>> {
        for _ in 0..queue.len() {
            let number = queue.pop_front()?;
            let Some(exchange) = open.get(&number) else {
                continue;
            };
            if !stays(exchange) || exchange.is_shed() {
                continue;
            }
            if exchange.idle() {
                return Some(exchange.clone());
            }
            queue.push_back(number);
        }
        None
    }

    /// The open connection between two requests that has waited longest.
    fn longest_idle(&self) -> Option<Rc<Exchange>> {
        self.open
            .values()
            .filter(|exchange| exchange.between_requests() && !exchange.is_shed())
            .min_by_key(|exchange| exchange.waiting_since.get())
            .cloned()
    }
}

/// The table of a version's connections on its core, shared by its connection tasks.
pub(super) type SharedTable = Rc<RefCell<ConnectionTable>>;

/// Takes a connection out of its table when its task ends, however it ends (an abort at the
/// shutdown deadline too).
pub(super) struct Entry {
    pub(super) table: SharedTable,
    pub(super) number: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.table.borrow_mut().remove(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of `table` whose task has run: its state and number.
    fn accepted(table: &mut ConnectionTable) -> (Rc<Exchange>, u64) {
        let exchange = Rc::new(Exchange::default());
        let number = table.add(&exchange);
        exchange.seen.set(true);
        (exchange, number)
    }

    /// A request started and answered.
    fn request(
        table: &mut ConnectionTable,
        (exchange, number): &(Rc<Exchange>, u64),
        success: bool,
    ) {
        exchange.started();
        table.answered(*number, exchange, success);
        exchange.answered();
    }

    /// Which of `connections` were told to close, by index.
    fn shed(connections: &[&(Rc<Exchange>, u64)]) -> Vec<usize> {
        (0..connections.len())
            .filter(|&i| connections[i].0.is_shed())
            .collect()
    }

    #[test]
    fn silent_connections_go_first_oldest_first_then_refused_ones_then_the_longest_idle() {
        let mut table = ConnectionTable::default();
        let proven_early = accepted(&mut table);
        request(&mut table, &proven_early, true);
        let refused = accepted(&mut table);
        request(&mut table, &refused, false);
        let proven_late = accepted(&mut table);
        request(&mut table, &proven_late, true);
        let silent_old = accepted(&mut table);
        let silent_new = accepted(&mut table);
        let all = [
            &proven_early,
            &refused,
            &proven_late,
            &silent_old,
            &silent_new,
        ];
        let mut order = Vec::new();
        for _ in 0..5 {
            assert!(table.shed_one());
            let now = shed(&all);
            order.push(*now.iter().find(|i| !order.contains(*i)).expect("one more"));
        }
        assert_eq!(order, vec![3, 4, 1, 0, 2]);
        assert!(!table.shed_one(), "nothing left to shed");
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_shed() {
        let mut table = ConnectionTable::default();
        let busy_silent_once = accepted(&mut table);
        busy_silent_once.0.started();
        let busy_refused = accepted(&mut table);
        request(&mut table, &busy_refused, false);
        busy_refused.0.started();
        let busy_proven = accepted(&mut table);
        request(&mut table, &busy_proven, true);
        busy_proven.0.started();
        assert!(!table.shed_one());
        assert_eq!(
            shed(&[&busy_silent_once, &busy_refused, &busy_proven]),
            Vec::<usize>::new()
        );
        // Once answered, the refused one is the first to go.
        busy_refused.0.answered();
        assert!(table.shed_one());
        assert!(busy_refused.0.is_shed());
    }

    #[test]
    fn a_connection_whose_task_has_not_run_yet_is_not_shed() {
        let mut table = ConnectionTable::default();
        let unseen = Rc::new(Exchange::default());
        table.add(&unseen);
        assert!(!table.shed_one());
        unseen.seen.set(true);
        assert!(table.shed_one());
        assert!(unseen.is_shed());
    }

    #[test]
    fn an_accepted_request_takes_a_connection_out_of_the_refused_ones_for_good() {
        let mut table = ConnectionTable::default();
        let learner = accepted(&mut table);
        request(&mut table, &learner, false);
        request(&mut table, &learner, true);
        let other = accepted(&mut table);
        request(&mut table, &other, true);
        // Both proven: the longer idle goes.
        assert!(table.shed_one());
        assert!(learner.0.is_shed() && !other.0.is_shed());
    }

    #[test]
    fn a_closed_connection_leaves_the_table_and_its_queues_stay_bounded() {
        let mut table = ConnectionTable::default();
        for _ in 0..10_000 {
            let connection = accepted(&mut table);
            request(&mut table, &connection, false);
            table.remove(connection.1);
            assert_eq!(
                Rc::strong_count(&connection.0),
                1,
                "the table holds no copy"
            );
        }
        assert!(table.open.is_empty());
        assert!(table.silent.len() <= 65, "{}", table.silent.len());
        assert!(table.refused.len() <= 65, "{}", table.refused.len());
    }
}
