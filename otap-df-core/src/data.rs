//! Pipeline data: OTLP payloads.
//!
//! A payload is the encoded bytes of one OTLP export request (protobuf or OTLP/JSON) with its
//! signal and the number of records it holds. Nodes that only forward never decode; nodes that
//! look inside decode with the `opentelemetry-proto` types (in `otap-df-nodes`, keeping that
//! dependency out of core).

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;

use crate::identity::Identity;

/// The telemetry signal of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Log records.
    #[default]
    Logs,
    /// Metric data points.
    Metrics,
    /// Spans.
    Traces,
}

impl Signal {
    /// `logs`, `metrics` or `traces`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a payload's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// OTLP protobuf (`application/x-protobuf`).
    Protobuf,
    /// OTLP/JSON (`application/json`).
    Json,
}

impl Encoding {
    /// `protobuf` or `json`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "json",
        }
    }
}

/// One OTLP export request flowing through a pipeline. Cloning shares the bytes (and the
/// [`Acknowledgement`], when it carries one: each copy is then settled on its own).
#[derive(Clone)]
pub struct OtlpPayload {
    signal: Signal,
    encoding: Encoding,
    records: u64,
    bytes: Bytes,
    ack: Option<Acknowledgement>,
    identity: Option<Identity>,
}

/// Two payloads are equal when their signal, encoding, count and bytes are: whether and
/// how they are acknowledged, and who sent them, is not what they hold.
impl PartialEq for OtlpPayload {
    fn eq(&self, other: &Self) -> bool {
        self.signal == other.signal
            && self.encoding == other.encoding
            && self.records == other.records
            && self.bytes == other.bytes
    }
}

impl Eq for OtlpPayload {}

impl OtlpPayload {
    /// A payload of `records` records of `signal`, encoded as `encoding`.
    pub fn new(signal: Signal, encoding: Encoding, records: u64, bytes: impl Into<Bytes>) -> Self {
        Self {
            signal,
            encoding,
            records,
            bytes: bytes.into(),
            ack: None,
            identity: None,
        }
    }

    /// The payload, sent by `identity` (what the receiver's authorizer decided): exporters
    /// and processors read it ([`identity`](Self::identity)) to set headers from it, route or
    /// drop by it.
    #[must_use]
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Who sent it, when the receiver that took it authorized its sender.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The payload, carrying `ack`: its producer answers its sender only once every copy of
    /// it is settled (see [`Acknowledgement`]).
    #[must_use]
    pub fn with_acknowledgement(mut self, ack: Acknowledgement) -> Self {
        self.ack = Some(ack);
        self
    }

    /// Takes the acknowledgement it carries, if any: the caller settles it from now on.
    pub fn take_acknowledgement(&mut self) -> Option<Acknowledgement> {
        self.ack.take()
    }

    /// Settles the acknowledgement it carries, if any, as done: the payload (this copy) is
    /// accepted for good, delivered or stored durably, or deliberately dropped.
    /// The payload goes first: whoever learns the outcome (at once, where the acknowledgement
    /// was made with [`Acknowledgement::then`]) finds its bytes no longer held here.
    pub fn settle(mut self) {
        let ack = self.ack.take();
        drop(self);
        if let Some(ack) = ack {
            ack.settle();
        }
    }

    /// Its signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Its encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// How many records (log records, data points, spans) it holds, as its producer counted.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The encoded request.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl fmt::Debug for OtlpPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpPayload")
            .field("signal", &self.signal)
            .field("encoding", &self.encoding)
            .field("records", &self.records)
            .field("bytes", &self.bytes.len())
            .field("acknowledged", &self.ack.is_some())
            .field("identity", &self.identity)
            .finish()
    }
}

/// Why a payload was not accepted for good, as its producer answers its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAccepted {
    /// No room (a durable queue at its byte cap): the sender should come back later (HTTP
    /// `429`, gRPC `RESOURCE_EXHAUSTED`).
    Full(String),
    /// It could not be kept (a write failed, a node failed or stopped and dropped it): the
    /// sender should send it again (HTTP `503`, gRPC `UNAVAILABLE`).
    Failed(String),
}

impl fmt::Display for NotAccepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAccepted::Full(reason) | NotAccepted::Failed(reason) => f.write_str(reason),
        }
    }
}

/// What becomes of a payload a receiver handed on with an [`Acknowledgement`]: whether every
/// copy of it was accepted for good.
pub type Acknowledged = Result<(), NotAccepted>;

/// A payload's acknowledgement: how a node downstream tells the receiver that produced it
/// when it is safe to answer the sender (for a durable queue: once the payload is on disk).
///
/// Each copy of a payload (fan-out clones it) holds one, and each is settled on its own:
/// [`settle`](Self::settle) (accepted), [`refuse`](Self::refuse) (why not), or dropped
/// unsettled, which counts as failed — so a node that fails, or a queue dropped at a stop,
/// makes the receiver answer "send again" rather than a success nothing backs. The receiver
/// learns the outcome once every copy is settled: success when all were, otherwise the first
/// refusal. The engine settles a payload as it enters an exporter or a processor that
/// does not take acknowledgements over
/// ([`NodeFactory::acknowledges_with`](crate::node::NodeFactory::acknowledges_with),
/// [`NodeFactory::forwards_acknowledgements`](crate::node::NodeFactory::forwards_acknowledgements)),
/// which is what "accepted downstream" means without them.
#[derive(Debug)]
pub struct Acknowledgement {
    shared: std::sync::Arc<AckShared>,
    settled: bool,
}

