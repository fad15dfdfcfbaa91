//! Counting what an OTLP protobuf request holds without materialising it.
//!
//! A receiver that only forwards needs the number of resources, scopes and records, and the
//! assurance that the bytes are a well-formed request; decoding every record into owned
//! structures (what `prost` does) costs more than everything else a gateway does with a
//! request. This module walks the protobuf wire format in place instead: the envelope levels
//! (request → resource → scope → records, and for metrics metric → data → data points) field by
//! field, checking the wire type of every field it interprets, and each record's own fields
//! for framing — every tag valid, every varint terminated, every length inside its parent.
//! The depth is fixed by the schema (at most seven levels for metrics), so no input can make
//! it recurse further.
//!
//! What it does not check, unlike a full decode: the UTF-8 of string fields and the inner
//! structure of a record's nested values (attributes, bodies). The bytes are forwarded as
//! they came; a node that needs to look inside decodes them and reports what it finds.

use otap_df_core::data::Signal;

use super::Shape;

/// Why a request is not well-formed protobuf: what was wrong, and where (the message and
/// field path, as `prost` reports it, and the byte offset inside the innermost message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to decode Protobuf message: {}", self.0)
    }
}

impl WireError {
    fn at(offset: usize, what: &str) -> Self {
        WireError(format!("{what} at byte {offset}"))
    }

    /// Prefixes the field the error was found in (`ScopeLogs.log_records: ...`).
    fn inside(self, message: &str, field: &str) -> Self {
        WireError(format!("{message}.{field}: {}", self.0))
    }
}

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint,
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

impl Value<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint => 0,
            Value::Fixed64 => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32 => 5,
        }
    }
}

/// Reads the varint at `*at` and moves past it. Most varints on the wire (tags, lengths of
/// records, enums) are one byte: that path is the first branch.
#[inline(always)]
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, WireError> {
    if let Some(&byte) = bytes.get(*at)
        && byte < 0x80
    {
        *at += 1;
        return Ok(u64::from(byte));
    }
    varint_long(bytes, at)
}

#[inline(never)]
fn varint_long(bytes: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let start = *at;
    let mut value = 0u64;
    for shift in 0..10 {
        let Some(&byte) = bytes.get(*at) else {
            return Err(WireError::at(start, "truncated varint"));
        };
        *at += 1;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte < 0x80 {
            if shift == 9 && byte > 1 {
                return Err(WireError::at(start, "varint overflows 64 bits"));
            }
            return Ok(value);
        }
    }
    Err(WireError::at(start, "varint longer than 10 bytes"))
}

/// Calls `visit` with each field of the message `bytes` (field number, value), checking the
/// framing of every field.
#[inline(always)]
fn fields<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(u32, Value<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let key = varint(bytes, &mut at)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(WireError::at(
                start,
                &format!("invalid field number {number}"),
            ));
        }
        let value = match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
                Value::Varint
            }
            1 => {
                at = take(bytes, at, 8)?;
                Value::Fixed64
            }
            2 => {
                let length = varint(bytes, &mut at)?;
                let begin = at;
                at = take(bytes, at, length).map_err(|_| {
                    WireError::at(
                        start,
                        &format!(
                            "buffer underflow: field {number} claims {length} bytes, {} left",
                            bytes.len() - begin
                        ),
                    )
                })?;
                Value::Bytes(&bytes[begin..at])
            }
            5 => {
                at = take(bytes, at, 4)?;
                Value::Fixed32
            }
            other => {
                return Err(WireError::at(
                    start,
                    &format!("unsupported wire type {other}"),
                ));
            }
        };
        visit(number as u32, value)?;
    }
    Ok(())
}

/// The offset after `length` more bytes from `at`, if the message holds them.
#[inline(always)]
fn take(bytes: &[u8], at: usize, length: u64) -> Result<usize, WireError> {
    usize::try_from(length)
        .ok()
        .and_then(|length| at.checked_add(length))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| WireError::at(at, "buffer underflow"))
}

