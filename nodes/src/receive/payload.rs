//! An admitted body taken into the pipeline: decompressed (gzip or zstd, within
//! `max_body_size`), validated and counted by walking its wire format in place
//! ([`crate::otlp::wire`]), never decoded into owned structures, then handed on into the room
//! admission reserved.

use std::io::Read;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use otap_df_core::capability::Identity;
use otap_df_core::data::{
    Acknowledgement, AcknowledgementWait, Encoding, NotAccepted, OtlpPayload, Signal,
};
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

/// Why [`gather`] did not give a whole body.
#[derive(Debug)]
pub(crate) enum Gathering {
    /// More than its limit arrived.
    TooLarge,
    /// The connection failed or the stream was reset before its end.
    Failed(hyper::Error),
    /// It did not all arrive within the timeout of [`gather_within`].
    TimedOut,
}

impl Gathering {
    /// The refusal for a `what` ("body", "message") not gathered within `timeout` or past
    /// `max_size` bytes.
    pub(crate) fn refusal(self, what: &str, max_size: usize, timeout: Duration) -> Refusal {
        match self {
            Gathering::TooLarge => too_large(max_size),
            Gathering::TimedOut => Refusal::new(
                Reason::BodyTimeout,
                format!("the {what} did not arrive within {timeout:?}"),
            ),
            Gathering::Failed(error) => Refusal::new(
                Reason::BadRequest,
                format!("the {what} could not be read: {error}"),
            ),
        }
    }
}

