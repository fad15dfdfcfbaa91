//! Building and reading OTLP requests: the `opentelemetry-proto` types where a request is
//! built or transcoded, a zero-copy walk of the wire format ([`wire`]) where it is only
//! counted; and `receiver:otlp` ([`receiver`]), which serves both transports.

pub mod receiver;
pub mod wire;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use prost::Message;

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![string("service.name", "otap-df-generator")],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "otap-df".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    })
}

/// An export request of `records` records of `signal`, every one distinct through `tag` and
/// its index, as OTLP protobuf.
pub fn synthetic(signal: Signal, records: usize, tag: &str, time_unix_nano: u64) -> OtlpPayload {
    let bytes = match signal {
        Signal::Logs => ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: (0..records)
                        .map(|i| LogRecord {
                            time_unix_nano,
                            severity_number: 9,
                            severity_text: "INFO".to_owned(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!(
                                    "{tag} record {i}"
                                ))),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: vec![Metric {
                        name: "otap_df.generator.value".to_owned(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..records)
                                .map(|i| NumberDataPoint {
                                    time_unix_nano,
                                    attributes: vec![string("batch", tag)],
                                    value: Some(number_data_point::Value::AsInt(i as i64)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec(),
        Signal::Traces => ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: (0..records)
                        .map(|i| Span {
                            trace_id: xxhash_rust::xxh3::xxh3_128(tag.as_bytes())
                                .to_be_bytes()
                                .to_vec(),
                            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                            name: format!("{tag} span {i}"),
                            start_time_unix_nano: time_unix_nano,
                            end_time_unix_nano: time_unix_nano + 1_000,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec(),
    };
    OtlpPayload::new(signal, Encoding::Protobuf, records as u64, bytes)
}

/// What a decoded request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Resource entries.
    pub resources: usize,
    /// Scope entries.
    pub scopes: usize,
    /// Log records, data points or spans.
    pub records: usize,
}

/// Counts what a payload (protobuf or OTLP/JSON) holds, checking it is well-formed.
pub fn shape(payload: &OtlpPayload) -> Result<Shape, String> {
    decode_shape(payload.signal(), payload.encoding(), payload.bytes())
}

/// Counts what the OTLP export request `bytes` of `signal` in `encoding` holds, checking that
/// it is well-formed: protobuf by walking the wire format in place ([`wire::count`]), JSON by
/// decoding it.
pub fn decode_shape(signal: Signal, encoding: Encoding, bytes: &[u8]) -> Result<Shape, String> {
    match encoding {
        Encoding::Protobuf => {
            wire::count(signal, bytes).map_err(|e| format!("invalid OTLP {signal} protobuf: {e}"))
        }
        Encoding::Json => decode_json(signal, bytes),
    }
}

fn decode_json(signal: Signal, bytes: &[u8]) -> Result<Shape, String> {
    let invalid = |e: serde_json::Error| format!("invalid OTLP/JSON {signal} request: {e}");
    Ok(match signal {
        Signal::Logs => logs_shape(&serde_json::from_slice(bytes).map_err(invalid)?),
        Signal::Metrics => metrics_shape(&serde_json::from_slice(bytes).map_err(invalid)?),
        Signal::Traces => traces_shape(&serde_json::from_slice(bytes).map_err(invalid)?),
    })
}

/// Decodes a protobuf request into the `opentelemetry-proto` types and counts it: what
/// [`wire::count`] must agree with (tests and benchmarks compare the two).
pub fn decode_with_prost(signal: Signal, bytes: &[u8]) -> Result<Shape, String> {
    let invalid = |e: prost::DecodeError| format!("invalid OTLP {signal} protobuf: {e}");
    Ok(match signal {
        Signal::Logs => logs_shape(&ExportLogsServiceRequest::decode(bytes).map_err(invalid)?),
        Signal::Metrics => {
            metrics_shape(&ExportMetricsServiceRequest::decode(bytes).map_err(invalid)?)
        }
        Signal::Traces => traces_shape(&ExportTraceServiceRequest::decode(bytes).map_err(invalid)?),
    })
}

fn logs_shape(request: &ExportLogsServiceRequest) -> Shape {
    let scopes = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
    Shape {
        resources: request.resource_logs.len(),
        scopes: scopes.clone().count(),
        records: scopes.map(|s| s.log_records.len()).sum(),
    }
}

fn metrics_shape(request: &ExportMetricsServiceRequest) -> Shape {
    let scopes = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics);
    let points = |m: &Metric| match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    Shape {
        resources: request.resource_metrics.len(),
        scopes: scopes.clone().count(),
        records: scopes.flat_map(|s| &s.metrics).map(points).sum(),
    }
}

fn traces_shape(request: &ExportTraceServiceRequest) -> Shape {
    let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
    Shape {
        resources: request.resource_spans.len(),
        scopes: scopes.clone().count(),
        records: scopes.map(|s| s.spans.len()).sum(),
    }
}

/// The same request in OTLP/JSON (for tests and senders that want JSON).
pub fn to_json(payload: &OtlpPayload) -> Result<OtlpPayload, String> {
    fn transcode<T: Message + Default + serde::Serialize>(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let request = T::decode(bytes).map_err(|e| e.to_string())?;
        serde_json::to_vec(&request).map_err(|e| e.to_string())
    }
    if payload.encoding() == Encoding::Json {
        return Ok(payload.clone());
    }
    let bytes = match payload.signal() {
        Signal::Logs => transcode::<ExportLogsServiceRequest>(payload.bytes())?,
        Signal::Metrics => transcode::<ExportMetricsServiceRequest>(payload.bytes())?,
        Signal::Traces => transcode::<ExportTraceServiceRequest>(payload.bytes())?,
    };
    Ok(OtlpPayload::new(
        payload.signal(),
        Encoding::Json,
        payload.records(),
        bytes,
    ))
}

/// The same request in OTLP/protobuf (a JSON payload, for a transport that carries protobuf
/// only: OTLP/gRPC).
pub fn to_protobuf(payload: &OtlpPayload) -> Result<OtlpPayload, String> {
    fn transcode<T: Message + serde::de::DeserializeOwned>(
        bytes: &[u8],
    ) -> Result<Vec<u8>, String> {
        let request: T = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(request.encode_to_vec())
    }
    if payload.encoding() == Encoding::Protobuf {
        return Ok(payload.clone());
    }
    let bytes = match payload.signal() {
        Signal::Logs => transcode::<ExportLogsServiceRequest>(payload.bytes())?,
        Signal::Metrics => transcode::<ExportMetricsServiceRequest>(payload.bytes())?,
        Signal::Traces => transcode::<ExportTraceServiceRequest>(payload.bytes())?,
    };
    Ok(OtlpPayload::new(
        payload.signal(),
        Encoding::Protobuf,
        payload.records(),
        bytes,
    ))
}

/// The partial success an export response (protobuf) reports: the records the server
/// rejected and its message; None when the response does not decode.
pub fn partial_success(signal: Signal, response: &[u8]) -> Option<(u64, String)> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let (rejected, message) = match signal {
        Signal::Logs => {
            let partial = ExportLogsServiceResponse::decode(response)
                .ok()?
                .partial_success?;
            (partial.rejected_log_records, partial.error_message)
        }
        Signal::Metrics => {
            let partial = ExportMetricsServiceResponse::decode(response)
                .ok()?
                .partial_success?;
            (partial.rejected_data_points, partial.error_message)
        }
        Signal::Traces => {
            let partial = ExportTraceServiceResponse::decode(response)
                .ok()?
                .partial_success?;
            (partial.rejected_spans, partial.error_message)
        }
    };
    Some((u64::try_from(rejected).unwrap_or(0), message))
}

/// [`partial_success`] of an OTLP/JSON export response: its `partialSuccess` (or
/// `partial_success`) object, the count a number or a string (JSON's int64).
pub fn partial_success_json(signal: Signal, response: &[u8]) -> Option<(u64, String)> {
    let response: serde_json::Value = serde_json::from_slice(response).ok()?;
    let field = |object: &serde_json::Value, camel: &str, snake: &str| {
        object.get(camel).or_else(|| object.get(snake)).cloned()
    };
    let partial = field(&response, "partialSuccess", "partial_success")?;
    let (camel, snake) = match signal {
        Signal::Logs => ("rejectedLogRecords", "rejected_log_records"),
        Signal::Metrics => ("rejectedDataPoints", "rejected_data_points"),
        Signal::Traces => ("rejectedSpans", "rejected_spans"),
    };
    let rejected = match field(&partial, camel, snake) {
        None => 0,
        Some(serde_json::Value::Number(number)) => number.as_u64()?,
        Some(serde_json::Value::String(text)) => text.parse().ok()?,
        Some(_) => return None,
    };
    let message = field(&partial, "errorMessage", "error_message");
    let message = message.as_ref().and_then(serde_json::Value::as_str);
    Some((rejected, message.unwrap_or_default().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_partial_success_is_read_in_either_field_spelling_and_int64_form() {
        let logs = br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"bad"}}"#;
        assert_eq!(
            partial_success_json(Signal::Logs, logs),
            Some((3, "bad".to_owned()))
        );
        let spans = br#"{"partial_success":{"rejected_spans":2}}"#;
        assert_eq!(
            partial_success_json(Signal::Traces, spans),
            Some((2, String::new()))
        );
        assert_eq!(partial_success_json(Signal::Metrics, b"{}"), None);
        assert_eq!(
            partial_success_json(Signal::Metrics, br#"{"partialSuccess":{}}"#),
            Some((0, String::new()))
        );
        let negative = br#"{"partialSuccess":{"rejectedDataPoints":-1}}"#;
        assert_eq!(partial_success_json(Signal::Metrics, negative), None);
        assert_eq!(partial_success_json(Signal::Logs, b"not json"), None);
    }

    #[test]
    fn synthetic_requests_decode_to_their_record_count() {
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            let payload = synthetic(signal, 17, "t", 1);
            assert_eq!(payload.records(), 17);
            assert_eq!(
                shape(&payload),
                Ok(Shape {
                    resources: 1,
                    scopes: 1,
                    records: 17
                }),
                "{signal}"
            );
        }
    }

    #[test]
    fn json_requests_decode_to_their_record_count() {
        for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
            let json = to_json(&synthetic(signal, 5, "t", 1)).expect("transcodes");
            assert_eq!(json.encoding(), Encoding::Json);
            assert_eq!(shape(&json).map(|s| s.records), Ok(5), "{signal}");
        }
        // The example of the OTLP specification's repository, trimmed: camelCase keys,
        // hex ids, a string-encoded 64-bit integer.
        let spec = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name",
            "value":{"stringValue":"my.service"}}]},"scopeSpans":[{"scope":{"name":"my.library"},
            "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"I'm a server span","startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":"1544712661000000000","kind":2}]}]}]}"#;
        assert_eq!(
            decode_shape(Signal::Traces, Encoding::Json, spec).map(|s| s.records),
            Ok(1)
        );
        assert!(decode_shape(Signal::Logs, Encoding::Json, b"{\"resourceLogs\": 3}").is_err());
    }

    #[test]
    fn truncated_protobuf_is_an_error() {
        let payload = synthetic(Signal::Logs, 3, "t", 1);
        let cut = OtlpPayload::new(
            Signal::Logs,
            Encoding::Protobuf,
            3,
            payload.bytes().slice(..10),
        );
        assert!(shape(&cut).is_err());
    }
}