#[derive(Debug)]
struct AckShared {
    refused: std::sync::OnceLock<NotAccepted>,
    answer: std::sync::Mutex<Option<Answer>>,
}

/// Where an acknowledgement's outcome goes.
enum Answer {
    /// To an [`AcknowledgementWait`].
    Wait(tokio::sync::oneshot::Sender<Acknowledged>),
    /// To a function, run where the last copy is settled.
    Then(Box<dyn FnOnce(Acknowledged) + Send>),
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answer::Wait(_) => "Wait",
            Answer::Then(_) => "Then",
        })
    }
}

impl Drop for AckShared {
    /// The last copy is settled: the receiver learns the outcome.
    fn drop(&mut self) {
        let answer = self
            .answer
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let outcome = match self.refused.take() {
            None => Ok(()),
            Some(refused) => Err(refused),
        };
        match answer {
            Some(Answer::Wait(answer)) => {
                let _ = answer.send(outcome);
            }
            Some(Answer::Then(then)) => then(outcome),
            None => {}
        }
    }
}

impl Acknowledgement {
    /// A new acknowledgement, and the future of its outcome (an error when a copy was not
    /// accepted).
    pub fn new() -> (Self, AcknowledgementWait) {
        let (answer, wait) = tokio::sync::oneshot::channel();
        (
            Self::answering(Answer::Wait(answer)),
            AcknowledgementWait(wait),
        )
    }

    /// A new acknowledgement whose outcome `then` is told, on the thread that settles (or
    /// drops) the last copy, as it does — no task waits for it, so no thread is woken for
    /// it. For what is quick and needs no runtime: settling the acknowledgement it forwards
    /// (a processor that keeps nothing back), answering a caller on another runtime.
    pub fn then(then: impl FnOnce(Acknowledged) + Send + 'static) -> Self {
        Self::answering(Answer::Then(Box::new(then)))
    }

    fn answering(answer: Answer) -> Self {
        Self {
            shared: std::sync::Arc::new(AckShared {
                refused: std::sync::OnceLock::new(),
                answer: std::sync::Mutex::new(Some(answer)),
            }),
            settled: false,
        }
    }

    /// This copy is accepted for good.
    pub fn settle(mut self) {
        self.settled = true;
    }

    /// This copy is not accepted, for `why`.
    pub fn refuse(mut self, why: NotAccepted) {
        let _ = self.shared.refused.set(why);
        self.settled = true;
    }
}

impl Clone for Acknowledgement {
    /// Another copy, to be settled on its own.
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            settled: false,
        }
    }
}

impl Drop for Acknowledgement {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.shared.refused.set(NotAccepted::Failed(
                "the pipeline dropped the payload before it was accepted".to_owned(),
            ));
        }
    }
}

/// The outcome of an [`Acknowledgement`], once every copy is settled.
#[derive(Debug)]
pub struct AcknowledgementWait(tokio::sync::oneshot::Receiver<Acknowledged>);

impl std::future::Future for AcknowledgementWait {
    type Output = Acknowledged;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Acknowledged> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| {
                Err(NotAccepted::Failed(
                    "the payload's acknowledgement was lost".to_owned(),
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> OtlpPayload {
        OtlpPayload::new(Signal::Logs, Encoding::Protobuf, 3, &b"abc"[..])
    }

    fn outcome(wait: AcknowledgementWait) -> Acknowledged {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(wait)
    }

    #[test]
    fn the_outcome_comes_once_every_copy_is_settled() {
        let (ack, wait) = Acknowledgement::new();
        let data = payload().with_acknowledgement(ack);
        let copy = data.clone();
        assert_eq!(copy, data, "equality ignores the acknowledgement");
        data.settle();
        copy.settle();
        assert_eq!(outcome(wait), Ok(()));
    }

    #[test]
    fn a_refused_copy_makes_the_outcome_that_refusal() {
        let (ack, wait) = Acknowledgement::new();
        let mut data = payload().with_acknowledgement(ack);
        let copy = data.clone();
        copy.settle();
        data.take_acknowledgement()
            .expect("carried")
            .refuse(NotAccepted::Full("the queue is full".to_owned()));
        assert_eq!(
            outcome(wait),
            Err(NotAccepted::Full("the queue is full".to_owned()))
        );
    }

    #[test]
    fn then_is_told_once_where_the_last_copy_is_settled() {
        let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = {
            let told = told.clone();
            move |outcome| told.lock().unwrap().push(outcome)
        };
        let data = payload().with_acknowledgement(Acknowledgement::then(record));
        let copy = data.clone();
        data.settle();
        assert!(told.lock().unwrap().is_empty(), "a copy is left");
        // The last copy, settled on another thread: told there, at once.
        std::thread::spawn(move || {
            let mut copy = copy;
            copy.take_acknowledgement()
                .expect("carried")
                .refuse(NotAccepted::Full("the queue is full".to_owned()));
            assert_eq!(
                *told.lock().unwrap(),
                [Err(NotAccepted::Full("the queue is full".to_owned()))]
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_copy_dropped_unsettled_fails_the_outcome() {
        let (ack, wait) = Acknowledgement::new();
        let data = payload().with_acknowledgement(ack);
        let copy = data.clone();
        data.settle();
        drop(copy);
        assert!(matches!(outcome(wait), Err(NotAccepted::Failed(_))));
        // Without an acknowledgement, settling does nothing.
        payload().settle();
    }
}
