//! JSON Web Tokens: verified against a key set's public keys (`oidc_auth`) and signed with a
//! private key (`oauth2_client`'s `private_key_jwt` assertion). The crypto is `ring`'s, the
//! library rustls already uses; only asymmetric algorithms exist here, so a token can never
//! be checked with an HMAC keyed by a public key (the "key confusion" attack), and `none` is
//! not an algorithm.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

/// A signature algorithm (`alg`), asymmetric only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

/// Every algorithm, in the order messages list them.
pub const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Algorithm {
    /// Its `alg` name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named `name`, if it is one of ours.
    pub fn named(name: &str) -> Option<Self> {
        ALGORITHMS.into_iter().find(|alg| alg.name() == name)
    }

    /// The key type (`kty`) and curve (`crv`) a key must have to verify it.
    const fn key_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                ("RSA", None)
            }
            Self::ES256 => ("EC", Some("P-256")),
            Self::ES384 => ("EC", Some("P-384")),
            Self::EdDSA => ("OKP", Some("Ed25519")),
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Self::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::EdDSA => &signature::ED25519,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One public key of a key set, ready to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    /// Its `kid`.
    pub kid: Option<String>,
    /// The algorithm the key set pins it to (`alg`), if it does.
    alg: Option<Algorithm>,
    kty: &'static str,
    crv: Option<&'static str>,
    /// The public key as `ring` takes it: an RSA `RSAPublicKey` DER, an uncompressed EC
    /// point, or the Ed25519 key bytes.
    public: Vec<u8>,
}

/// A JWK as a key set lists it (the members used here).
#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl VerifyingKey {
    /// The key a JWK describes; `Ok(None)` for one that is not for signatures or not of a
    /// type used here (an encryption key, a symmetric `oct` key).
    fn from_jwk(jwk: &Jwk) -> Result<Option<Self>, String> {
        if jwk.use_.as_deref().is_some_and(|use_| use_ != "sig") {
            return Ok(None);
        }
        let alg = match jwk.alg.as_deref() {
            None => None,
            Some(name) => match Algorithm::named(name) {
                Some(alg) => Some(alg),
                // Pinned to an algorithm not used here (HS256, RSA-OAEP): never ours.
                None => return Ok(None),
            },
        };
        let member = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
            let value = value
                .as_deref()
                .ok_or_else(|| format!("a `{}` key without `{name}`", jwk.kty))?;
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| format!("a `{}` key whose `{name}` is not base64url", jwk.kty))
        };
        let (kty, crv, public) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => (
                "RSA",
                None,
                rsa_public_key_der(&member("n", &jwk.n)?, &member("e", &jwk.e)?),
            ),
            ("EC", Some(curve @ ("P-256" | "P-384"))) => {
                let x = member("x", &jwk.x)?;
                let y = member("y", &jwk.y)?;
                let size = if curve == "P-256" { 32 } else { 48 };
                if x.len() != size || y.len() != size {
                    return Err(format!(
                        "an `EC` {curve} key with coordinates of the wrong size"
                    ));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (
                    "EC",
                    Some(if curve == "P-256" { "P-256" } else { "P-384" }),
                    point,
                )
            }
            ("OKP", Some("Ed25519")) => ("OKP", Some("Ed25519"), member("x", &jwk.x)?),
            _ => return Ok(None),
        };
        Ok(Some(Self {
            kid: jwk.kid.clone(),
            alg,
            kty,
            crv,
            public,
        }))
    }

    /// Whether this key may verify a token signed with `alg`: the key's type and curve are
    /// the algorithm's, and the key set did not pin it to another algorithm.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        let (kty, crv) = alg.key_type();
        self.alg.is_none_or(|pinned| pinned == alg) && self.kty == kty && self.crv == crv
    }

    /// Whether `signature` is `alg`'s signature of `message` by this key.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.accepts(alg)
            && signature::UnparsedPublicKey::new(alg.verification(), &self.public)
                .verify(message, signature)
                .is_ok()
    }
}

