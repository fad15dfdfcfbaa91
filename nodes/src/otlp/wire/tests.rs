//! The walks against a full decode: counts, framing errors, mutations, cuts and damage.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
};
use prost::Message;

use super::*;
use crate::otlp::{decode_with_prost, synthetic};

fn logs(resources: &[&[usize]]) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: resources
            .iter()
            .map(|scopes| ResourceLogs {
                scope_logs: scopes
                    .iter()
                    .map(|&records| ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: "s".into(),
                            ..Default::default()
                        }),
                        log_records: vec![LogRecord::default(); records],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

#[test]
fn counts_match_a_full_decode_for_every_signal() {
    for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
        for records in [0, 1, 17, 300] {
            let payload = synthetic(signal, records, "t", 1);
            assert_eq!(
                count(signal, payload.bytes()),
                Ok(decode_with_prost(signal, payload.bytes()).expect("decodes")),
                "{signal} × {records}"
            );
        }
    }
    let nested = logs(&[&[2, 0, 5], &[], &[1]]);
    assert_eq!(
        count(Signal::Logs, &nested),
        Ok(Shape {
            resources: 3,
            scopes: 4,
            records: 8
        })
    );
    assert_eq!(count(Signal::Logs, &[]), Ok(Shape::default()));
}

#[test]
fn records_with_long_keys_lengths_and_varints_are_framed_like_short_ones() {
    // A record whose fields leave the one-byte fast path: a body longer than 127 bytes
    // (two-byte length), a severity of 300 (two-byte varint), and unknown fields with
    // two- and five-byte keys (field numbers 16 and 2^28), as a newer schema would add.
    let record = LogRecord {
        severity_number: 300,
        body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "x".repeat(300),
                ),
            ),
        }),
        ..Default::default()
    };
    let mut record = record.encode_to_vec();
    prost::encoding::encode_varint(16 << 3, &mut record);
    prost::encoding::encode_varint(u64::MAX, &mut record);
    prost::encoding::encode_varint(((1 << 28) << 3) | 2, &mut record);
    record.extend(encode_length(200));
    record.extend([7; 200]);
    let mut scope = vec![0x12];
    scope.extend(encode_length(record.len()));
    scope.extend(&record);
    let scope = scope.repeat(3);
    let mut resource = vec![0x12];
    resource.extend(encode_length(scope.len()));
    resource.extend(&scope);
    let mut request = vec![0x0a];
    request.extend(encode_length(resource.len()));
    request.extend(&resource);
    let expected = Shape {
        resources: 1,
        scopes: 1,
        records: 3,
    };
    assert_eq!(count_fast(Signal::Logs, &request), Some(expected));
    assert_eq!(count_detailed(Signal::Logs, &request), Ok(expected));
    assert_eq!(decode_with_prost(Signal::Logs, &request), Ok(expected));
    // Every cut of such a record (inside a field or between two): both walks and a
    // decoder agree on whether it is well-formed.
    for cut in 1..record.len() {
        let scope = [vec![0x12], encode_length(cut), record[..cut].to_vec()].concat();
        walks_agree(Signal::Logs, &one_scope(scope), cut);
    }
}

#[test]
fn metric_data_counts_as_a_decoder_keeps_it() {
    let points = |n: usize| vec![NumberDataPoint::default(); n];
    let gauge = |n| {
        metric::Data::Gauge(Gauge {
            data_points: points(n),
        })
    };
    let sum = |n| {
        metric::Data::Sum(Sum {
            data_points: points(n),
            ..Default::default()
        })
    };
    let metric = |data| Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric(gauge(3)), metric(sum(4)), Metric::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut bytes = request.encode_to_vec();
    assert_eq!(count(Signal::Metrics, &bytes).map(|s| s.records), Ok(7));
    // Two data fields in one metric: gauge then sum → the sum wins; sum twice → merged.
    let two_kinds = [
        metric(gauge(3)).encode_to_vec(),
        metric(sum(2)).encode_to_vec(),
    ]
    .concat();
    let twice_sum = [
        metric(sum(2)).encode_to_vec(),
        metric(sum(5)).encode_to_vec(),
    ]
    .concat();
    for (metric_bytes, expected) in [(two_kinds, 2), (twice_sum, 7)] {
        let scope = [vec![0x12], encode_length(metric_bytes.len()), metric_bytes].concat();
        let resource = [vec![0x12], encode_length(scope.len()), scope].concat();
        bytes = [vec![0x0a], encode_length(resource.len()), resource].concat();
        assert_eq!(
            count(Signal::Metrics, &bytes).map(|s| s.records),
            Ok(expected)
        );
        assert_eq!(
            decode_with_prost(Signal::Metrics, &bytes).map(|s| s.records),
            Ok(expected)
        );
    }
}

