//! One connection's life: its header timer, and how it ends when the receiver drains.

use std::cell::Cell;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;

/// How long a connection accepted just before a drain may take to send its first request.
pub(super) const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// What a connection's task knows of its requests: for its header timer and its drain.
#[derive(Default)]
pub(super) struct Exchange {
    /// Since when the connection has been waiting for a request's head: since it was
    /// accepted (or its TLS handshake ended) or its last request was answered; `None` while a
    /// request is being answered.
    waiting_since: Cell<Option<tokio::time::Instant>>,
    /// Whether a request has come, and the wake-up of the drain waiting for the first.
    asked: Cell<bool>,
    first: tokio::sync::Notify,
}

impl Exchange {
    /// A request's head has been read.
    pub(super) fn started(&self) {
        self.waiting_since.set(None);
        if !self.asked.replace(true) {
            self.first.notify_one();
        }
    }

    /// The connection waits for the next request's head from now on.
    pub(super) fn answered(&self) {
        self.waiting_since.set(Some(tokio::time::Instant::now()));
    }
}

/// When the header timer of a connection waiting since `waiting_since` looks next, seen at
/// `now`; `None` when its time is up. A request in hand (`None` waiting) has timeouts of its
/// own (admission, body): the timer looks again a whole timeout later.
fn head_deadline(
    waiting_since: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    timeout: Duration,
) -> Option<tokio::time::Instant> {
    match waiting_since {
        Some(since) if now >= since + timeout => None,
        Some(since) => Some(since + timeout),
        None => Some(now + timeout),
    }
}

/// Serves one connection until it ends or the receiver drains; then it answers the request in
/// flight (with `Connection: close`) and closes. A connection that has not sent a request
/// yet gets up to [`FIRST_REQUEST_GRACE`] to send one: its client connected to send it and
/// would otherwise see the connection closed instead of an answer (an accept racing a
/// reload's drain). A client that goes away mid-request is its own business.
///
/// A connection that takes longer than `header_read_timeout` to send a request's head, or
/// stays idle that long between requests, is closed. One timer per connection does it, moved
/// only when it fires: a request costs a clock read instead of a timer of its own.
pub(super) async fn serve<C: GracefulConnection>(
    connection: C,
    mut draining: tokio::sync::watch::Receiver<bool>,
    exchange: &Exchange,
    header_read_timeout: Duration,
) {
    let mut connection = std::pin::pin!(connection);
    // The head of the first request is awaited from now on (after any TLS handshake).
    exchange.answered();
    let mut timer = std::pin::pin!(tokio::time::sleep(header_read_timeout));
    loop {
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            _ = draining.wait_for(|draining| *draining) => break,
            () = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                match head_deadline(exchange.waiting_since.get(), now, header_read_timeout) {
                    // Closed without an answer, as no request was sent.
                    None => return,
                    Some(deadline) => timer.as_mut().reset(deadline),
                }
            }
        }
    }
    tokio::select! {
        _ = connection.as_mut() => return,
        () = exchange.first.notified() => {}
        () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_timer_closes_a_connection_waiting_a_whole_timeout_since_its_last_answer() {
        let timeout = Duration::from_millis(300);
        let start = tokio::time::Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        // Waiting since the start: looked at early (the timer was armed before the last
        // answer moved it), it moves to a timeout after that answer; on time, it closes.
        assert_eq!(head_deadline(Some(at(0)), at(100), timeout), Some(at(300)));
        assert_eq!(
            head_deadline(Some(at(200)), at(300), timeout),
            Some(at(500))
        );
        assert_eq!(
            head_deadline(Some(at(200)), at(499), timeout),
            Some(at(500))
        );
        assert_eq!(head_deadline(Some(at(200)), at(500), timeout), None);
        assert_eq!(head_deadline(Some(at(0)), at(900), timeout), None);
        // A request being answered, however long: looked at again a timeout later.
        assert_eq!(head_deadline(None, at(300), timeout), Some(at(600)));
        assert_eq!(head_deadline(None, at(5_000), timeout), Some(at(5_300)));
    }

    #[test]
    fn an_exchange_tracks_the_wait_for_a_head_and_the_first_request() {
        let exchange = Exchange::default();
        assert_eq!(exchange.waiting_since.get(), None);
        assert!(!exchange.asked.get());
        let before = tokio::time::Instant::now();
        exchange.answered();
        let since = exchange
            .waiting_since
            .get()
            .expect("waiting after an answer");
        assert!(since >= before);
        exchange.started();
        assert_eq!(exchange.waiting_since.get(), None);
        assert!(exchange.asked.get());
        exchange.answered();
        assert!(
            exchange
                .waiting_since
                .get()
                .is_some_and(|again| again >= since)
        );
    }
}