/// A sub-message field: its bytes, or a wire-type error naming where it was.
fn embedded<'a>(value: Value<'a>, message: &str, field: &str) -> Result<&'a [u8], WireError> {
    match value {
        Value::Bytes(bytes) => Ok(bytes),
        other => Err(WireError(format!(
            "invalid wire type: {} (expected 2)",
            other.wire_type()
        ))
        .inside(message, field)),
    }
}

/// Walks a message only for framing (a record, a resource, a scope).
#[inline]
fn framed(bytes: &[u8], message: &str, field: &str) -> Result<(), WireError> {
    if well_framed(bytes) {
        return Ok(());
    }
    // The walk that says what is wrong, only once something is.
    let error = match fields(bytes, |_, _| Ok(())) {
        Err(error) => error,
        Ok(()) => WireError::at(0, "malformed field"),
    };
    Err(error.inside(message, field))
}

/// What a field's first byte says when it is a one-byte key: [`LENGTH_DELIMITED`],
/// [`VARINT`], the size of a fixed-size field with its key (9 or 5), or [`OTHER`] (a longer
/// key, field number 0, or a wire type no message uses: left to the general path).
const FIELD: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut key = 8;
    while key < 0x80 {
        table[key] = match key & 7 {
            0 => VARINT,
            1 => 9,
            2 => LENGTH_DELIMITED,
            5 => 5,
            _ => OTHER,
        };
        key += 1;
    }
    table
};
const OTHER: u8 = 0;
const VARINT: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;

/// Whether every field of the message `bytes` is well framed: the same checks as [`fields`],
/// with no error to build.
///
/// Records are most of a request's bytes, and encoders write their fields with a one-byte
/// key (field numbers 1–15) and, but for long strings, a one-byte varint or length. This
/// loop reads such a key with one look-up in [`FIELD`] and its value's size with no varint
/// loop, and does not check each field against the end: a field may run past it, the loop
/// stops there, and the message is refused unless its last field ended exactly at its end.
/// The first field written otherwise hands the rest of the message to [`well_framed_from`].
#[inline(always)]
fn well_framed(bytes: &[u8]) -> bool {
    let end = bytes.len();
    let mut at = 0;
    while at < end {
        let next = match FIELD[usize::from(bytes[at])] {
            // Length-delimited (strings, nested messages), the length in one byte or two.
            LENGTH_DELIMITED => match short_length(bytes, at + 1) {
                Some((begin, length)) => begin + length,
                None => return well_framed_from(bytes, at),
            },
            // A varint of one byte (enums, flags, small numbers) or more.
            VARINT => match bytes.get(at + 1) {
                Some(&value) if value < 0x80 => at + 2,
                _ => return well_framed_from(bytes, at),
            },
            // A longer key, or an invalid one.
            OTHER => return well_framed_from(bytes, at),
            // Fixed64 and fixed32: the key and the value.
            fixed => at + usize::from(fixed),
        };
        // At most 16 384 bytes past `end` (a short length's reach): no overflow.
        at = next;
    }
    at == end
}

/// A length of one or two bytes at `at` (what encoders write for values under 16 384 bytes):
/// where the value begins (at most `bytes.len()`) and its length, which may run past the end.
/// `None` for a longer or a truncated length: the general path reads it, or says what is wrong.
#[inline(always)]
fn short_length(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    match bytes.get(at) {
        Some(&length) if length < 0x80 => Some((at + 1, usize::from(length))),
        Some(&low) => match bytes.get(at + 1) {
            Some(&high) if high < 0x80 => {
                Some((at + 2, usize::from(low & 0x7f) | usize::from(high) << 7))
            }
            _ => None,
        },
        None => None,
    }
}

/// [`well_framed`] for the fields from `at` on, of any encoding.
#[inline(never)]
fn well_framed_from(bytes: &[u8], mut at: usize) -> bool {
    while at < bytes.len() {
        match next_field(bytes, at) {
            Some((.., next)) => at = next,
            None => return false,
        }
    }
    true
}

