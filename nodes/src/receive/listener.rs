//! A receiver's socket: bound once for all cores and versions, listened on by each core;
//! the hand-over of open connections (of type `H`) from a version that a reload replaces to
//! its successor, for a protocol whose connections can be handed over between two requests
//! (HTTP/1; an HTTP/2 receiver hands none, `H` = `Infallible`, and lets its clients reconnect
//! after a `GOAWAY`); and the back-off of a failing `accept`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What every version of one receiver node shares, on every core and across reloads (the
/// node's cell, which a reload keeps while the address stays): the bound socket, and per core
/// the newest version, which takes the open connections that an older version hands over
/// when a reload replaces it.
pub(crate) struct Listener<H> {
    /// The bound socket; each core listens on a handle of its own. Let go when a version
    /// drains with no successor, so that the socket closes with the last handle: a client
    /// then learns at once that nothing listens, rather than waiting in the backlog.
    socket: Mutex<Option<socket2::Socket>>,
    /// Per core, the version that takes handed-over connections.
    takers: Mutex<HashMap<usize, Taker<H>>>,
}

struct Taker<H> {
    version: u64,
    tls: bool,
    connections: mpsc::UnboundedSender<H>,
}

/// Versions of receivers, in the order they were built: a successor has a higher one.
static VERSIONS: AtomicU64 = AtomicU64::new(0);

impl<H> Listener<H> {
    /// Binds `address` (see [`bind`]).
    pub(crate) fn bind(address: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            socket: Mutex::new(Some(bind(address)?)),
            takers: Mutex::new(HashMap::new()),
        })
    }

    /// A handle of the socket for one core to listen on.
    pub(crate) fn handle(&self) -> std::io::Result<socket2::Socket> {
        match &*self.socket.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(socket) => socket.try_clone(),
            None => Err(std::io::Error::other(
                "the socket was closed: the receiver's last version stopped",
            )),
        }
    }

    /// Registers a new version on `core` as the one that takes handed-over connections from
    /// now on (`tls`: whether it serves TLS; connections go only to a version that serves
    /// the same); the connections come out of the returned queue.
    pub(crate) fn take_over(
        self: &Arc<Self>,
        core: usize,
        tls: bool,
    ) -> (Takeover<H>, mpsc::UnboundedReceiver<H>) {
        let version = VERSIONS.fetch_add(1, Ordering::Relaxed);
        let (connections, handed) = mpsc::unbounded_channel();
        self.takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                core,
                Taker {
                    version,
                    tls,
                    connections,
                },
            );
        let takeover = Takeover {
            listener: self.clone(),
            core,
            version,
            tls,
        };
        (takeover, handed)
    }
}

/// One version's place among the versions of its core (see [`Listener::take_over`]).
pub(crate) struct Takeover<H> {
    listener: Arc<Listener<H>>,
    core: usize,
    version: u64,
    tls: bool,
}

impl<H> Takeover<H> {
    /// Whether a newer version serving the same protocol runs on this core: the one open
    /// connections go to when this version drains.
    pub(crate) fn has_successor(&self) -> bool {
        self.successor().is_some()
    }

    /// Hands `connection` to this core's newest version, when it is newer than this one and
    /// serves the same protocol; gives it back otherwise (or when that version stopped taking
    /// connections).
    pub(crate) fn hand_over(&self, connection: H) -> Result<(), H> {
        match self.successor() {
            Some(successor) => successor.send(connection).map_err(|back| back.0),
            None => Err(connection),
        }
    }

    /// Whether a newer version runs on this core, whatever protocol it serves: it accepts
    /// from the socket.
    pub(crate) fn succeeded(&self) -> bool {
        self.listener
            .takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.core)
            .is_some_and(|taker| taker.version > self.version)
    }

    /// Lets go of the node's socket when no version follows this one: it closes once every
    /// core's handle is gone.
    pub(crate) fn close_socket_unless_succeeded(&self) {
        if !self.succeeded() {
            self.listener
                .socket
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
    }

    /// Where this core's newest version takes connections, when it succeeds this one.
    fn successor(&self) -> Option<mpsc::UnboundedSender<H>> {
        let takers = self
            .listener
            .takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        takers
            .get(&self.core)
            .filter(|taker| taker.version > self.version && taker.tls == self.tls)
            .map(|taker| taker.connections.clone())
    }
}

impl<H> Drop for Takeover<H> {
    fn drop(&mut self) {
        let mut takers = self
            .listener
            .takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if takers
            .get(&self.core)
            .is_some_and(|taker| taker.version == self.version)
        {
            takers.remove(&self.core);
        }
    }
}

/// A socket bound to `address` and listening, with a backlog of 1024 (a burst of connections
/// waits in the kernel instead of being refused): `SO_REUSEADDR` (a restart does not wait for
/// old connections in `TIME_WAIT`), no `SO_REUSEPORT` (nobody else may bind it). It listens
/// from the pipeline's build on: once the engine reports the pipeline running (and ready),
/// every connection is taken, at the latest when the receiver's task first runs.
fn bind(address: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// This core's handle of the listening socket, as the core's runtime accepts from it.
pub(crate) fn listen(socket: socket2::Socket) -> std::io::Result<TcpListener> {
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Failed `accept`s in a row: how long to pause before the next, and a warning at most once a
/// second with the number of failures since the last one.
#[derive(Default)]
pub(crate) struct AcceptErrors {
    in_a_row: u32,
    unreported: u64,
    last_report: Option<std::time::Instant>,
}

impl AcceptErrors {
    pub(crate) fn failed(&mut self, node: &str, error: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unreported += 1;
        let now = std::time::Instant::now();
        if self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            tracing::warn!(
                node = %node,
                error = %error,
                failures = self.unreported,
                "accept failed; backing off (connections wait in the backlog)"
            );
            self.unreported = 0;
            self.last_report = Some(now);
        }
        // 5 ms, doubling up to 640 ms.
        Duration::from_millis(5 << self.in_a_row.min(8).saturating_sub(1))
            .min(Duration::from_secs(1))
    }

    pub(crate) fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}
