//! Payloads that wait for a free request, merged into one: protobuf payloads of one signal
//! and one sender (identity), whose concatenation is, by protobuf's rules, the export request
//! holding both.

use bytes::BytesMut;
use otap_df_core::capability::Identity;
use otap_df_core::data::{Encoding, OtlpPayload, Signal};

/// The payloads waiting for a free request.
pub(crate) enum Waiting {
    /// One payload, as it came (no copy until a second one joins it).
    One(OtlpPayload),
    /// Several protobuf payloads of one signal, concatenated.
    Merged {
        signal: Signal,
        records: u64,
        bytes: BytesMut,
        identity: Option<Identity>,
    },
}

impl Waiting {
    fn len(&self) -> usize {
        match self {
            Waiting::One(payload) => payload.bytes().len(),
            Waiting::Merged { bytes, .. } => bytes.len(),
        }
    }

    fn signal(&self) -> Signal {
        match self {
            Waiting::One(payload) => payload.signal(),
            Waiting::Merged { signal, .. } => *signal,
        }
    }

    fn identity(&self) -> Option<&Identity> {
        match self {
            Waiting::One(payload) => payload.identity(),
            Waiting::Merged { identity, .. } => identity.as_ref(),
        }
    }

    fn mergeable(&self) -> bool {
        match self {
            Waiting::One(payload) => payload.encoding() == Encoding::Protobuf,
            Waiting::Merged { .. } => true,
        }
    }

    /// Appends `payload` when it can be merged within `max_bytes`; gives it back otherwise.
    pub(crate) fn merge(
        &mut self,
        payload: OtlpPayload,
        max_bytes: usize,
    ) -> Result<(), OtlpPayload> {
        if !self.mergeable()
            || payload.encoding() != Encoding::Protobuf
            || payload.signal() != self.signal()
            || payload.identity() != self.identity()
            || self.len() + payload.bytes().len() > max_bytes
        {
            return Err(payload);
        }
        if let Waiting::One(first) = self {
            let mut bytes = BytesMut::with_capacity(max_bytes.min(first.bytes().len() * 8));
            bytes.extend_from_slice(first.bytes());
            *self = Waiting::Merged {
                signal: first.signal(),
                records: first.records(),
                bytes,
                identity: first.identity().cloned(),
            };
        }
        if let Waiting::Merged { records, bytes, .. } = self {
            *records += payload.records();
            bytes.extend_from_slice(payload.bytes());
        }
        Ok(())
    }

    pub(crate) fn into_payload(self) -> OtlpPayload {
        match self {
            Waiting::One(payload) => payload,
            Waiting::Merged {
                signal,
                records,
                bytes,
                identity,
            } => {
                let payload = OtlpPayload::new(signal, Encoding::Protobuf, records, bytes.freeze());
                match identity {
                    Some(identity) => payload.with_identity(identity),
                    None => payload,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_concatenates_protobuf_payloads_of_one_signal_up_to_the_bound() {
        use crate::otlp::{decode_with_prost, synthetic};
        let a = synthetic(Signal::Logs, 3, "a", 1);
        let b = synthetic(Signal::Logs, 5, "b", 2);
        let size = a.bytes().len() + b.bytes().len();
        let mut waiting = Waiting::One(a.clone());
        waiting.merge(b.clone(), size).expect("fits exactly");
        // One byte more than the bound: given back whole.
        let refused = waiting.merge(a.clone(), size).expect_err("over the bound");
        assert_eq!(refused.bytes(), a.bytes());
        let merged = waiting.into_payload();
        assert_eq!(merged.records(), 8);
        assert_eq!(merged.bytes().len(), size);
        let shape = decode_with_prost(Signal::Logs, merged.bytes()).expect("valid protobuf");
        assert_eq!((shape.resources, shape.scopes, shape.records), (2, 2, 8));

        let unlimited = usize::MAX;
        let traces = synthetic(Signal::Traces, 1, "t", 1);
        assert!(Waiting::One(a.clone()).merge(traces, unlimited).is_err());
        let json = crate::otlp::to_json(&a).expect("json");
        assert!(
            Waiting::One(json.clone())
                .merge(b.clone(), unlimited)
                .is_err()
        );
        assert!(Waiting::One(b.clone()).merge(json, unlimited).is_err());

        // Two senders' payloads stay apart; one sender's merge and keep who sent them.
        let acme = Identity::with_attributes("a", [("tenant", "acme")]);
        let globex = Identity::with_attributes("b", [("tenant", "globex")]);
        let mut waiting = Waiting::One(a.clone().with_identity(acme.clone()));
        assert!(waiting.merge(b.clone(), unlimited).is_err());
        assert!(
            waiting
                .merge(b.clone().with_identity(globex), unlimited)
                .is_err()
        );
        waiting
            .merge(b.with_identity(acme.clone()), unlimited)
            .expect("same sender");
        assert_eq!(waiting.into_payload().identity(), Some(&acme));
    }
}
