//! One connection's life: how it arrives (accepted, or handed over by the version a reload
//! replaced), its header timer, and how it ends when the receiver drains — handed to the
//! successor between two requests, or closed once its request in flight is answered.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::CONNECTION;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::handler::Handler;
use super::table::{Entry, Exchange, SharedTable};
use crate::receive::counters::bump;
use crate::receive::idle_deadline;
use crate::receive::listener::Takeover;

/// How long a connection accepted just before a drain may take to send its first request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// A connection's header timer, polled only when it may have fired.
///
/// The connection's task wakes for every read and write, and polling a `Sleep` each time
/// (its budget, its state, its waker) costs a few hundred instructions a request. Once
/// polled, the timer holds the task's waker (a task's waker does not change), and tokio wakes
/// the task when it fires: after that first poll the timer is polled again only once tokio
/// says it has elapsed.
struct Alarm<'a> {
    sleep: Pin<&'a mut tokio::time::Sleep>,
    /// Polled since it was last set: it holds the task's waker.
    armed: bool,
}

impl<'a> Alarm<'a> {
    fn new(sleep: Pin<&'a mut tokio::time::Sleep>) -> Self {
        Self {
            sleep,
            armed: false,
        }
    }

    /// Fires at `deadline` instead.
    fn reset(&mut self, deadline: tokio::time::Instant) {
        self.sleep.as_mut().reset(deadline);
        self.armed = false;
    }

    /// Ready once it fires.
    fn fired(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            if self.armed && !self.sleep.is_elapsed() {
                return Poll::Pending;
            }
            self.armed = true;
            self.sleep.as_mut().poll(cx)
        })
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Ends the stream: what was written is sent, then the end of it (a TLS close first).
    async fn close(mut self) {
        let _ = std::future::poll_fn(|cx| match &mut self {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        })
        .await;
    }
}

/// An open connection handed from one version of the receiver to its successor, between two
/// requests: its stream, the bytes of the next request already read from it, and what it did
/// so far (for [`ConnectionTable`](super::table::ConnectionTable)).
pub(crate) struct Handed {
    pub(super) stream: Stream,
    pub(super) unread: Bytes,
    pub(super) requests: u64,
    pub(super) accepted: bool,
}

/// Where a connection comes from.
pub(super) enum Arrival {
    /// Accepted from the socket.
    Accepted(TcpStream),
    /// Handed over by an older version.
    Handed(Handed),
}

/// The stream as hyper reads and writes it: the bytes an older version read and did not
/// process come first.
struct ConnectionIo {
    unread: Bytes,
    stream: Stream,
    /// Set when the connection is to be handed on: hyper's shutdown then leaves it open.
    keep_open: Rc<Cell<bool>>,
    /// Whether bytes were written since the last complete flush.
    unflushed: bool,
}

