//! Pipeline data: OTLP payloads.
//!
//! A payload is the encoded bytes of one OTLP export request (protobuf or OTLP/JSON) with its
//! signal and the number of records it holds. Nodes that only forward never decode; nodes that
//! look inside decode with the `opentelemetry-proto` types (in `otap-df-nodes`, keeping that
//! dependency out of core).

use std::fmt;

use bytes::Bytes;
use serde::Deserialize;

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

/// One OTLP export request flowing through a pipeline. Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpPayload {
    signal: Signal,
    encoding: Encoding,
    records: u64,
    bytes: Bytes,
}

impl OtlpPayload {
    /// A payload of `records` records of `signal`, encoded as `encoding`.
    pub fn new(signal: Signal, encoding: Encoding, records: u64, bytes: impl Into<Bytes>) -> Self {
        Self {
            signal,
            encoding,
            records,
            bytes: bytes.into(),
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
            .finish()
    }
}
