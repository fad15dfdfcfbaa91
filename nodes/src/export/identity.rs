//! `headers_from_identity:` of an exporter: headers (HTTP) or metadata (gRPC) set on each
//! request from who sent its payload, the identity the receiver's authorizer gave it
//! (`X-Scope-OrgID: tenant` forwards each tenant's data with its own header). A payload whose
//! identity lacks what a header needs is not sent (it would land in the wrong tenant, or in
//! none): it is counted, logged and dead-lettered as undeliverable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderName, HeaderValue};
use otap_df_core::capability::Identity;
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::data::OtlpPayload;
use otap_df_core::secret::Secret;

/// The attribute that stands for the identity's name.
pub(crate) const NAME: &str = "name";

/// Headers from identities, as an exporter holds them (`exporter:otlp_http` and
/// `exporter:otlp_grpc` do; a third party's exporter can too).
#[derive(Debug, Default)]
pub struct IdentityHeaders {
    headers: Vec<(HeaderName, String)>,
    /// The last sender's headers, made once: an authorizer hands a caller the same identity
    /// request after request, and a core sends for few senders in turn. Making them costs
    /// an allocation and a copy per value; finding them here, a pointer comparison.
    last: Mutex<Option<(Identity, SenderHeaders)>>,
}

/// The headers [`IdentityHeaders::of`] gives one payload: a slice of names and values, shared
/// by the payloads of one sender (cloning it does not copy them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderHeaders(Option<Arc<[(HeaderName, HeaderValue)]>>);

impl std::ops::Deref for SenderHeaders {
    type Target = [(HeaderName, HeaderValue)];

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap_or_default()
    }
}

impl IdentityHeaders {
    /// From `headers_from_identity`: header name → the identity's attribute (`name`: the
    /// identity's name). A header name HTTP does not allow is left out (the exporters' config
    /// check refuses it first).
    pub fn new(headers: &BTreeMap<String, String>) -> Self {
        Self {
            headers: headers
                .iter()
                .filter_map(|(name, attribute)| {
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        attribute.clone(),
                    ))
                })
                .collect(),
            last: Mutex::new(None),
        }
    }

    /// The headers for `data`, or why it cannot be sent: its sender has no identity, or lacks
    /// an attribute a header needs, or its value cannot be an HTTP header's.
    pub fn of(&self, data: &OtlpPayload) -> Result<SenderHeaders, String> {
        if self.headers.is_empty() {
            return Ok(SenderHeaders::default());
        }
        let Some(identity) = data.identity() else {
            return Err(
                "the payload has no identity (no authorizer took it) and `headers_from_identity` \
                 needs one; it is not sent without its headers"
                    .to_owned(),
            );
        };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((sender, headers)) = last.as_ref()
            && sender == identity
        {
            return Ok(headers.clone());
        }
        let headers = SenderHeaders(Some(self.make(identity)?));
        *last = Some((identity.clone(), headers.clone()));
        Ok(headers)
    }

    /// The headers of `identity`, made anew.
    fn make(&self, identity: &Identity) -> Result<Arc<[(HeaderName, HeaderValue)]>, String> {
        self.headers
            .iter()
            .map(|(header, attribute)| {
                let value = if attribute == NAME {
                    Some(identity.as_str())
                } else {
                    identity.attribute(attribute)
                };
                let value = value.ok_or_else(|| {
                    format!(
                        "the sender `{identity}` has no `{attribute}` for header `{header}`; \
                         the payload is not sent without it"
                    )
                })?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    format!(
                        "the sender `{identity}`'s `{attribute}` cannot be an HTTP header value \
                         (header `{header}`)"
                    )
                })?;
                Ok((header.clone(), value))
            })
            .collect()
    }
}

/// Each header a valid name, each attribute named, and no header also set statically.
pub(crate) fn check(
    config: &ComponentConfig<'_>,
    from_identity: &BTreeMap<String, String>,
    fixed: &BTreeMap<String, Secret>,
) -> Result<(), ConfigError> {
    for (name, attribute) in from_identity {
        let field = format!("headers_from_identity.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(config.invalid(&field, format!("`{name}` is not a valid HTTP header name")));
        }
        if attribute.is_empty() {
            return Err(config.invalid(
                &field,
                "name the identity attribute the header is set from (`tenant`), or `name` for \
                 the identity's name",
            ));
        }
        if fixed.keys().any(|fixed| fixed.eq_ignore_ascii_case(name)) {
            return Err(config.invalid(
                &field,
                format!("header `{name}` is also in `headers`; set it in one place"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use otap_df_core::data::Signal;

    use super::*;

    #[test]
    fn headers_are_read_from_the_identity_or_the_payload_is_not_sent() {
        let headers = IdentityHeaders::new(&BTreeMap::from([
            ("x-scope-orgid".to_owned(), "tenant".to_owned()),
            ("x-sender".to_owned(), NAME.to_owned()),
        ]));
        let payload = crate::otlp::synthetic(Signal::Logs, 1, "l", 1);
        let acme = payload
            .clone()
            .with_identity(Identity::with_attributes("svc-a", [("tenant", "acme")]));
        let set = |headers: &SenderHeaders| -> Vec<(String, String)> {
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().expect("text").to_owned()))
                .collect()
        };
        let made = headers.of(&acme).expect("headers");
        assert_eq!(
            set(&made),
            [
                ("x-scope-orgid".to_owned(), "acme".to_owned()),
                ("x-sender".to_owned(), "svc-a".to_owned())
            ]
        );
        // The same sender again: the headers made for it, not made anew.
        let again = headers.of(&acme).expect("headers");
        assert!(Arc::ptr_eq(
            made.0.as_ref().expect("some"),
            again.0.as_ref().expect("some")
        ));
        // Another sender (and one equal to the first but a value of its own): its own.
        let globex = payload
            .clone()
            .with_identity(Identity::with_attributes("svc-g", [("tenant", "globex")]));
        assert_eq!(
            set(&headers.of(&globex).expect("headers")),
            [
                ("x-scope-orgid".to_owned(), "globex".to_owned()),
                ("x-sender".to_owned(), "svc-g".to_owned())
            ]
        );
        let acme_again = payload
            .clone()
            .with_identity(Identity::with_attributes("svc-a", [("tenant", "acme")]));
        assert_eq!(headers.of(&acme_again).expect("headers"), made);
        let error = headers.of(&payload).expect_err("no identity");
        assert!(error.starts_with("the payload has no identity"), "{error}");
        let error = headers
            .of(&payload
                .clone()
                .with_identity(Identity::from_static("svc-b")))
            .expect_err("no tenant");
        assert_eq!(
            error,
            "the sender `svc-b` has no `tenant` for header `x-scope-orgid`; the payload is not \
             sent without it"
        );
        // A sender that failed is not remembered: the last good one still answers.
        assert_eq!(headers.of(&acme).expect("headers"), made);
        let none = IdentityHeaders::default().of(&payload).expect("no headers");
        assert!(none.is_empty());
    }
}