fn encode_length(length: usize) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(length as u64, &mut out);
    out
}

#[test]
fn every_truncation_is_refused_like_a_full_decode() {
    let payload = synthetic(Signal::Logs, 5, "t", 1);
    let bytes = payload.bytes();
    for cut in 1..bytes.len() {
        let ours = count(Signal::Logs, &bytes[..cut]);
        let prost = decode_with_prost(Signal::Logs, &bytes[..cut]);
        // A cut that falls between two top-level fields is a shorter valid request.
        assert_eq!(
            ours.is_ok(),
            prost.is_ok(),
            "cut at {cut}: {ours:?} vs {prost:?}"
        );
    }
}

#[test]
fn errors_name_the_field_and_the_problem() {
    let bytes = logs(&[&[2]]);
    let truncated = count(Signal::Logs, &bytes[..bytes.len() - 1]).expect_err("truncated");
    assert_eq!(
        truncated.to_string(),
        "failed to decode Protobuf message: buffer underflow: field 1 claims 11 bytes, \
         10 left at byte 0"
    );
    // resource_logs as a varint.
    let wrong_type = count(Signal::Logs, &[0x08, 0x01]).expect_err("wire type");
    assert_eq!(
        wrong_type.to_string(),
        "failed to decode Protobuf message: ExportLogsServiceRequest.resource_logs: \
         invalid wire type: 0 (expected 2)"
    );
    let field_zero = count(Signal::Logs, &[0x02, 0x00]).expect_err("field 0");
    assert_eq!(
        field_zero.to_string(),
        "failed to decode Protobuf message: invalid field number 0 at byte 0"
    );
    let group = count(Signal::Logs, &[0x0b]).expect_err("group");
    assert_eq!(
        group.to_string(),
        "failed to decode Protobuf message: unsupported wire type 3 at byte 0"
    );
    let long_varint = [&[0x10][..], &[0xff; 11]].concat(); // field 2, an endless varint
    let long_varint = count(Signal::Logs, &long_varint).expect_err("varint");
    assert_eq!(
        long_varint.to_string(),
        "failed to decode Protobuf message: varint longer than 10 bytes at byte 1"
    );
    // A broken record deep inside: the path leads to it.
    let record = [0x08, 0x80]; // field 1, a varint cut short
    let scope = [vec![0x12, record.len() as u8], record.to_vec()].concat();
    let resource = [vec![0x12, scope.len() as u8], scope].concat();
    let request = [vec![0x0a, resource.len() as u8], resource].concat();
    let deep = count(Signal::Logs, &request).expect_err("deep");
    assert_eq!(
        deep.to_string(),
        "failed to decode Protobuf message: ExportLogsServiceRequest.resource_logs: \
         ResourceLogs.scope_logs: ScopeLogs.log_records: truncated varint at byte 1"
    );
}

#[test]
fn the_fast_walk_and_the_detailed_walk_agree_on_every_mutation() {
    for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
        let payload = synthetic(signal, 3, "t", 1);
        let bytes = payload.bytes().to_vec();
        let mut mutations: Vec<Vec<u8>> = (0..=bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for i in 0..bytes.len() {
            for mutate in [
                |b: u8| b ^ 0x01,
                |b: u8| b ^ 0x80,
                |_| 0x00,
                |_| 0xff,
                |b: u8| b ^ 0x07,
            ] {
                let mut mutated = bytes.clone();
                mutated[i] = mutate(mutated[i]);
                mutations.push(mutated);
            }
        }
        for mutated in &mutations {
            let fast = count_fast(signal, mutated);
            let detailed = count_detailed(signal, mutated);
            assert_eq!(
                fast,
                detailed.clone().ok(),
                "{signal} {mutated:?}: {detailed:?}"
            );
            if let (Ok(ours), Ok(theirs)) = (&detailed, decode_with_prost(signal, mutated)) {
                assert_eq!(*ours, theirs, "{signal} {mutated:?}");
            }
        }
    }
}

/// A request of one resource and one scope, whose fields are `scope`.
fn one_scope(scope: Vec<u8>) -> Vec<u8> {
    let resource = [vec![0x12], encode_length(scope.len()), scope].concat();
    [vec![0x0a], encode_length(resource.len()), resource].concat()
}

