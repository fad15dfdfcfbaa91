//! What an exporter that sends payloads to an upstream does, whatever the protocol it speaks:
//! the parts `exporter:otlp_http` uses and an exporter of another transport (OTLP/gRPC) uses
//! alike.
//!
//! - [`Exporting`]: the exporter as the engine drives it — each payload handed to a request
//!   task of its own, at most `max_in_flight` of them per core; while all are taken, payloads
//!   wait merged into one ([`merge`]) and then the exporter stops taking payloads, so the
//!   backpressure reaches the receiver.
//! - [`delivery::Delivery`]: one payload's fate — sent, retried with backoff and
//!   jitter ([`retry`]) within its budget, once more with a fresh token after an
//!   `unauthenticated` answer, and otherwise counted, logged and written to the dead-letter
//!   file: never dropped silently; also when the pipeline stops first.
//! - [`Transport`]: the one attempt a protocol makes, and what its answer means
//!   ([`Attempt`]); the bearer token it carries comes from [`token`].

pub(crate) mod delivery;
pub(crate) mod identity;
pub(crate) mod merge;
pub(crate) mod options;
pub(crate) mod queued;
pub mod retry;
pub(crate) mod token;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use otap_df_core::capability::DurableQueue;
use otap_df_core::data::OtlpPayload;
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{LocalExporter, NodeContext, NodeError, NodeInstance};
use tokio::task::JoinSet;

use delivery::Delivery;
use merge::Waiting;
pub use retry::RetryConfig;

use crate::otlp_http::exporter::Compression;
use crate::payload_file::{PayloadWriter, core_path};

/// How one attempt to send a payload ended.
pub(crate) enum Attempt {
    /// The upstream accepted it.
    Delivered,
    /// Worth another attempt, after `retry_after` when the upstream said so.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The upstream refused the credentials (how it said so): worth one more attempt with a
    /// fresh token.
    Unauthorized(String),
    /// Retrying cannot help.
    Permanent(String),
}

impl Compression {
    /// The coding's name in `Content-Encoding` and `grpc-encoding`; `None` when uncompressed.
    pub(crate) fn name(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }

    /// `bytes` compressed at a fast level: gzip's `fast` (what OTLP clients use by default),
    /// zstd's level 1 (its fastest standard level, on a compressor each thread reuses).
    pub(crate) fn compress(self, bytes: &Bytes) -> std::io::Result<Bytes> {
        match self {
            Compression::None => Ok(bytes.clone()),
            Compression::Gzip => gzip(bytes),
            Compression::Zstd => zstd_fast(bytes),
        }
    }
}

/// `bytes` compressed with zstd's level 1, on a compressor each thread reuses. Out of line,
/// as [`gzip`].
#[inline(never)]
fn zstd_fast(bytes: &[u8]) -> std::io::Result<Bytes> {
    thread_local! {
        static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    ZSTD.with_borrow_mut(|compressor| {
        let compressor = match compressor {
            Some(compressor) => compressor,
            None => compressor.insert(zstd::bulk::Compressor::new(1)?),
        };
        compressor.compress(bytes).map(Bytes::from)
    })
}

/// `bytes` gzipped at the fast level. Out of line: the encoder's state makes a stack frame
/// over a page, which every call of [`Compression::compress`] would otherwise probe, an
/// uncompressed export's too.
#[inline(never)]
fn gzip(bytes: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish().map(Bytes::from)
}

/// Counts and logs the records an upstream said it rejected in a partial success (a
/// response's `(rejected, message)`): they are not retried, as the OTLP specification says.
pub(crate) fn rejected_in_part(
    signal: otap_df_core::data::Signal,
    partial: Option<(u64, String)>,
    counter: &std::sync::atomic::AtomicU64,
) {
    if let Some((rejected, reason)) = partial
        && rejected > 0
    {
        counter.fetch_add(rejected, Ordering::Relaxed);
        tracing::warn!(
            signal = signal.as_str(),
            rejected,
            reason = %reason,
            "the upstream accepted a payload in part (OTLP partial success)"
        );
    }
}

/// An error and its sources, `: `-separated (hyper's own message is terse).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// One protocol's way of sending a payload to the upstream.
pub(crate) trait Transport {
    /// The protocol, as logs name it: `OTLP/HTTP`.
    const PROTOCOL: &'static str;

    /// What is sent for `data` (compressed, when the transport compresses).
    fn body(&self, data: &OtlpPayload) -> std::io::Result<Bytes>;

    /// Whether requests carry a token, which an `unauthenticated` answer may refresh.
    fn carries_token(&self) -> bool;

    /// One attempt to send `data` as `body`; `fresh`: with the freshest token.
    async fn send(&self, data: &OtlpPayload, body: &Bytes, fresh: bool) -> Attempt;
}

/// The exporter as the engine drives it: it hands each payload to a task of its own and
/// keeps at most `max_in_flight` of them.
pub(crate) struct Exporting<T: Transport> {
    delivery: Rc<Delivery<T>>,
    max_in_flight: usize,
    in_flight: JoinSet<()>,
}

impl<T: Transport + 'static> Exporting<T> {
    pub(crate) fn new(delivery: Delivery<T>, max_in_flight: usize) -> Self {
        Self {
            delivery: Rc::new(delivery),
            max_in_flight,
            in_flight: JoinSet::new(),
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl<T: Transport + 'static> LocalExporter for Exporting<T> {
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        let mut data = data;
        loop {
            while let Some(done) = self.in_flight.try_join_next() {
                self.delivery.joined(done)?;
            }
            if self.in_flight.len() < self.max_in_flight {
                // A request ends only when nothing waits, so nothing does now.
                let delivery = self.delivery.clone();
                self.in_flight
                    .spawn_local(async move { delivery.deliver_while_waiting(data).await });
                return Ok(());
            }
            // Every request is taken: wait with the others, merged when it can be.
            let max_bytes = self.delivery.merge_max_bytes;
            data = match &mut *self.delivery.waiting.borrow_mut() {
                waiting @ None => {
                    *waiting = Some(Waiting::One(data));
                    return Ok(());
                }
                Some(waiting) => match waiting.merge(data, max_bytes) {
                    Ok(()) => {
                        self.delivery.merged.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(data) => data,
                },
            };
            // No room beside the waiting request: the queue waits, and backpressure reaches
            // the receiver, until a request takes the waiting one or ends.
            tokio::select! {
                done = self.in_flight.join_next() => {
                    if let Some(done) = done {
                        self.delivery.joined(done)?;
                    }
                }
                () = self.delivery.waiting_taken.notified() => {}
            }
        }
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        while let Some(done) = self.in_flight.join_next().await {
            self.delivery.joined(done)?;
        }
        // Requests take what waits before they end; nothing is left but to be sure.
        if let Some(waiting) = self.delivery.waiting.take() {
            self.delivery.deliver(waiting.into_payload()).await;
        }
        Ok(())
    }
}

/// The dead-letter file of node `context` (of its core, when the node runs on several), opened
/// for appending; `None` when none is configured.
/// How an exporter delivers, whatever its protocol: its options besides the upstream.
pub(crate) struct DeliveryOptions<'a> {
    pub(crate) retry: RetryConfig,
    pub(crate) merge_max_bytes: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) dead_letter_file: Option<&'a Path>,
}

