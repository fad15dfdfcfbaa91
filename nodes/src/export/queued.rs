//! An exporter with a durable queue: each payload is appended to the bound `durable_queue`
//! and acknowledged to its sender once it is on disk; a pump on each core claims what the
//! queue holds, in order, sends it (merged when it can be) with the same retries as
//! without a queue, and removes it once delivered or given up on (dead-lettered or
//! counted). What a stop interrupts stays in the queue, and the next start resumes it.
//!
//! An entry is the payload's signal, encoding and record count, and who sent it (its
//! identity, when the receiver authorized its sender), before its bytes ([`encode`]): what
//! an exporter sets from the identity (headers) is set the same after a restart. Every
//! core's pump claims from the one queue of the node, so a restart with fewer cores leaves
//! nothing behind.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use otap_df_core::capability::{Identity, QueueEntry, QueueError, local};
use otap_df_core::data::{Encoding, NotAccepted, OtlpPayload, Signal};
use otap_df_core::node::{LocalExporter, NodeContext, NodeError};
use tokio::task::JoinSet;

use super::Transport;
use super::delivery::{Delivery, Outcome};
use super::merge::Waiting;

/// Appends waiting for their commit, per core: the payloads whose senders wait.
const APPENDS_IN_FLIGHT: usize = 1024;

/// An entry's bytes before the payload's: format version, signal, encoding, records.
const ENTRY_HEADER: usize = 11;
/// An entry without an identity.
const ENTRY_VERSION: u8 = 1;
/// An entry with an identity: after the header, its length (`u32`) and the identity (each
/// string a `u16` length and its bytes: the name, the number of attributes, then each
/// attribute's name and value).
const ENTRY_VERSION_IDENTITY: u8 = 2;

/// How long the pump waits before it claims again after the queue could not be read.
const READ_FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// `payload` as a queue entry.
pub(crate) fn encode(payload: &OtlpPayload) -> Bytes {
    let identity = payload.identity().map(encode_identity);
    let mut entry = BytesMut::with_capacity(
        ENTRY_HEADER + identity.as_ref().map_or(0, |i| 4 + i.len()) + payload.bytes().len(),
    );
    entry.put_u8(if identity.is_some() {
        ENTRY_VERSION_IDENTITY
    } else {
        ENTRY_VERSION
    });
    entry.put_u8(match payload.signal() {
        Signal::Logs => 0,
        Signal::Metrics => 1,
        Signal::Traces => 2,
    });
    entry.put_u8(match payload.encoding() {
        Encoding::Protobuf => 0,
        Encoding::Json => 1,
    });
    entry.put_u64_le(payload.records());
    if let Some(identity) = identity {
        entry.put_u32_le(u32::try_from(identity.len()).unwrap_or(u32::MAX));
        entry.put_slice(&identity);
    }
    entry.put_slice(payload.bytes());
    entry.freeze()
}