/// A key that is not one byte of a valid field number (1–15): read as a varint, then its
/// field number checked (0 and numbers past 2^29 − 1 are invalid).
#[cold]
fn long_key(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let key = varint_value(bytes, at)?;
    let number = key >> 3;
    (number != 0 && number <= u64::from(u32::MAX >> 3)).then_some(key)
}

/// The varint at `*at`, moving past it: up to 10 bytes, the 10th keeping within 64 bits.
#[inline(always)]
fn varint_value(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let first = *bytes.get(*at)?;
    *at += 1;
    if first < 0x80 {
        return Some(u64::from(first));
    }
    let mut value = u64::from(first & 0x7f);
    for shift in 1..10 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte < 0x80 {
            return (shift < 9 || byte <= 1).then_some(value);
        }
    }
    None
}

/// The fast twin of [`fields`]: calls `visit` with each field's number, wire type and (for a
/// length-delimited field) its bytes; `None` as soon as anything is wrong, with no error to
/// build. [`count`] walks again with [`fields`] only to say what is wrong.
#[inline(always)]
fn each_field<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(u64, u64, &'a [u8]) -> Option<()>,
) -> Option<()> {
    let mut at = 0;
    while at < bytes.len() {
        let (number, wire_type, value);
        (number, wire_type, value, at) = next_field(bytes, at)?;
        visit(number, wire_type, value)?;
    }
    Some(())
}

/// The field that starts at `at` (before `bytes.len()`): its number, wire type, bytes (empty
/// but for a length-delimited field) and where the next one starts; `None` when it is not
/// well framed.
#[inline(always)]
fn next_field(bytes: &[u8], mut at: usize) -> Option<(u64, u64, &[u8], usize)> {
    let end = bytes.len();
    let key = match bytes[at] {
        // A one-byte key of a valid field number (1–15): what encoders write for every
        // envelope field.
        key @ 8..0x80 => {
            at += 1;
            u64::from(key)
        }
        _ => long_key(bytes, &mut at)?,
    };
    let number = key >> 3;
    let wire_type = key & 7;
    let length = match wire_type {
        0 => {
            varint_value(bytes, &mut at)?;
            return Some((number, 0, &[], at));
        }
        1 => 8,
        2 => varint_value(bytes, &mut at)?,
        5 => 4,
        _ => return None,
    };
    // `at <= end` here: every read above was inside the slice.
    if length > (end - at) as u64 {
        return None;
    }
    let begin = at;
    at += length as usize;
    Some((number, wire_type, &bytes[begin..at], at))
}

/// Walks a message whose records are its length-delimited field with the one-byte `key`
/// (log records and spans in a scope, data points in a metric's data): counts them and
/// checks each is [`well_framed`]; every other field goes to `other`. The number of records,
/// or `None` as soon as anything is wrong.
///
/// Records are most of a request's fields, and this loop is where a receiver spends its time
/// on them: a record's key is one byte compared, its length read by [`short_length`];
/// anything else takes [`next_field`]'s general path.
#[inline(always)]
fn records_in<'a>(
    bytes: &'a [u8],
    key: u8,
    mut other: impl FnMut(u64, u64, &'a [u8]) -> Option<()>,
) -> Option<usize> {
    let end = bytes.len();
    let mut at = 0;
    let mut records = 0;
    while at < end {
        if bytes[at] == key
            && let Some((begin, length)) = short_length(bytes, at + 1)
        {
            let record = bytes.get(begin..begin + length)?;
            well_framed(record).then_some(())?;
            records += 1;
            at = begin + length;
            continue;
        }
        let (number, wire_type, value);
        (number, wire_type, value, at) = next_field(bytes, at)?;
        // A record in a longer encoding than the one-byte key and short length.
        if number == u64::from(key >> 3) && wire_type == 2 {
            well_framed(value).then_some(())?;
            records += 1;
        } else {
            other(number, wire_type, value)?;
        }
    }
    Some(records)
}