/// Both walks agree on `request` (cut at `cut`), and with a full decode on whether it is
/// well-formed.
fn walks_agree(signal: Signal, request: &[u8], cut: usize) {
    let detailed = count_detailed(signal, request);
    assert_eq!(
        count_fast(signal, request),
        detailed.clone().ok(),
        "cut at {cut}"
    );
    assert_eq!(
        detailed.is_ok(),
        decode_with_prost(signal, request).is_ok(),
        "cut at {cut}: {detailed:?}"
    );
}

/// Both walks and a full decode count `records` in `request`, of one resource and scope.
fn all_count(signal: Signal, request: &[u8], records: usize) {
    let expected = Shape {
        resources: 1,
        scopes: 1,
        records,
    };
    assert_eq!(count_fast(signal, request), Some(expected));
    assert_eq!(count_detailed(signal, request), Ok(expected));
    assert_eq!(decode_with_prost(signal, request), Ok(expected));
}

#[test]
fn records_under_longer_keys_and_lengths_are_counted_as_records() {
    let record = LogRecord {
        severity_number: 9,
        ..Default::default()
    }
    .encode_to_vec();
    let length = u8::try_from(record.len()).expect("short record");
    // The same record under its key and length as encoders write them (0x12, one byte),
    // a two-byte length, a three-byte length, and a two-byte key: four records.
    let scope = [
        &[0x12, length][..],
        &record,
        &[0x12, length | 0x80, 0x00],
        &record,
        &[0x12, length | 0x80, 0x80, 0x00],
        &record,
        &[0x92, 0x00, length],
        &record,
    ]
    .concat();
    all_count(Signal::Logs, &one_scope(scope), 4);
    // Inside a record too: a severity as a two-byte varint, a severity text under a
    // three-byte length; and every cut of it, where the walks must agree.
    let record = [&[0x10, 0x89, 0x00][..], &[0x1a, 0x84, 0x80, 0x00], b"INFO"].concat();
    let framed = |record: &[u8]| [vec![0x12], encode_length(record.len()), record.to_vec()];
    all_count(Signal::Logs, &one_scope(framed(&record).concat()), 1);
    for cut in 0..record.len() {
        walks_agree(
            Signal::Logs,
            &one_scope(framed(&record[..cut]).concat()),
            cut,
        );
    }
    // Data points likewise (field 1 of a gauge: key 0x0a, or 0x8a 0x00).
    let point = NumberDataPoint::default().encode_to_vec();
    let point_length = u8::try_from(point.len()).expect("short point");
    let gauge = [
        &[0x0a, point_length][..],
        &point,
        &[0x8a, 0x00, point_length],
        &point,
    ]
    .concat();
    let metric = [vec![0x2a], encode_length(gauge.len()), gauge].concat();
    let scope = [vec![0x12], encode_length(metric.len()), metric].concat();
    all_count(Signal::Metrics, &one_scope(scope), 2);
}

#[test]
fn the_walks_agree_on_random_damage() {
    // Several bytes changed at once, at places a seeded generator picks: what the
    // single-byte mutations above cannot reach (a length and the field after it both
    // wrong, a short length made long).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for signal in [Signal::Logs, Signal::Metrics, Signal::Traces] {
        let bytes = synthetic(signal, 4, "random", 1).bytes().to_vec();
        for _ in 0..5_000 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % damaged.len() as u64) as usize;
                damaged[at] = next() as u8;
            }
            let fast = count_fast(signal, &damaged);
            let detailed = count_detailed(signal, &damaged);
            assert_eq!(fast, detailed.clone().ok(), "{signal} {damaged:?}");
            if let (Ok(ours), Ok(theirs)) = (&detailed, decode_with_prost(signal, &damaged)) {
                assert_eq!(*ours, theirs, "{signal} {damaged:?}");
            }
        }
    }
}

#[test]
fn unknown_fields_are_skipped_as_a_decoder_skips_them() {
    let mut bytes = logs(&[&[3]]);
    // Unknown top-level fields of each wire type: varint, fixed64, bytes, fixed32.
    bytes.extend([0x10, 0x96, 0x01]);
    bytes.extend([0x19, 1, 2, 3, 4, 5, 6, 7, 8]);
    bytes.extend([0x22, 0x02, b'h', b'i']);
    bytes.extend([0x2d, 1, 2, 3, 4]);
    assert_eq!(count(Signal::Logs, &bytes).map(|s| s.records), Ok(3));
    assert_eq!(
        decode_with_prost(Signal::Logs, &bytes).map(|s| s.records),
        Ok(3)
    );
}