fn encode_identity(identity: &Identity) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &str) {
        // Names and attribute values come from configuration and tokens: far below 64 KiB;
        // a longer one is cut, never misread.
        let bytes = &text.as_bytes()[..text.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(64);
    string(&mut out, identity.as_str());
    let attributes: Vec<(&str, &str)> = identity.attributes().collect();
    out.extend_from_slice(&(attributes.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    for (name, value) in attributes.into_iter().take(usize::from(u16::MAX)) {
        string(&mut out, name);
        string(&mut out, value);
    }
    out
}

fn decode_identity(mut bytes: &[u8]) -> Option<Identity> {
    fn string<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
        let (length, rest) = bytes.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_le_bytes(*length));
        let text = rest.get(..length)?;
        *bytes = &rest[length..];
        std::str::from_utf8(text).ok()
    }
    let name = string(&mut bytes)?;
    let (count, rest) = bytes.split_first_chunk::<2>()?;
    bytes = rest;
    let mut attributes = Vec::with_capacity(usize::from(u16::from_le_bytes(*count)));
    for _ in 0..u16::from_le_bytes(*count) {
        attributes.push((string(&mut bytes)?, string(&mut bytes)?));
    }
    bytes.is_empty().then(|| {
        if attributes.is_empty() {
            Identity::from(name.to_owned())
        } else {
            Identity::with_attributes(name, attributes)
        }
    })
}

/// The payload queue entry `entry` holds; why not, when it is not one.
pub(crate) fn decode(entry: &Bytes) -> Result<OtlpPayload, String> {
    if entry.len() < ENTRY_HEADER || !matches!(entry[0], ENTRY_VERSION | ENTRY_VERSION_IDENTITY) {
        return Err("not a payload entry of this version".to_owned());
    }
    let signal = match entry[1] {
        0 => Signal::Logs,
        1 => Signal::Metrics,
        2 => Signal::Traces,
        other => return Err(format!("unknown signal {other}")),
    };
    let encoding = match entry[2] {
        0 => Encoding::Protobuf,
        1 => Encoding::Json,
        other => return Err(format!("unknown encoding {other}")),
    };
    let mut records = [0u8; 8];
    records.copy_from_slice(&entry[3..ENTRY_HEADER]);
    let (identity, start) = if entry[0] == ENTRY_VERSION_IDENTITY {
        let length = entry
            .get(ENTRY_HEADER..ENTRY_HEADER + 4)
            .and_then(|l| <[u8; 4]>::try_from(l).ok())
            .map(|l| u32::from_le_bytes(l) as usize)
            .ok_or("an identity entry too short for its identity's length")?;
        let start = ENTRY_HEADER + 4 + length;
        let identity = entry
            .get(ENTRY_HEADER + 4..start)
            .and_then(decode_identity)
            .ok_or("an identity entry whose identity cannot be read")?;
        (Some(identity), start)
    } else {
        (None, ENTRY_HEADER)
    };
    let payload = OtlpPayload::new(
        signal,
        encoding,
        u64::from_le_bytes(records),
        entry.slice(start..),
    );
    Ok(match identity {
        Some(identity) => payload.with_identity(identity),
        None => payload,
    })
}

/// The queue of node `context`: one per node, shared by its cores.
pub(crate) fn queue_name(context: &NodeContext) -> String {
    format!("{}/{}/{}", context.group, context.pipeline, context.node_id)
}

/// What the exporter's appends and its pump share (one core).
struct Pump<T> {
    delivery: Delivery<T>,
    queue: Rc<dyn local::DurableQueue>,
    name: String,
    max_in_flight: usize,
    merge_max_bytes: usize,
    /// Records appended to the queue.
    queued: Arc<AtomicU64>,
}

/// The exporter with a durable queue, as the engine drives it.
pub(crate) struct Queued<T: Transport> {
    pump: Rc<Pump<T>>,
    appends: JoinSet<()>,
    running: Option<tokio::task::JoinHandle<Result<(), NodeError>>>,
}

impl<T: Transport + 'static> Queued<T> {
    pub(crate) fn new(
        context: &NodeContext,
        delivery: Delivery<T>,
        queue: Rc<dyn local::DurableQueue>,
        max_in_flight: usize,
        merge_max_bytes: usize,
    ) -> Self {
        Self {
            pump: Rc::new(Pump {
                delivery: delivery.keeping_on_stop(),
                queue,
                name: queue_name(context),
                max_in_flight,
                merge_max_bytes,
                queued: context.counters.named("records_queued"),
            }),
            appends: JoinSet::new(),
            running: None,
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl<T: Transport + 'static> LocalExporter for Queued<T> {
    async fn start(&mut self) -> Result<(), NodeError> {
        let pump = self.pump.clone();
        self.running = Some(tokio::task::spawn_local(async move { pump.run().await }));
        Ok(())
    }

    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        // The pump ends before `finish` only when it failed.
        if self
            .running
            .as_ref()
            .is_some_and(|running| running.is_finished())
        {
            return self.stopped().await;
        }
        while self.appends.len() >= APPENDS_IN_FLIGHT {
            if let Some(done) = self.appends.join_next().await {
                self.pump.delivery.joined(done)?;
            }
        }
        while let Some(done) = self.appends.try_join_next() {
            self.pump.delivery.joined(done)?;
        }
        let pump = self.pump.clone();
        self.appends
            .spawn_local(async move { pump.append(data).await });
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        while let Some(done) = self.appends.join_next().await {
            self.pump.delivery.joined(done)?;
        }
        // Everything taken is on disk: what is in flight ends, what waits to be retried
        // stays in the queue for the next start.
        self.pump.delivery.close();
        self.stopped().await
    }
}

impl<T: Transport + 'static> Queued<T> {
    /// The pump's end: how it ended, a panic a failure of the node.
    async fn stopped(&mut self) -> Result<(), NodeError> {
        match self.running.take() {
            None => Ok(()),
            Some(running) => running.await.unwrap_or_else(|_| {
                Err(NodeError::Failed {
                    node: self.pump.delivery.node().to_owned(),
                    message: "the durable queue's pump panicked".to_owned(),
                })
            }),
        }
    }
}