/// [`count`] when the request is well-formed, `None` otherwise: the same checks, one pass,
/// no error built.
fn count_fast(signal: Signal, bytes: &[u8]) -> Option<Shape> {
    /// A length-delimited field that is only framed (a resource, a scope, a record).
    #[inline(always)]
    fn framed_field(wire_type: u64, value: &[u8]) -> Option<()> {
        (wire_type == 2 && well_framed(value)).then_some(())
    }
    let mut shape = Shape::default();
    each_field(bytes, |number, wire_type, resource| {
        if number != 1 {
            return Some(());
        }
        (wire_type == 2).then_some(())?;
        shape.resources += 1;
        each_field(resource, |number, wire_type, value| match number {
            1 => framed_field(wire_type, value),
            2 => {
                (wire_type == 2).then_some(())?;
                shape.scopes += 1;
                if signal == Signal::Metrics {
                    return each_field(value, |number, wire_type, value| match number {
                        1 => framed_field(wire_type, value),
                        2 => {
                            (wire_type == 2).then_some(())?;
                            shape.records += metric_points_fast(value)?;
                            Some(())
                        }
                        3 => (wire_type == 2).then_some(()),
                        _ => Some(()),
                    });
                }
                // Log records and spans: field 2, length-delimited (key 0x12).
                shape.records +=
                    records_in(value, 0x12, |number, wire_type, value| match number {
                        1 => framed_field(wire_type, value),
                        // A record field of another wire type.
                        2 => None,
                        3 => (wire_type == 2).then_some(()),
                        _ => Some(()),
                    })?;
                Some(())
            }
            3 => (wire_type == 2).then_some(()),
            _ => Some(()),
        })
    })?;
    Some(shape)
}

/// [`metric_points`] when the metric is well-formed.
fn metric_points_fast(bytes: &[u8]) -> Option<usize> {
    let mut data: Option<(u64, usize)> = None;
    each_field(bytes, |number, wire_type, value| {
        match number {
            1..=3 => return (wire_type == 2).then_some(()),
            5 | 7 | 9 | 10 | 11 => {}
            _ => return Some(()),
        }
        (wire_type == 2).then_some(())?;
        // Data points: field 1, length-delimited (key 0x0a).
        let points = records_in(value, 0x0a, |number, _, _| (number != 1).then_some(()))?;
        data = match data {
            Some((same, before)) if same == number => Some((number, before + points)),
            _ => Some((number, points)),
        };
        Some(())
    })?;
    Some(data.map_or(0, |(_, points)| points))
}

/// The names of one signal's envelope messages and fields.
struct Envelope {
    request_field: &'static str,
    resource: &'static str,
    scopes_field: &'static str,
    scope: &'static str,
    records_field: &'static str,
}

const LOGS: Envelope = Envelope {
    request_field: "resource_logs",
    resource: "ResourceLogs",
    scopes_field: "scope_logs",
    scope: "ScopeLogs",
    records_field: "log_records",
};

const TRACES: Envelope = Envelope {
    request_field: "resource_spans",
    resource: "ResourceSpans",
    scopes_field: "scope_spans",
    scope: "ScopeSpans",
    records_field: "spans",
};

const METRICS: Envelope = Envelope {
    request_field: "resource_metrics",
    resource: "ResourceMetrics",
    scopes_field: "scope_metrics",
    scope: "ScopeMetrics",
    records_field: "metrics",
};

/// Counts the resources, scopes and records of an OTLP export request of `signal` in
/// protobuf, checking it is well-formed (see the module documentation for how far).
pub fn count(signal: Signal, bytes: &[u8]) -> Result<Shape, WireError> {
    match count_fast(signal, bytes) {
        Some(shape) => Ok(shape),
        // The walk that says what is wrong, only once something is.
        None => match count_detailed(signal, bytes) {
            Err(error) => Err(error),
            Ok(_) => Err(WireError::at(0, "malformed request")),
        },
    }
}

