//! Secrets and bearer tokens: values that redact themselves and are wiped from memory on drop.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// How long before its expiry a token stops being usable.
///
/// Providers refresh well before this point and consumers refuse a token inside it, so that a
/// token is never sent when it could expire in flight. Both sides use this one constant.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// A secret string (password, token, key).
///
/// `Debug` and `Display` print `<redacted>`; there is no `Serialize`, so a secret cannot be
/// written back out by accident. The bytes are zeroed when the last clone is dropped. Cloning is
/// cheap (a reference count).
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(value.into())))
    }

    /// The secret value. Call this only where the value must leave the process (a header, a
    /// connection handshake), never to log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `candidate` in time that depends only on the lengths, not on where the
    /// bytes differ.
    pub fn ct_eq(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.expose().as_bytes(), candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts any scalar (a numeric token is still a token) and never echoes the input in an
    /// error, unlike serde's usual "invalid type: integer `1234`" messages.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl serde::de::Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Constant-time equality of two byte strings of equal length.
///
/// Works a machine word at a time: a byte-wise constant-time compare of a 1 KB token costs
/// microseconds per request, this one a small fraction of that. Unequal lengths return `false`
/// at once: token lengths are not secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff: u64 = 0;
    let mut a_words = a.chunks_exact(8);
    let mut b_words = b.chunks_exact(8);
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let mut xw = [0u8; 8];
        let mut yw = [0u8; 8];
        xw.copy_from_slice(x);
        yw.copy_from_slice(y);
        diff |= u64::from_ne_bytes(xw) ^ u64::from_ne_bytes(yw);
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        diff |= u64::from(x ^ y);
    }
    // Keeps the optimizer from turning the accumulation into an early exit.
    std::hint::black_box(diff) == 0
}

/// A bearer token with an optional expiry. Cheap to clone; redacted in `Debug`/`Display`.
#[derive(Clone)]
pub struct BearerToken {
    secret: Secret,
    expires_at: Option<SystemTime>,
}

impl BearerToken {
    /// A token that does not expire.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            secret: Secret::new(value),
            expires_at: None,
        }
    }

    /// A token from an existing secret.
    pub fn from_secret(secret: Secret) -> Self {
        Self {
            secret,
            expires_at: None,
        }
    }

    /// The same token, expiring at `at`.
    #[must_use]
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The token value.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// When the token expires, if it does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the token may still be sent at `now`: it has no expiry, or its expiry is more
    /// than [`EXPIRY_MARGIN`] away.
    pub fn is_usable_at(&self, now: SystemTime) -> bool {
        match self.expires_at {
            None => true,
            Some(at) => at
                .checked_sub(EXPIRY_MARGIN)
                .is_some_and(|last_usable| now < last_usable),
        }
    }

    /// [`is_usable_at`](Self::is_usable_at) the current time.
    pub fn is_usable(&self) -> bool {
        self.is_usable_at(SystemTime::now())
    }

    /// Whether `candidate` is this token's value, compared in constant time.
    pub fn matches(&self, candidate: &BearerToken) -> bool {
        self.secret.ct_eq(candidate.secret.expose().as_bytes())
    }

    /// The token as a borrowed [`Credential`], to hand to an authorizer.
    pub fn credential(&self) -> Credential<'_> {
        Credential::new(self.secret.expose())
    }

    /// Parses an `Authorization` header value of the `Bearer` scheme.
    pub fn from_header_value(value: &str) -> Result<Self, TokenParseError> {
        AuthHeader::default().parse(value)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("secret", &self.secret)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A credential borrowed from where it arrived (an incoming request's header), as an
/// authorizer receives it: the token alone, its scheme already checked by
/// [`AuthHeader::credential`].
///
/// Nothing is copied or allocated, so a receiver can authorize every request for the price
/// of the comparison itself. There is nothing to wipe either: the bytes stay in the buffer the
/// request was read into, which outlives any copy of them. Like [`Secret`], it prints as
/// `<redacted>` and has no `Serialize`; keep what you derive from it (an identity), never the
/// credential.
#[derive(Clone, Copy)]
pub struct Credential<'a>(&'a str);

impl<'a> Credential<'a> {
    /// `value`, the token without its scheme.
    pub fn new(value: &'a str) -> Self {
        Self(value)
    }

    /// The credential's value. Compare it with [`ct_eq`](Self::ct_eq); never log it.
    pub fn expose(&self) -> &'a str {
        self.0
    }

    /// Whether the credential is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `secret` is this credential's value, compared in time that depends only on the
    /// lengths.
    pub fn ct_eq(&self, secret: &Secret) -> bool {
        secret.ct_eq(self.0.as_bytes())
    }
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

impl fmt::Display for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a header value is not a bearer credential. Never contains the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenParseError {
    /// The value is empty.
    #[error("the credential is empty")]
    Empty,
    /// The value does not start with the expected scheme.
    #[error("the credential does not use the `{expected}` scheme")]
    WrongScheme {
        /// The scheme that was expected.
        expected: String,
    },
    /// The scheme is there but no token follows it.
    #[error("the `{scheme}` credential has no token after the scheme")]
    MissingToken {
        /// The scheme that was found.
        scheme: String,
    },
}

/// Which header carries a token and with which scheme: `Authorization: Bearer <token>` by
/// default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    name: String,
    scheme: String,
}