impl<T: Transport + 'static> Pump<T> {
    /// Appends `data` to the queue; settles its acknowledgement once it is durable, or says
    /// why not (a full queue: "come back later"). Without an acknowledgement to answer
    /// (a producer that does not wait), what cannot be appended is undeliverable.
    async fn append(&self, mut data: OtlpPayload) {
        let ack = data.take_acknowledgement();
        let records = data.records();
        let appended = self.queue.append(&self.name, encode(&data)).await;
        match (appended, ack) {
            (Ok(()), ack) => {
                self.queued.fetch_add(records, Ordering::Relaxed);
                if let Some(ack) = ack {
                    ack.settle();
                }
            }
            (Err(error), Some(ack)) => {
                let refusal = match error {
                    QueueError::Full { .. } => NotAccepted::Full(error.to_string()),
                    _ => NotAccepted::Failed(error.to_string()),
                };
                tracing::debug!(node = %self.delivery.node(), %error, "not appended to the durable queue");
                ack.refuse(refusal);
            }
            (Err(error), None) => {
                self.delivery.undeliverable(
                    &data,
                    &format!("cannot append it to the durable queue: {error}"),
                );
            }
        }
    }

    /// Claims what the queue holds and delivers it, up to `max_in_flight` requests at a
    /// time, until the input is drained; then waits for the requests in flight.
    /// A request task that panicked fails the node (its entries' fate is unknown).
    async fn run(self: Rc<Self>) -> Result<(), NodeError> {
        let mut in_flight = JoinSet::new();
        while !self.delivery.is_closing() {
            if in_flight.len() >= self.max_in_flight {
                tokio::select! {
                    Some(done) = in_flight.join_next() => self.delivery.joined(done)?,
                    () = self.delivery.closed() => {}
                }
                continue;
            }
            let claimed = tokio::select! {
                claimed = self.queue.claim(&self.name) => claimed,
                () = self.delivery.closed() => continue,
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    self.delivery.joined(done)?;
                    continue;
                }
            };
            match claimed {
                Ok(first) => {
                    if let Some((ids, payload)) = self.gather(first) {
                        let pump = self.clone();
                        in_flight.spawn_local(async move { pump.send(ids, payload).await });
                    }
                }
                Err(error) => {
                    tracing::error!(node = %self.delivery.node(), %error,
                        "cannot read the durable queue; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(READ_FAILURE_PAUSE) => {}
                        () = self.delivery.closed() => {}
                    }
                }
            }
        }
        while let Some(done) = in_flight.join_next().await {
            self.delivery.joined(done)?;
        }
        Ok(())
    }

    /// `first` with the entries after it that merge with it (protobuf of one signal, up to
    /// `merge_max_bytes`), claimed now, before the request is started: a commit's entries
    /// go in as few requests as they fit in. Their ids, and the payload; none when `first`
    /// holds no payload.
    fn gather(&self, first: QueueEntry) -> Option<(Vec<u64>, OtlpPayload)> {
        let (id, payload) = self.payload(first)?;
        let mut ids = vec![id];
        let mut waiting = Waiting::One(payload);
        while let Ok(Some(next)) = self.queue.try_claim(&self.name) {
            let Some((id, payload)) = self.payload(next) else {
                continue;
            };
            if waiting.merge(payload, self.merge_max_bytes).is_err() {
                self.queue.release(&self.name, id);
                break;
            }
            ids.push(id);
        }
        Some((ids, waiting.into_payload()))
    }

    /// Sends `payload` (entries `ids`); acknowledges them once delivered or given up on,
    /// releases them when the pipeline stops first.
    async fn send(&self, ids: Vec<u64>, payload: OtlpPayload) {
        let outcome = self.delivery.deliver(payload).await;
        for id in ids {
            match outcome {
                Outcome::Settled => {
                    if let Err(error) = self.queue.acknowledge(&self.name, id) {
                        tracing::warn!(node = %self.delivery.node(), %error,
                            "cannot remove a delivered entry from the durable queue; it will be sent again");
                    }
                }
                Outcome::Kept => {
                    self.queue.release(&self.name, id);
                }
            }
        }
    }

    /// Entry `entry`'s id and the payload it holds; an entry that holds none is
    /// undeliverable: logged, counted and removed.
    fn payload(&self, entry: QueueEntry) -> Option<(u64, OtlpPayload)> {
        match decode(&entry.bytes) {
            Ok(payload) => Some((entry.id, payload)),
            Err(why) => {
                tracing::error!(node = %self.delivery.node(), id = entry.id, why,
                    "a durable queue entry holds no payload; it is removed");
                let _ = self.queue.acknowledge(&self.name, entry.id);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_the_payload_and_who_sent_it() {
        let payload = crate::otlp::synthetic(Signal::Traces, 4, "t", 1);
        let plain = decode(&encode(&payload)).expect("an entry");
        assert_eq!(plain, payload);
        assert_eq!(plain.identity(), None);
        assert_eq!(encode(&payload)[0], ENTRY_VERSION);

        for identity in [
            Identity::with_attributes("svc-a", [("tenant", "acme"), ("groups", "ops")]),
            Identity::from_static("tokens:tokens[0]"),
        ] {
            let entry = encode(&payload.clone().with_identity(identity.clone()));
            assert_eq!(entry[0], ENTRY_VERSION_IDENTITY);
            let back = decode(&entry).expect("an entry");
            assert_eq!(back, payload);
            assert_eq!(back.identity(), Some(&identity));
            // Cut anywhere inside the identity: refused, never misread.
            for cut in ENTRY_HEADER..ENTRY_HEADER + 8 {
                assert!(decode(&entry.slice(..cut)).is_err(), "cut at {cut}");
            }
        }
    }
}