/// The exporter the engine drives, sending each payload with `transport`: up to
/// `max_in_flight` requests, merging while all are taken, retries and dead letters; with a
/// `durable_queue` bound in `capabilities`, through that queue ([`queued`]).
pub(crate) fn instance<T: Transport + 'static>(
    context: &NodeContext,
    capabilities: &mut Capabilities,
    transport: T,
    options: DeliveryOptions<'_>,
) -> Result<NodeInstance, NodeError> {
    let dead_letter = dead_letter_file(context, options.dead_letter_file)?;
    let queue = capabilities.optional_local::<DurableQueue>()?;
    let delivery = Delivery::new(
        context,
        transport,
        options.retry,
        options.merge_max_bytes,
        dead_letter,
    );
    Ok(NodeInstance::Exporter(match queue {
        Some(queue) => Box::new(queued::Queued::new(
            context,
            delivery,
            queue,
            options.max_in_flight,
            options.merge_max_bytes,
        )),
        None => Box::new(Exporting::new(delivery, options.max_in_flight)),
    }))
}

/// The connector of an exporter's client: `https://` with TLS trusting `ca_file` (the
/// system's trust store without one) and plain `http://`, no Nagle delay, `timeout` to
/// connect; ALPN `h2` for an HTTP/2 client, `http/1.1` otherwise.
pub(crate) fn connector(
    context: &NodeContext,
    ca_file: Option<&Path>,
    timeout: Duration,
    http2: bool,
) -> Result<HttpsConnector<HttpConnector>, NodeError> {
    let tls = crate::tls::client_config(ca_file).map_err(|message| context.error(message))?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    })
}

pub(crate) fn dead_letter_file(
    context: &NodeContext,
    path: Option<&Path>,
) -> Result<Option<PayloadWriter>, NodeError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let path = core_path(path, context.core);
    PayloadWriter::open(&path).map(Some).map_err(|e| {
        context.error(format!(
            "cannot open `dead_letter_file` `{}`: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::otlp_http::exporter::Compression;
    use crate::receive::payload::Coding;

    /// What the exporters send decompresses, with a receiver's decoders, to what they were
    /// given, for every compression they offer.
    #[test]
    fn each_compression_round_trips_through_the_receivers_decoders() {
        let plain = Bytes::from(b"otlp ".repeat(2000));
        for (compression, coding) in [
            (Compression::None, Coding::Identity),
            (Compression::Gzip, Coding::Gzip),
            (Compression::Zstd, Coding::Zstd),
        ] {
            let sent = compression.compress(&plain).expect("compresses");
            if compression != Compression::None {
                assert!(
                    sent.len() < plain.len() / 10,
                    "{compression:?}: {}",
                    sent.len()
                );
            }
            let read = coding.decompress(sent, plain.len()).expect("decompresses");
            assert_eq!(read, plain, "{compression:?}");
        }
    }
}
