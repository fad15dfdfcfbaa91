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
mod tests;
