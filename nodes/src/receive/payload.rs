//! An admitted body taken into the pipeline: decompressed (within `max_body_size`),
//! validated and counted by walking its wire format in place ([`crate::otlp::wire`]), never
//! decoded into owned structures, then handed on into the room admission reserved.

use std::io::Read;

use bytes::Bytes;
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::node::{NodeCounters, OutputPermit};

use super::counters::Counters;
use super::{Reason, Refusal};
use crate::otlp::decode_shape;

/// A body over `max_body_size` bytes.
pub(crate) fn too_large(max_body_size: usize) -> Refusal {
    Refusal::new(
        Reason::TooLarge,
        format!("the body is larger than {max_body_size} bytes"),
    )
}

/// `body`, gzip-decompressed, when it holds at most `max_body_size` bytes decompressed.
pub(crate) fn gunzip(body: &[u8], max_body_size: usize) -> Result<Bytes, Refusal> {
    let mut plain = Vec::with_capacity(body.len() * 4);
    let read = flate2::read::GzDecoder::new(body)
        .take(max_body_size as u64 + 1)
        .read_to_end(&mut plain);
    match read {
        Ok(length) if length > max_body_size => Err(too_large(max_body_size)),
        Ok(_) => Ok(Bytes::from(plain)),
        Err(error) => Err(Refusal::new(
            Reason::BadRequest,
            format!("the gzip body does not decompress: {error}"),
        )),
    }
}

/// Validates `body` (an export request of `signal` in `encoding`), counts its records in,
/// and hands it on into `permit`.
pub(crate) fn take(
    signal: Signal,
    encoding: Encoding,
    body: Bytes,
    permit: OutputPermit<'_>,
    counters: &Counters,
) -> Result<(), Refusal> {
    let shape = decode_shape(signal, encoding, &body)
        .map_err(|message| Refusal::new(Reason::BadRequest, message))?;
    let records = shape.records as u64;
    NodeCounters::add(&counters.counters.records_in, records);
    permit.send(OtlpPayload::new(signal, encoding, records, body));
    Ok(())
}