/// DER of an `RSAPublicKey { modulus, publicExponent }` (PKCS #1), what `ring` verifies with.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8], out: &mut Vec<u8>) {
        let bytes = match bytes.iter().position(|&b| b != 0) {
            Some(first) => &bytes[first..],
            None => &[0][..],
        };
        let pad = bytes[0] & 0x80 != 0;
        out.push(0x02);
        length(bytes.len() + usize::from(pad), out);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
    }
    fn length(len: usize, out: &mut Vec<u8>) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let first = bytes
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - first) as u8);
            out.extend_from_slice(&bytes[first..]);
        }
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(n, &mut body);
    integer(e, &mut body);
    let mut der = Vec::with_capacity(body.len() + 8);
    der.push(0x30);
    length(body.len(), &mut der);
    der.extend_from_slice(&body);
    der
}

/// The signing keys an issuer publishes (its JWKS document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). Keys not for signatures, or of types not
    /// used here, are left out; a malformed key of a used type is an error.
    pub fn parse(document: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(document)
            .map_err(|e| format!("not a JWKS document (`{{\"keys\": [...]}}`): {e}"))?;
        let mut keys = Vec::new();
        for (index, key) in document.keys.into_iter().enumerate() {
            let jwk: Jwk = serde_json::from_value(key)
                .map_err(|e| format!("key {index} of the JWKS document: {e}"))?;
            if let Some(key) = VerifyingKey::from_jwk(&jwk)
                .map_err(|e| format!("key {index} of the JWKS document: {e}"))?
            {
                keys.push(key);
            }
        }
        Ok(Self { keys })
    }

    /// How many usable keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may verify a token with `kid` and `alg`: the one with that `kid`, or,
    /// for a token without one, every key of the algorithm's type.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        self.keys.iter().filter(move |key| {
            key.accepts(alg)
                && match kid {
                    Some(kid) => key.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Whether a key with `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

/// A token split into its parts, its header read; nothing verified yet.
#[derive(Debug)]
pub struct Unverified<'a> {
    /// The header's `alg`, one of ours.
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// `header.payload`, what the signature signs.
    pub signing_input: &'a str,
    /// The payload, base64url.
    payload: &'a str,
    /// The signature, base64url.
    signature: &'a str,
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not three base64url parts.
    #[error("not a JWS compact token (three base64url parts)")]
    Shape,
    /// The header is not JSON, or lacks `alg`.
    #[error("the token's header is not a JOSE header")]
    Header,
    /// `alg` is not one this authorizer takes (`none`, an HMAC, one not configured).
    #[error("the token's algorithm `{0}` is not accepted")]
    Algorithm(String),
    /// The header names extensions that must be understood (`crit`).
    #[error("the token's header has critical extensions")]
    Critical,
    /// The payload is not a JSON object.
    #[error("the token's claims are not a JSON object")]
    Claims,
}

impl<'a> Unverified<'a> {
    /// Splits `token` and reads its header.
    pub fn parse(token: &'a str) -> Result<Self, Malformed> {
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
            #[serde(default)]
            crit: Option<serde_json::Value>,
        }
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(payload), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed::Shape);
        };
        if signature.contains('.') || header.is_empty() || signature.is_empty() {
            return Err(Malformed::Shape);
        }
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| Malformed::Shape)?;
        let header: Header = serde_json::from_slice(&header).map_err(|_| Malformed::Header)?;
        if header.crit.is_some() {
            return Err(Malformed::Critical);
        }
        let alg = Algorithm::named(&header.alg).ok_or(Malformed::Algorithm(header.alg))?;
        let signing_input = &token[..token.len() - signature.len() - 1];
        Ok(Self {
            alg,
            kid: header.kid,
            signing_input,
            payload,
            signature,
        })
    }

    /// Whether `key` signed it.
    pub fn verified_by(&self, key: &VerifyingKey) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(self.signature) else {
            return false;
        };
        key.verify(self.alg, self.signing_input.as_bytes(), &signature)
    }

    /// Its claims (read only after its signature is verified).
    pub fn claims(&self) -> Result<serde_json::Map<String, serde_json::Value>, Malformed> {
        let payload = URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| Malformed::Claims)?;
        serde_json::from_slice(&payload).map_err(|_| Malformed::Claims)
    }
}

/// A private key that signs JWTs (a client assertion).
pub struct SigningKey {
    alg: Algorithm,
    pair: Pair,
    random: SystemRandom,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The PEM private key in `pem` (PKCS #8; RSA keys also PKCS #1), signing with `alg` or,
    /// when `None`, the key type's usual one (RS256, ES256/ES384, EdDSA).
    pub fn from_pem(pem: &[u8], alg: Option<Algorithm>) -> Result<Self, String> {
        let random = SystemRandom::new();
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("no PEM private key in it ({e})"))?;
        let pair = match &der {
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(Pair::Rsa)
                .map_err(|e| format!("not a usable RSA key: {e}"))?,
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
                    Pair::Rsa(pair)
                } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &random,
                ) {
                    Pair::Ecdsa(pair)
                } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    der,
                    &random,
                ) {
                    Pair::Ecdsa(pair)
                } else if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    Pair::Ed25519(pair)
                } else {
                    return Err(
                        "a PKCS #8 key that is neither RSA (2048 bits or more), EC P-256/P-384 \
                         nor Ed25519"
                            .to_owned(),
                    );
                }
            }
            PrivateKeyDer::Sec1(_) => {
                return Err(
                    "an SEC1 EC key (`BEGIN EC PRIVATE KEY`); give it as PKCS #8 \
                            (`openssl pkcs8 -topk8 -nocrypt -in key.pem`)"
                        .to_owned(),
                );
            }
            _ => return Err("a private key of an unknown format".to_owned()),
        };
        let usual = match &pair {
            Pair::Rsa(_) => Algorithm::RS256,
            Pair::Ecdsa(pair) if pair.public_key().as_ref().len() == 65 => Algorithm::ES256,
            Pair::Ecdsa(_) => Algorithm::ES384,
            Pair::Ed25519(_) => Algorithm::EdDSA,
        };
        let alg = alg.unwrap_or(usual);
        let fits = match &pair {
            Pair::Rsa(_) => usual.key_type().0 == alg.key_type().0,
            Pair::Ecdsa(_) | Pair::Ed25519(_) => alg == usual,
        };
        if !fits {
            return Err(format!(
                "the key signs with {usual}{}, not {alg}",
                if usual.key_type().0 == "RSA" {
                    " (or RS384, RS512, PS256, PS384, PS512)"
                } else {
                    ""
                }
            ));
        }
        Ok(Self { alg, pair, random })
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A compact JWS of `claims` with header `{"alg", "typ": "JWT", "kid"?}`.
    pub fn sign(&self, kid: Option<&str>, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = serde_json::json!({ "alg": self.alg.name(), "typ": "JWT" });
        if let Some(kid) = kid {
            header["kid"] = serde_json::Value::from(kid);
        }
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let message = token.as_bytes();
        let signature = match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &self.random, message, &mut signature)
                    .map_err(|_| "the RSA signature failed".to_owned())?;
                signature
            }
            Pair::Ecdsa(pair) => pair
                .sign(&self.random, message)
                .map_err(|_| "the ECDSA signature failed".to_owned())?
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// Its public key as a JWK (what a token service is given to check assertions).
    pub fn public_jwk(&self, kid: Option<&str>) -> serde_json::Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(pair) => {
                let components = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                serde_json::json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(&components.n),
                    "e": URL_SAFE_NO_PAD.encode(&components.e),
                })
            }
            Pair::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                serde_json::json!({
                    "kty": "EC",
                    "crv": if size == 32 { "P-256" } else { "P-384" },
                    "x": URL_SAFE_NO_PAD.encode(&point[1..=size]),
                    "y": URL_SAFE_NO_PAD.encode(&point[1 + size..]),
                })
            }
            Pair::Ed25519(pair) => serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        };
        jwk["alg"] = serde_json::Value::from(self.alg.name());
        jwk["use"] = serde_json::Value::from("sig");
        if let Some(kid) = kid {
            jwk["kid"] = serde_json::Value::from(kid);
        }
        jwk
    }
}

/// 16 random bytes, hex: a `jti`.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // `SystemRandom` fails only where the OS has no random source at all.
    let _ = ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