/// [`gather`] within `timeout`. A body of a few kilobytes is mostly in hand by the time it is
/// first asked for: only one still on its way arms the timer (an entry in the core's timer
/// wheel per request is measurable at these rates), and that wait is boxed, so that its timer
/// sizes only the requests that wait, not the future of every request.
pub(crate) async fn gather_within(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Gathering> {
    let mut gathering = std::pin::pin!(gather(body, limit));
    match std::future::poll_fn(|cx| Poll::Ready(gathering.as_mut().poll(cx))).await {
        Poll::Ready(read) => read,
        Poll::Pending => Box::pin(tokio::time::timeout(timeout, gathering))
            .await
            .unwrap_or(Err(Gathering::TimedOut)),
    }
}

/// A request's body, read to its end within `limit` bytes: the frame a body of a few
/// kilobytes arrives in is kept as it came (no copy, nothing allocated); a body in more than
/// one frame is joined.
pub(crate) async fn gather(mut body: Incoming, limit: usize) -> Result<Bytes, Gathering> {
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut length = 0usize;
    while let Some(frame) = body.frame().await {
        // Trailers (HTTP/2's, after the data) carry nothing a payload needs.
        let Ok(data) = frame.map_err(Gathering::Failed)?.into_data() else {
            continue;
        };
        length = length.saturating_add(data.len());
        if length > limit {
            return Err(Gathering::TooLarge);
        }
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if joined.is_empty() => {
                first = Some(data);
                // A body whose length was declared ends with its last byte: no poll for
                // the end.
                if body.is_end_stream() {
                    break;
                }
            }
            kept => {
                if let Some(kept) = kept {
                    joined.extend_from_slice(&kept);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// How a body (HTTP's `Content-Encoding`) or a message (gRPC's `grpc-encoding`) is
/// compressed: the codings OTLP senders use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    Zstd,
}

impl Coding {
    /// The coding `name` names (ASCII case-insensitive, surrounding blanks ignored), if it is
    /// one of these.
    pub(crate) fn named(name: &[u8]) -> Option<Self> {
        let name = name.trim_ascii();
        [
            (&b"identity"[..], Self::Identity),
            (b"gzip", Self::Gzip),
            (b"zstd", Self::Zstd),
        ]
        .into_iter()
        .find_map(|(known, coding)| name.eq_ignore_ascii_case(known).then_some(coding))
    }

    /// The names [`Coding::named`] takes, for a refusal's message.
    pub(crate) const NAMES: &'static str = "gzip, zstd or identity";

    /// `body` decompressed, when it holds at most `max_body_size` bytes decompressed.
    pub(crate) fn decompress(self, body: Bytes, max_body_size: usize) -> Result<Bytes, Refusal> {
        let (name, read) = match self {
            Self::Identity => return Ok(body),
            Self::Gzip => ("gzip", ungzip(&body, max_body_size)),
            Self::Zstd => ("zstd", unzstd(&body, max_body_size)),
        };
        match read {
            Ok(plain) if plain.len() > max_body_size => Err(too_large(max_body_size)),
            Ok(plain) => Ok(Bytes::from(plain)),
            Err(error) => Err(Refusal::new(
                Reason::BadRequest,
                format!("the {name} body does not decompress: {error}"),
            )),
        }
    }
}

/// `body` gunzipped, up to one byte past `max_body_size` (the caller refuses that).
///
/// Out of line, as [`unzstd`]: a decoder's state makes a stack frame of tens of KiB, whose
/// pages a call touches (stack probes) before anything else — inlined into
/// [`Coding::decompress`], 13 pages for every uncompressed body that only passed through.
#[inline(never)]
fn ungzip(body: &[u8], max_body_size: usize) -> std::io::Result<Vec<u8>> {
    let mut plain = Vec::with_capacity((body.len() * 4).min(max_body_size + 1));
    flate2::read::GzDecoder::new(body)
        .take(max_body_size as u64 + 1)
        .read_to_end(&mut plain)?;
    Ok(plain)
}

/// `body`'s zstd frames decompressed, up to one byte past `max_body_size` (the caller refuses
/// that); the output sized by the frame's declared content size when it has one.
#[inline(never)]
fn unzstd(body: &[u8], max_body_size: usize) -> std::io::Result<Vec<u8>> {
    let declared = zstd::zstd_safe::get_frame_content_size(body)
        .ok()
        .flatten()
        .map_or(body.len() * 4, |size| size as usize);
    let mut plain = Vec::with_capacity(declared.min(max_body_size + 1));
    zstd::stream::read::Decoder::with_buffer(body)?
        .take(max_body_size as u64 + 1)
        .read_to_end(&mut plain)?;
    Ok(plain)
}

/// Validates `body` (an export request of `signal` in `encoding`), counts its records in,
/// and hands it on into `permit`; `acknowledged`: with an acknowledgement, whose outcome is
/// returned (the sender is answered once it is [`settled`]).
pub(crate) fn take(
    signal: Signal,
    encoding: Encoding,
    body: Bytes,
    identity: Option<Identity>,
    permit: OutputPermit<'_>,
    acknowledged: bool,
    counters: &Counters,
) -> Result<Option<AcknowledgementWait>, Refusal> {
    let shape = decode_shape(signal, encoding, &body)
        .map_err(|message| Refusal::new(Reason::BadRequest, message))?;
    let records = shape.records as u64;
    NodeCounters::add(&counters.counters.records_in, records);
    let mut payload = OtlpPayload::new(signal, encoding, records, body);
    if let Some(identity) = identity {
        payload = payload.with_identity(identity);
    }
    if !acknowledged {
        permit.send(payload);
        return Ok(None);
    }
    let (ack, kept) = Acknowledgement::new();
    permit.send(payload.with_acknowledgement(ack));
    Ok(Some(kept))
}

/// Waits until a payload handed on with an acknowledgement is kept for good downstream;
/// the refusal the sender gets when it was not (`429` for a full durable queue, `503`
/// otherwise: both say "send it again").
pub(crate) async fn settled(kept: AcknowledgementWait) -> Result<(), Refusal> {
    kept.await.map_err(|not| match not {
        NotAccepted::Full(why) => Refusal::new(Reason::QueueFull, why),
        NotAccepted::Failed(why) => Refusal::new(Reason::NotKept, why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codings_are_named_as_http_and_grpc_name_them() {
        assert_eq!(Coding::named(b"gzip"), Some(Coding::Gzip));
        assert_eq!(Coding::named(b" ZStd "), Some(Coding::Zstd));
        assert_eq!(Coding::named(b"identity"), Some(Coding::Identity));
        assert_eq!(Coding::named(b"br"), None);
        assert_eq!(Coding::named(b"gzip, zstd"), None);
    }

    #[test]
    fn each_coding_decompresses_within_the_limit_and_says_what_did_not() {
        let plain = Bytes::from(vec![7u8; 4096]);
        let gzip = crate::otlp_http::exporter::Compression::Gzip
            .compress(&plain)
            .unwrap();
        let zstd = crate::otlp_http::exporter::Compression::Zstd
            .compress(&plain)
            .unwrap();
        for (coding, body) in [(Coding::Gzip, &gzip), (Coding::Zstd, &zstd)] {
            assert_eq!(coding.decompress(body.clone(), 4096).unwrap(), plain);
            let over = coding.decompress(body.clone(), 4095).unwrap_err();
            assert_eq!(over.reason, Reason::TooLarge, "{coding:?}");
            let torn = coding
                .decompress(body.slice(..body.len() - 4), 4096)
                .unwrap_err();
            assert_eq!(torn.reason, Reason::BadRequest, "{coding:?}");
        }
        let foreign = Coding::Zstd.decompress(gzip, 4096).unwrap_err();
        assert!(
            foreign
                .message
                .starts_with("the zstd body does not decompress: "),
            "{}",
            foreign.message
        );
        assert_eq!(
            Coding::Identity.decompress(plain.clone(), 1).unwrap(),
            plain
        );
    }
}
