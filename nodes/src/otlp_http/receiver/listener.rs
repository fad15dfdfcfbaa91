//! The receiver's socket: bound once for all cores and versions, listened on by each core,
//! and the back-off of a failing `accept`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

/// A socket bound to `address`: `SO_REUSEADDR` (a restart does not wait for old connections
/// in `TIME_WAIT`), no `SO_REUSEPORT` (nobody else may bind it). It listens only once the
/// receiver runs ([`listen`]), so that nothing connects before the pipeline can answer.
pub(super) fn bind(address: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// Starts listening on this core's handle of the bound socket, with a backlog of 1024 (a
/// burst of connections waits in the kernel instead of being refused). Every core does it;
/// on one socket the second time changes nothing.
pub(super) fn listen(socket: socket2::Socket) -> std::io::Result<TcpListener> {
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Failed `accept`s in a row: how long to pause before the next, and a warning at most once a
/// second with the number of failures since the last one.
#[derive(Default)]
pub(super) struct AcceptErrors {
    in_a_row: u32,
    unreported: u64,
    last_report: Option<std::time::Instant>,
}

impl AcceptErrors {
    pub(super) fn failed(&mut self, node: &str, error: &std::io::Error) -> Duration {
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

    pub(super) fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}