/// The walk that names what is wrong and where.
fn count_detailed(signal: Signal, bytes: &[u8]) -> Result<Shape, WireError> {
    let (envelope, request) = match signal {
        Signal::Logs => (&LOGS, "ExportLogsServiceRequest"),
        Signal::Traces => (&TRACES, "ExportTraceServiceRequest"),
        Signal::Metrics => (&METRICS, "ExportMetricsServiceRequest"),
    };
    let mut shape = Shape::default();
    fields(bytes, |number, value| {
        if number != 1 {
            return Ok(());
        }
        let resource = embedded(value, request, envelope.request_field)?;
        shape.resources += 1;
        resource_level(signal, envelope, resource, &mut shape)
            .map_err(|e| e.inside(request, envelope.request_field))
    })?;
    Ok(shape)
}

fn resource_level(
    signal: Signal,
    envelope: &Envelope,
    bytes: &[u8],
    shape: &mut Shape,
) -> Result<(), WireError> {
    let name = envelope.resource;
    fields(bytes, |number, value| match number {
        1 => framed(embedded(value, name, "resource")?, name, "resource"),
        2 => {
            let scope = embedded(value, name, envelope.scopes_field)?;
            shape.scopes += 1;
            scope_level(signal, envelope, scope, shape)
                .map_err(|e| e.inside(name, envelope.scopes_field))
        }
        3 => embedded(value, name, "schema_url").map(drop),
        _ => Ok(()),
    })
}

fn scope_level(
    signal: Signal,
    envelope: &Envelope,
    bytes: &[u8],
    shape: &mut Shape,
) -> Result<(), WireError> {
    let name = envelope.scope;
    let records = envelope.records_field;
    fields(bytes, |number, value| match number {
        1 => framed(embedded(value, name, "scope")?, name, "scope"),
        2 => {
            let record = embedded(value, name, records)?;
            if signal == Signal::Metrics {
                shape.records += metric_points(record).map_err(|e| e.inside(name, records))?;
                Ok(())
            } else {
                shape.records += 1;
                framed(record, name, records)
            }
        }
        3 => embedded(value, name, "schema_url").map(drop),
        _ => Ok(()),
    })
}

/// The data points of one `Metric`. Its data is a oneof: as a protobuf decoder does, a later
/// field of another kind replaces an earlier one, and a repeated field of the same kind adds
/// to it.
fn metric_points(bytes: &[u8]) -> Result<usize, WireError> {
    let mut data: Option<(u32, usize)> = None;
    fields(bytes, |number, value| {
        let kind = match number {
            1 => return embedded(value, "Metric", "name").map(drop),
            2 => return embedded(value, "Metric", "description").map(drop),
            3 => return embedded(value, "Metric", "unit").map(drop),
            5 => "gauge",
            7 => "sum",
            9 => "histogram",
            10 => "exponential_histogram",
            11 => "summary",
            _ => return Ok(()),
        };
        let points =
            data_points(embedded(value, "Metric", kind)?).map_err(|e| e.inside("Metric", kind))?;
        data = match data {
            Some((same, before)) if same == number => Some((number, before + points)),
            _ => Some((number, points)),
        };
        Ok(())
    })?;
    Ok(data.map_or(0, |(_, points)| points))
}

/// The data points of a `Gauge`, `Sum`, `Histogram`, `ExponentialHistogram` or `Summary`
/// (each keeps them in field 1).
fn data_points(bytes: &[u8]) -> Result<usize, WireError> {
    let mut points = 0;
    fields(bytes, |number, value| {
        if number == 1 {
            points += 1;
            framed(
                embedded(value, "data", "data_points")?,
                "data",
                "data_points",
            )?;
        }
        Ok(())
    })?;
    Ok(points)
}

#[cfg(test)]
mod tests {
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
            let mut mutations: Vec<Vec<u8>> =
                (0..=bytes.len()).map(|n| bytes[..n].to_vec()).collect();
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
}