impl AsyncRead for ConnectionIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        };
        if let Poll::Ready(Ok(())) = flushed {
            this.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.keep_open.get() {
            return Poll::Ready(Ok(()));
        }
        match &mut this.stream {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What every connection of one receiver version shares.
pub(super) struct Connections {
    pub(super) handler: Rc<Handler>,
    pub(super) http: http1::Builder,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) header_read_timeout: Duration,
    /// Whether the receiver drains (every connection's [`Attention`](super::table::Attention) is raised when it
    /// starts).
    pub(super) draining: Cell<bool>,
    pub(super) takeover: Takeover<Handed>,
    pub(super) table: SharedTable,
}

impl Connections {
    /// Hands `connection` to the successor, or gives it back.
    fn hand_over(&self, connection: Handed) -> Result<(), Handed> {
        let handed = self.takeover.hand_over(connection);
        if handed.is_ok() {
            bump(&self.handler.counters.handed_over);
        }
        handed
    }
}

/// A connection's whole life (see the module documentation).
///
/// Until its client sends something, a plain connection holds no HTTP state (hyper's buffers
/// are made for its first request), and a drain hands the bare stream on. A connection that
/// stays silent for `header_read_timeout` is closed.
pub(super) async fn connection(
    arrival: Arrival,
    exchange: Rc<Exchange>,
    entry: Entry,
    connections: Rc<Connections>,
) {
    exchange.seen.set(true);
    let timeout = connections.header_read_timeout;
    let (stream, unread) = match arrival {
        Arrival::Handed(Handed { stream, unread, .. }) => (stream, unread),
        Arrival::Accepted(tcp) => match &connections.tls {
            None => (Stream::Plain(tcp), Bytes::new()),
            // Boxed, like the serving below: a handshake holds rustls' state, which would
            // otherwise size every connection's task, plain ones too.
            Some(tls) => match Box::pin(tokio::time::timeout(timeout, tls.accept(tcp))).await {
                Ok(Ok(stream)) => (Stream::Tls(Box::new(stream)), Bytes::new()),
                _ => return,
            },
        },
    };
    let (stream, unread) = match (stream, unread) {
        (Stream::Plain(tcp), unread) if unread.is_empty() => {
            // A peek waits for the first byte and takes nothing (`readable` would answer at
            // once for a new socket, whose readiness starts set).
            let mut first = [0u8; 1];
            let drained = connections.draining.get()
                || tokio::select! {
                    biased;
                    sent = tcp.peek(&mut first) => match sent {
                        Ok(1..) => false,
                        // Closed, or failed, before sending anything.
                        Ok(0) | Err(_) => return,
                    },
                    // The receiver drains, or (closed without an answer, as no request was
                    // sent) a new connection displaced this one at the cap.
                    () = exchange.attention.wait() => {
                        if !connections.draining.get() {
                            return;
                        }
                        true
                    }
                    // Silent for a whole header timeout: closed.
                    () = tokio::time::sleep(timeout) => return,
                };
            let handed = Handed {
                stream: Stream::Plain(tcp),
                unread,
                requests: exchange.requests.get(),
                accepted: exchange.accepted.get(),
            };
            match drained {
                false => (handed.stream, handed.unread),
                true => match connections.hand_over(handed) {
                    Ok(()) => return,
                    Err(back) => (back.stream, back.unread),
                },
            }
        }
        other => other,
    };
    // Boxed: the task of a connection that has sent nothing stays the size of the wait above
    // (hundreds of bytes, not hyper's state), which is what a flood of silent connections
    // costs.
    Box::pin(serve(stream, unread, exchange, entry.number, &connections)).await;
    // The table forgets the connection when `entry` goes, whichever way the task ends.
    drop(entry);
}

/// Serves the connection's requests until it ends or the receiver drains.
///
/// A connection that takes longer than `header_read_timeout` to send a request's head, or
/// stays idle that long between requests, is closed. One timer per connection does it, moved
/// only when it fires: a request costs a clock read instead of a timer of its own.
///
/// When the receiver drains and a successor runs on the core (a reload replaced this
/// version), the connection is handed to it between two requests: at once when it is idle,
/// else once its request in flight is answered. Its client sees no close, and a request it
/// sends meanwhile is read by the successor. Without a successor (the pipeline is removed, or
/// the engine stops), the request in flight is answered with `Connection: close` and the
/// connection closes; one that has not sent a request yet gets up to [`FIRST_REQUEST_GRACE`]
/// to send one, answered with `Connection: close` too: its client connected to send it and
/// would otherwise see the connection closed instead of an answer. One between two requests
/// closes at once. A client that goes away mid-request is its own business.
async fn serve(
    stream: Stream,
    unread: Bytes,
    exchange: Rc<Exchange>,
    number: u64,
    connections: &Connections,
) {
    let keep_open = Rc::new(Cell::new(false));
    let service = service_fn({
        let exchange = exchange.clone();
        let handler = connections.handler.clone();
        let table = connections.table.clone();
        move |request| {
            exchange.started();
            let exchange = exchange.clone();
            let table = table.clone();
            handler.handle(request, move |response| {
                // Once one request was accepted the connection is known good: nothing more
                // to note.
                if !exchange.accepted.get() {
                    table
                        .borrow_mut()
                        .answered(number, &exchange, response.status().is_success());
                }
                if exchange.closing.get() {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                exchange.answered();
            })
        }
    });
    let io = ConnectionIo {
        unread,
        stream,
        keep_open: keep_open.clone(),
        unflushed: false,
    };
    let mut connection = connections.http.serve_connection(TokioIo::new(io), service);
    let timeout = connections.header_read_timeout;
    // The head of the first request is awaited from now on.
    exchange.answered();
    let sleep = std::pin::pin!(tokio::time::sleep(timeout));
    let mut timer = Alarm::new(sleep);
    loop {
        if connections.draining.get() {
            break;
        }
        tokio::select! {
            biased;
            _ = &mut connection => return,
            // The receiver drains (the loop ends above), or a new connection displaced this
            // one at the cap: closed now if idle; a request that started meanwhile is
            // answered first, with `Connection: close`.
            () = exchange.attention.wait() => {
                if connections.draining.get() {
                    continue;
                }
                if exchange.idle() {
                    return;
                }
                exchange.closing.set(true);
            }
            () = timer.fired() => {
                let now = tokio::time::Instant::now();
                match idle_deadline(exchange.waiting_since.get(), now, timeout) {
                    // Closed without an answer, as no request was sent.
                    None => {
                        bump(&connections.handler.counters.idle_closed);
                        return;
                    }
                    Some(deadline) => timer.reset(deadline),
                }
            }
        }
    }
    if exchange.requests.get() > 0 && connections.takeover.has_successor() {
        // hyper goes idle in the poll that writes an answer, and only this task polls the
        // connection: once it is pending with its request answered, it is between requests.
        let idle = std::future::poll_fn(|_| match exchange.between_requests() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        });
        tokio::select! {
            biased;
            _ = &mut connection => return,
            () = idle => {}
        }
        let answered = exchange.requests.get();
        keep_open.set(true);
        // Idle: hyper closes at once, reading and writing nothing more.
        Pin::new(&mut connection).graceful_shutdown();
        let ended = (&mut connection).await;
        let parts = connection.into_parts();
        let io = parts.io.into_inner();
        if ended.is_err() || exchange.requests.get() != answered || io.unflushed {
            io.stream.close().await;
            return;
        }
        let mut unread = io.unread;
        if unread.is_empty() {
            unread = parts.read_buf;
        } else {
            let mut both = Vec::with_capacity(unread.len() + parts.read_buf.len());
            both.extend_from_slice(&unread);
            both.extend_from_slice(&parts.read_buf);
            unread = Bytes::from(both);
        }
        let handed = Handed {
            stream: io.stream,
            unread,
            requests: exchange.requests.get(),
            accepted: exchange.accepted.get(),
        };
        if let Err(back) = connections.hand_over(handed) {
            back.stream.close().await;
        }
        return;
    }
    // From now on every answer says `Connection: close` (hyper then closes after it): the one
    // to the request in flight, or to a first request still to come. A connection between two
    // requests closes now.
    exchange.closing.set(true);
    if exchange.between_requests() {
        Pin::new(&mut connection).graceful_shutdown();
    } else if exchange.requests.get() == 0 {
        tokio::select! {
            _ = &mut connection => return,
            () = exchange.first.notified() => {}
            () = tokio::time::sleep(FIRST_REQUEST_GRACE) => return,
        }
    }
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
        assert_eq!(idle_deadline(Some(at(0)), at(100), timeout), Some(at(300)));
        assert_eq!(
            idle_deadline(Some(at(200)), at(300), timeout),
            Some(at(500))
        );
        assert_eq!(
            idle_deadline(Some(at(200)), at(499), timeout),
            Some(at(500))
        );
        assert_eq!(idle_deadline(Some(at(200)), at(500), timeout), None);
        assert_eq!(idle_deadline(Some(at(0)), at(900), timeout), None);
        // A request being answered, however long: looked at again a timeout later.
        assert_eq!(idle_deadline(None, at(300), timeout), Some(at(600)));
        assert_eq!(idle_deadline(None, at(5_000), timeout), Some(at(5_300)));
    }

    /// Polled once to take the task's waker, the alarm is not polled again until tokio has
    /// fired it, and it fires after a reset too.
    #[test]
    fn the_alarm_is_looked_at_again_only_once_tokio_fired_it() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::{Wake, Waker};

        struct Counted(AtomicUsize);
        impl Wake for Counted {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn poll(alarm: &mut Alarm<'_>, cx: &mut Context<'_>) -> Poll<()> {
            let fired = alarm.fired();
            std::pin::pin!(fired).poll(cx)
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let woken = Arc::new(Counted(AtomicUsize::new(0)));
            let waker = Waker::from(woken.clone());
            let mut cx = Context::from_waker(&waker);
            let step = Duration::from_millis(20);
            let start = tokio::time::Instant::now();
            let sleep = std::pin::pin!(tokio::time::sleep_until(start + step));
            let mut alarm = Alarm::new(sleep);
            assert!(poll(&mut alarm, &mut cx).is_pending());
            assert!(alarm.armed);
            assert!(poll(&mut alarm, &mut cx).is_pending());
            // A sleep due no earlier: by the time it ends, the driver has fired the alarm.
            tokio::time::sleep_until(start + step).await;
            assert_eq!(
                woken.0.load(Ordering::SeqCst),
                1,
                "tokio woke the alarm's task"
            );
            assert!(poll(&mut alarm, &mut cx).is_ready());
            // Set again: armed anew by its next poll, and fires at the new deadline.
            alarm.reset(start + 2 * step);
            assert!(!alarm.armed);
            assert!(poll(&mut alarm, &mut cx).is_pending());
            assert!(poll(&mut alarm, &mut cx).is_pending());
            tokio::time::sleep_until(start + 2 * step).await;
            assert_eq!(woken.0.load(Ordering::SeqCst), 2);
            assert!(poll(&mut alarm, &mut cx).is_ready());
        });
    }

    #[test]
    fn an_exchange_tracks_the_wait_for_a_head_and_the_first_request() {
        use super::super::table::Exchange;
        let exchange = Exchange::default();
        assert_eq!(exchange.waiting_since.get(), None);
        assert_eq!(exchange.requests.get(), 0);
        let before = tokio::time::Instant::now();
        exchange.answered();
        let since = exchange
            .waiting_since
            .get()
            .expect("waiting after an answer");
        assert!(since >= before);
        // Waiting for a first request is not between requests: hyper is not idle yet.
        assert!(!exchange.between_requests());
        exchange.started();
        assert_eq!(exchange.waiting_since.get(), None);
        assert_eq!(exchange.requests.get(), 1);
        assert!(!exchange.between_requests());
        exchange.answered();
        assert!(
            exchange
                .waiting_since
                .get()
                .is_some_and(|again| again >= since)
        );
        assert!(exchange.between_requests());
    }
}