impl Default for AuthHeader {
    fn default() -> Self {
        Self {
            name: "authorization".to_owned(),
            scheme: "Bearer".to_owned(),
        }
    }
}

impl AuthHeader {
    /// A header `name` carrying `scheme <token>`; an empty scheme means the bare token.
    /// Header names are case-insensitive and stored lower-case.
    pub fn new(name: impl Into<String>, scheme: impl Into<String>) -> Self {
        Self {
            name: name.into().to_ascii_lowercase(),
            scheme: scheme.into(),
        }
    }

    /// The header name, lower-case.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scheme (`Bearer` by default), or empty for a bare token.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The header value for `token`: `scheme token`, itself a secret.
    pub fn render(&self, token: &BearerToken) -> Secret {
        if self.scheme.is_empty() {
            token.secret().clone()
        } else {
            Secret::new(format!("{} {}", self.scheme, token.secret().expose()))
        }
    }

    /// Parses a header value: the scheme (case-insensitive) then the token, as an owned
    /// [`BearerToken`] (one allocation; see [`credential`](Self::credential) for none).
    pub fn parse(&self, value: &str) -> Result<BearerToken, TokenParseError> {
        self.credential(value)
            .map(|credential| BearerToken::new(credential.expose()))
    }

    /// Parses a header value as [`parse`](Self::parse) does, borrowing the token from `value`
    /// instead of copying it: what a receiver hands its authorizer per request.
    pub fn credential<'a>(&self, value: &'a str) -> Result<Credential<'a>, TokenParseError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(TokenParseError::Empty);
        }
        if self.scheme.is_empty() {
            return Ok(Credential::new(value));
        }
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return Err(TokenParseError::WrongScheme {
                expected: self.scheme.clone(),
            });
        }
        let token = rest.trim_start();
        if token.is_empty() {
            return Err(TokenParseError::MissingToken {
                scheme: self.scheme.clone(),
            });
        }
        Ok(Credential::new(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug_and_display() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.to_string(), "<redacted>");
        let token = BearerToken::new("hunter2");
        assert!(!format!("{token:?}").contains("hunter2"));
        assert!(!token.to_string().contains("hunter2"));
    }

    #[test]
    fn secret_decodes_from_any_scalar_and_never_echoes_bad_input() {
        let secret: Secret = serde_yaml_ng::from_str("123456").expect("numeric secret");
        assert_eq!(secret.expose(), "123456");
        let error = serde_yaml_ng::from_str::<Secret>("[hunter2]").expect_err("a list");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn constant_time_eq_compares_every_length() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert!(constant_time_eq(&a, &a.clone()));
            for flip in 0..len {
                let mut b = a.clone();
                b[flip] ^= 0x40;
                assert!(!constant_time_eq(&a, &b), "len {len}, flipped byte {flip}");
            }
        }
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn header_value_parsing_accepts_any_case_of_the_scheme() {
        let token = BearerToken::from_header_value("bearer abc.def").expect("valid");
        assert_eq!(token.secret().expose(), "abc.def");
        assert_eq!(
            BearerToken::from_header_value("Basic abc").map(|_| ()),
            Err(TokenParseError::WrongScheme {
                expected: "Bearer".into()
            })
        );
        assert_eq!(
            BearerToken::from_header_value("Bearer ").map(|_| ()),
            Err(TokenParseError::MissingToken {
                scheme: "Bearer".into()
            })
        );
        assert_eq!(
            BearerToken::from_header_value("  ").map(|_| ()),
            Err(TokenParseError::Empty)
        );
    }

    #[test]
    fn a_credential_borrows_the_token_and_is_redacted() {
        let value = String::from("Bearer  abc.def ");
        let credential = AuthHeader::default().credential(&value).expect("valid");
        assert_eq!(credential.expose(), "abc.def");
        assert!(std::ptr::eq(credential.expose(), &value[8..15]));
        assert_eq!(format!("{credential:?}"), "Credential(<redacted>)");
        assert_eq!(credential.to_string(), "<redacted>");
        assert!(credential.ct_eq(&Secret::new("abc.def")));
        assert!(!credential.ct_eq(&Secret::new("abc.deg")));
        assert_eq!(
            AuthHeader::default().credential("Basic abc").map(|_| ()),
            Err(TokenParseError::WrongScheme {
                expected: "Bearer".into()
            })
        );
        let token = BearerToken::new("t-1");
        assert_eq!(token.credential().expose(), "t-1");
    }

    #[test]
    fn custom_header_renders_and_parses_its_scheme() {
        let header = AuthHeader::new("X-Api-Key", "");
        assert_eq!(header.name(), "x-api-key");
        let token = header.parse("k-123").expect("bare token");
        assert_eq!(header.render(&token).expose(), "k-123");
        let bearer = AuthHeader::default();
        assert_eq!(bearer.render(&token).expose(), "Bearer k-123");
    }

    #[test]
    fn token_is_unusable_within_the_margin_of_its_expiry() {
        let now = SystemTime::now();
        let token = BearerToken::new("t").with_expiry(now + Duration::from_secs(60));
        assert!(token.is_usable_at(now));
        assert!(token.is_usable_at(now + Duration::from_secs(29)));
        assert!(!token.is_usable_at(now + Duration::from_secs(30)));
        assert!(!token.is_usable_at(now + Duration::from_secs(90)));
        assert!(BearerToken::new("t").is_usable_at(now + Duration::from_secs(1 << 30)));
    }
}
