//! `config:` of `extension:oauth2_client` and `extension:oidc_auth`, and their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError, InvalidOption};
use otap_df_core::refresh::{MAX_DURATION, check_duration, check_policies};
pub use otap_df_core::refresh::{RefreshConfig, RetryConfig};
use otap_df_core::secret::Secret;
use serde::Deserialize;

use crate::jwt::{ALGORITHMS, Algorithm};

/// The options of `extension:oauth2_client`. See the crate README for each one.
///
/// ```
/// use otap_df_core::secret::Secret;
/// use otap_df_extension_oauth2::{ClientAuth, OAuth2ClientConfig};
///
/// let config = OAuth2ClientConfig::new("https://idp.example.com/oauth2/token", "otap-df")
///     .with_client_secret(Secret::new("s3cret"))
///     .with_client_auth(ClientAuth::ClientSecretPost)
///     .with_scopes(["telemetry.write"]);
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OAuth2ClientConfig {
    /// The token endpoint (`https://…/token`).
    pub token_url: String,
    /// The grant tokens are asked with (default `client_credentials`).
    #[serde(default)]
    pub grant_type: Grant,
    /// The client id; with `client_auth: none` (token exchange, JWT bearer) it may be left
    /// out, and is then not sent.
    #[serde(default)]
    pub client_id: String,
    /// The client secret, inline (usually `${env:…}`).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file holding the client secret, read at every token request (a rotated secret is
    /// picked up).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// How the client authenticates to the token endpoint; by default `client_secret_basic`
    /// with a secret, `private_key_jwt` with a private key, and (token exchange, JWT bearer)
    /// `none` with neither.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// The PEM private key (PKCS #8, or PKCS #1 for RSA) that signs `private_key_jwt`
    /// assertions, read at every token request (a rotated key is picked up).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The assertion's algorithm; by default the key's usual one (RS256, ES256, ES384,
    /// EdDSA).
    #[serde(default)]
    pub signing_algorithm: Option<Algorithm>,
    /// The `kid` the assertion's header names (the key's id registered with the service).
    #[serde(default)]
    pub key_id: Option<String>,
    /// The assertion's `aud`; the token endpoint by default.
    #[serde(default)]
    pub assertion_audience: Option<String>,
    /// How long an assertion is valid.
    #[serde(default = "defaults::assertion_lifetime", with = "humantime_serde")]
    pub assertion_lifetime: Duration,
    /// `grant_type: token_exchange`: the file holding the token exchanged (a Kubernetes
    /// service account token, a platform's workload identity token), read at every token
    /// request (a rotated token is picked up).
    #[serde(default)]
    pub subject_token_file: Option<PathBuf>,
    /// `grant_type: token_exchange`: the type of that token (default
    /// `urn:ietf:params:oauth:token-type:jwt`).
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// `grant_type: token_exchange`: the type of token asked for, where the service wants
    /// one named (`requested_token_type`).
    #[serde(default)]
    pub requested_token_type: Option<String>,
    /// `grant_type: jwt_bearer`: the file holding the JWT that is the grant (issued to this
    /// workload by someone the token service trusts), read at every token request.
    #[serde(default)]
    pub assertion_file: Option<PathBuf>,
    /// The scopes asked for (`scope`, space-separated).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The `audience` parameter (the API the token is for), where the service takes one.
    #[serde(default)]
    pub audience: Option<String>,
    /// More form parameters sent with every token request (`resource`, ...).
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// The header the token is sent in.
    #[serde(default = "defaults::header")]
    pub header: String,
    /// The scheme before the token; empty for a bare token.
    #[serde(default = "defaults::scheme")]
    pub scheme: String,
    /// Trust for the token endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
    /// When tokens are renewed.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// How failed token requests are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Bound of one token request.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Not an option of this block: accepted only to point at the right place.
    #[serde(default)]
    startup_timeout: Option<serde::de::IgnoredAny>,
}

/// The grant `oauth2_client` asks tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Grant {
    /// Client credentials (RFC 6749 §4.4): a token for the client itself.
    #[default]
    ClientCredentials,
    /// Token exchange (RFC 8693): a token issued to this workload by someone else
    /// (`subject_token_file`) traded for one the upstream takes.
    TokenExchange,
    /// JWT bearer (RFC 7523 §2.1): a JWT read from `assertion_file` is the grant.
    JwtBearer,
}

impl Grant {
    /// The name used in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "token_exchange",
            Self::JwtBearer => "jwt_bearer",
        }
    }

    /// The `grant_type` sent.
    pub const fn uri(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            Self::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
        }
    }
}

/// The `subject_token_type` sent by default: a JWT.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// How `oauth2_client` authenticates to the token endpoint (RFC 6749 §2.3, RFC 7523).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientAuth {
    /// The id and secret in an `Authorization: Basic` header.
    ClientSecretBasic,
    /// The id and secret as form parameters.
    ClientSecretPost,
    /// A JWT signed with the client's private key (`client_assertion`).
    PrivateKeyJwt,
    /// No client authentication (`client_id` sent when set): for token exchange and JWT
    /// bearer, where the token presented is the credential.
    None,
}

impl ClientAuth {
    /// The name used in the configuration (and by token services).
    pub const fn name(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
}

/// `tls:` — trust for the endpoints the extension calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificates trusted besides (or, with `system_roots: false`, instead of) the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether the system's trust store is used.
    #[serde(default = "defaults::yes")]
    pub system_roots: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            system_roots: true,
        }
    }
}

impl TlsConfig {
    /// Only the certificates of `ca_file`.
    #[must_use]
    pub fn only(ca_file: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: Some(ca_file.into()),
            system_roots: false,
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn assertion_lifetime() -> Duration {
        Duration::from_secs(5 * 60)
    }

    pub fn header() -> String {
        "authorization".to_owned()
    }

    pub fn scheme() -> String {
        "Bearer".to_owned()
    }

    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }

    pub fn yes() -> bool {
        true
    }

    pub fn leeway() -> Duration {
        Duration::from_secs(30)
    }

    pub fn subject_claim() -> String {
        "sub".to_owned()
    }

    pub fn algorithms() -> Vec<super::Algorithm> {
        vec![super::Algorithm::RS256, super::Algorithm::ES256]
    }

    pub fn keys_refresh_interval() -> Duration {
        Duration::from_secs(5 * 60)
    }

    pub fn keys_min_interval() -> Duration {
        Duration::from_secs(10)
    }

    pub fn cache_size() -> usize {
        4096
    }
}

impl OAuth2ClientConfig {
    /// Tokens from `token_url` for `client_id`; every other option at its default until set.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            token_url: token_url.into(),
            grant_type: Grant::ClientCredentials,
            client_id: client_id.into(),
            client_secret: None,
            client_secret_file: None,
            client_auth: None,
            private_key_file: None,
            signing_algorithm: None,
            key_id: None,
            assertion_audience: None,
            assertion_lifetime: defaults::assertion_lifetime(),
            subject_token_file: None,
            subject_token_type: None,
            requested_token_type: None,
            assertion_file: None,
            scopes: Vec::new(),
            audience: None,
            extra_params: BTreeMap::new(),
            header: defaults::header(),
            scheme: defaults::scheme(),
            tls: TlsConfig::default(),
            refresh: RefreshConfig::default(),
            retry: RetryConfig::default(),
            request_timeout: defaults::request_timeout(),
            startup_timeout: None,
        }
    }

    /// The client secret, inline.
    #[must_use]
    pub fn with_client_secret(mut self, secret: Secret) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// The client secret, read from `path` at every request.
    #[must_use]
    pub fn with_client_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_secret_file = Some(path.into());
        self
    }

    /// A `private_key_jwt` client: assertions signed with the PEM key at `path`.
    #[must_use]
    pub fn with_private_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.private_key_file = Some(path.into());
        self
    }

    /// How the client authenticates.
    #[must_use]
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = Some(auth);
        self
    }

    /// Token exchange: the token in `path` (read at every request) traded for one.
    #[must_use]
    pub fn with_token_exchange(mut self, path: impl Into<PathBuf>) -> Self {
        self.grant_type = Grant::TokenExchange;
        self.subject_token_file = Some(path.into());
        self
    }

    /// JWT bearer: the JWT in `path` (read at every request) is the grant.
    #[must_use]
    pub fn with_jwt_bearer(mut self, path: impl Into<PathBuf>) -> Self {
        self.grant_type = Grant::JwtBearer;
        self.assertion_file = Some(path.into());
        self
    }

    /// The scopes asked for.
    #[must_use]
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The `audience` parameter.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// One more form parameter.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.insert(name.into(), value.into());
        self
    }

    /// Trust for the token endpoint.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// When tokens are renewed.
    #[must_use]
    pub fn with_refresh(mut self, refresh: RefreshConfig) -> Self {
        self.refresh = refresh;
        self
    }

    /// How failed requests are retried.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Decodes and checks the block.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded
            .validate()
            .map_err(|invalid| config.located(invalid))?;
        Ok(decoded)
    }

    /// How the client authenticates, the default resolved.
    pub fn auth(&self) -> ClientAuth {
        let secret = self.client_secret.is_some() || self.client_secret_file.is_some();
        self.client_auth
            .unwrap_or(if self.private_key_file.is_some() {
                ClientAuth::PrivateKeyJwt
            } else if secret || self.grant_type == Grant::ClientCredentials {
                ClientAuth::ClientSecretBasic
            } else {
                ClientAuth::None
            })
    }

    /// The grant's own options: the ones it needs set, the others' unset.
    fn validate_grant(&self) -> Result<(), InvalidOption> {
        let (needed, needed_set) = match self.grant_type {
            Grant::ClientCredentials => ("", true),
            Grant::TokenExchange => ("subject_token_file", self.subject_token_file.is_some()),
            Grant::JwtBearer => ("assertion_file", self.assertion_file.is_some()),
        };
        if !needed_set {
            return Err(InvalidOption::new(
                "",
                format!(
                    "`grant_type: {}` needs `{needed}` (the file holding the token it presents)",
                    self.grant_type.name()
                ),
            ));
        }
        for (option, set, grant) in [
            (
                "subject_token_file",
                self.subject_token_file.is_some(),
                Grant::TokenExchange,
            ),
            (
                "subject_token_type",
                self.subject_token_type.is_some(),
                Grant::TokenExchange,
            ),
            (
                "requested_token_type",
                self.requested_token_type.is_some(),
                Grant::TokenExchange,
            ),
            (
                "assertion_file",
                self.assertion_file.is_some(),
                Grant::JwtBearer,
            ),
        ] {
            if set && self.grant_type != grant {
                return Err(InvalidOption::new(
                    option,
                    format!(
                        "`{option}` is for `grant_type: {}`, not `{}`",
                        grant.name(),
                        self.grant_type.name()
                    ),
                ));
            }
        }
        for (option, value) in [
            ("subject_token_type", &self.subject_token_type),
            ("requested_token_type", &self.requested_token_type),
        ] {
            if value.as_ref().is_some_and(|value| value.trim().is_empty()) {
                return Err(InvalidOption::new(
                    option,
                    format!("`{option}` is empty (a token type URI, `{JWT_TOKEN_TYPE}`)"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the options as [`decode`](Self::decode) does (a config built in code). Reads
    /// no file and contacts nothing.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if self.startup_timeout.is_some() {
            return Err(misplaced_startup_timeout());
        }
        check_url("token_url", &self.token_url)?;
        self.validate_grant()?;
        if self.client_id.trim().is_empty() && self.auth() != ClientAuth::None {
            return Err(InvalidOption::new(
                "client_id",
                format!("`client_auth: {}` needs `client_id`", self.auth().name()),
            ));
        }
        let secret = self.client_secret.is_some() || self.client_secret_file.is_some();
        if self.client_secret.is_some() && self.client_secret_file.is_some() {
            return Err(InvalidOption::new(
                "client_secret_file",
                "set one of `client_secret` and `client_secret_file`, not both",
            ));
        }
        if self
            .client_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().trim().is_empty())
        {
            return Err(InvalidOption::new(
                "client_secret",
                "`client_secret` is empty",
            ));
        }
        match self.auth() {
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => {
                if !secret {
                    return Err(InvalidOption::new(
                        "",
                        format!(
                            "`client_auth: {}` needs a secret: set `client_secret` (e.g. \
                             `${{env:OAUTH2_CLIENT_SECRET}}`) or `client_secret_file`, or give \
                             a `private_key_file` for `private_key_jwt`",
                            self.auth().name()
                        ),
                    ));
                }
                for (option, set) in [
                    ("private_key_file", self.private_key_file.is_some()),
                    ("signing_algorithm", self.signing_algorithm.is_some()),
                    ("key_id", self.key_id.is_some()),
                    ("assertion_audience", self.assertion_audience.is_some()),
                ] {
                    if set {
                        return Err(InvalidOption::new(
                            option,
                            format!(
                                "`{option}` is for `client_auth: private_key_jwt`, not `{}`",
                                self.auth().name()
                            ),
                        ));
                    }
                }
            }
            ClientAuth::PrivateKeyJwt => {
                if self.private_key_file.is_none() {
                    return Err(InvalidOption::new(
                        "",
                        "`client_auth: private_key_jwt` needs `private_key_file` (the PEM key \
                         that signs the assertions)",
                    ));
                }
                if secret {
                    return Err(InvalidOption::new(
                        if self.client_secret.is_some() {
                            "client_secret"
                        } else {
                            "client_secret_file"
                        },
                        "a secret is not sent with `client_auth: private_key_jwt`; remove it \
                         or choose `client_secret_basic`/`client_secret_post`",
                    ));
                }
                if let Some(audience) = &self.assertion_audience {
                    check_url("assertion_audience", audience)?;
                }
            }
            ClientAuth::None => {
                if self.grant_type == Grant::ClientCredentials {
                    return Err(InvalidOption::new(
                        "client_auth",
                        "`grant_type: client_credentials` needs the client to authenticate: \
                         `client_secret_basic`, `client_secret_post` or `private_key_jwt`",
                    ));
                }
                for (option, set) in [
                    ("client_secret", self.client_secret.is_some()),
                    ("client_secret_file", self.client_secret_file.is_some()),
                    ("private_key_file", self.private_key_file.is_some()),
                    ("signing_algorithm", self.signing_algorithm.is_some()),
                    ("key_id", self.key_id.is_some()),
                    ("assertion_audience", self.assertion_audience.is_some()),
                ] {
                    if set {
                        return Err(InvalidOption::new(
                            option,
                            format!("`{option}` is not sent with `client_auth: none`"),
                        ));
                    }
                }
            }
        }
        for (index, scope) in self.scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(InvalidOption::new(
                    format!("scopes[{index}]"),
                    "a scope is one non-empty word (the request joins them with spaces)",
                ));
            }
        }
        for name in self.extra_params.keys() {
            if matches!(
                name.as_str(),
                "grant_type"
                    | "client_id"
                    | "client_secret"
                    | "client_assertion"
                    | "client_assertion_type"
                    | "scope"
                    | "audience"
                    | "subject_token"
                    | "subject_token_type"
                    | "requested_token_type"
                    | "assertion"
            ) {
                return Err(InvalidOption::new(
                    format!("extra_params.{name}"),
                    format!("`{name}` is set by the extension itself; use its own option"),
                ));
            }
        }
        check_header(&self.header, &self.scheme)?;
        if self.assertion_lifetime < Duration::from_secs(1) {
            return Err(InvalidOption::new(
                "assertion_lifetime",
                "`assertion_lifetime` must be at least 1s",
            ));
        }
        check_duration("assertion_lifetime", self.assertion_lifetime)?;
        check_policies(&self.refresh, &self.retry)?;
        check_timeout(self.request_timeout)
    }
}

/// The options of `extension:oidc_auth`. See the crate README for each one.
///
/// ```
/// use otap_df_extension_oauth2::OidcAuthConfig;
///
/// let config = OidcAuthConfig::new("https://idp.example.com/realms/telemetry", ["otap-df"])
///     .with_attribute("tenant", "tenant_id");
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OidcAuthConfig {
    /// The issuer: tokens' `iss` must equal it, and its keys are found through its discovery
    /// document (`<issuer>/.well-known/openid-configuration`) unless `jwks_url` is set.
    pub issuer: String,
    /// The issuer's key set, when not found through discovery.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// The audiences accepted: a token's `aud` must name one of them.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// The algorithms accepted.
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "defaults::leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// The claim that names the caller (the identity's name).
    #[serde(default = "defaults::subject_claim")]
    pub subject_claim: String,
    /// The identity's attributes, by name: the claim each is read from (`tenant: tid`). An
    /// array claim gives one value per element.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Claims a token must carry, with a value among those listed (`scope` is read as a
    /// space-separated list): a token without them is refused with 403.
    #[serde(default)]
    pub required_claims: BTreeMap<String, Vec<String>>,
    /// How often the key set is fetched again.
    #[serde(default = "defaults::keys_refresh_interval", with = "humantime_serde")]
    pub keys_refresh_interval: Duration,
    /// The shortest time between two fetches of the key set caused by tokens signed with a
    /// key it does not hold (a rotation; or garbage, which must not make it hammer the
    /// issuer).
    #[serde(default = "defaults::keys_min_interval", with = "humantime_serde")]
    pub keys_min_interval: Duration,
    /// How many verified tokens each core remembers, so that a token seen again costs a
    /// lookup, not a signature check.
    #[serde(default = "defaults::cache_size")]
    pub cache_size: usize,
    /// The header the token is read from.
    #[serde(default = "defaults::header")]
    pub header: String,
    /// The scheme before the token; empty for a bare token.
    #[serde(default = "defaults::scheme")]
    pub scheme: String,
    /// Trust for the issuer's endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Bound of one request to the issuer.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Not an option of this block: accepted only to point at the right place.
    #[serde(default)]
    startup_timeout: Option<serde::de::IgnoredAny>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl OidcAuthConfig {
    /// Tokens of `issuer` for one of `audience`; every other option at its default.
    pub fn new<S: Into<String>>(
        issuer: impl Into<String>,
        audience: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_url: None,
            audience: audience.into_iter().map(Into::into).collect(),
            algorithms: defaults::algorithms(),
            leeway: defaults::leeway(),
            subject_claim: defaults::subject_claim(),
            attributes: BTreeMap::new(),
            required_claims: BTreeMap::new(),
            keys_refresh_interval: defaults::keys_refresh_interval(),
            keys_min_interval: defaults::keys_min_interval(),
            cache_size: defaults::cache_size(),
            header: defaults::header(),
            scheme: defaults::scheme(),
            tls: TlsConfig::default(),
            request_timeout: defaults::request_timeout(),
            startup_timeout: None,
        }
    }

    /// The key set at `url` (no discovery).
    #[must_use]
    pub fn with_jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// The identity's attribute `name`, read from `claim`.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, claim: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), claim.into());
        self
    }

    /// Tokens must carry `claim` with one of `values`.
    #[must_use]
    pub fn with_required_claim<S: Into<String>>(
        mut self,
        claim: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        self.required_claims
            .insert(claim.into(), values.into_iter().map(Into::into).collect());
        self
    }

    /// The algorithms accepted.
    #[must_use]
    pub fn with_algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Trust for the issuer's endpoints.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// The key set fetch throttle after an unknown `kid`.
    #[must_use]
    pub fn with_keys_min_interval(mut self, interval: Duration) -> Self {
        self.keys_min_interval = interval;
        self
    }

    /// How many verified tokens each core remembers.
    #[must_use]
    pub fn with_cache_size(mut self, tokens: usize) -> Self {
        self.cache_size = tokens;
        self
    }

    /// Decodes and checks the block.
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded
            .validate()
            .map_err(|invalid| config.located(invalid))?;
        Ok(decoded)
    }

    /// Checks the options as [`decode`](Self::decode) does. Contacts nothing.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if self.startup_timeout.is_some() {
            return Err(misplaced_startup_timeout());
        }
        check_url("issuer", &self.issuer)?;
        if let Some(url) = &self.jwks_url {
            check_url("jwks_url", url)?;
        }
        if self.audience.is_empty() {
            return Err(InvalidOption::new(
                "audience",
                "`audience` lists no audience; name the one (or the ones) tokens are issued \
                 for, as their `aud` claim says",
            ));
        }
        if let Some(index) = self.audience.iter().position(String::is_empty) {
            return Err(InvalidOption::new(
                format!("audience[{index}]"),
                "an audience is not empty",
            ));
        }
        if self.algorithms.is_empty() {
            let all: Vec<_> = ALGORITHMS.iter().map(|alg| alg.name()).collect();
            return Err(InvalidOption::new(
                "algorithms",
                format!("`algorithms` lists none; choose among {}", all.join(", ")),
            ));
        }
        if self.subject_claim.is_empty() {
            return Err(InvalidOption::new(
                "subject_claim",
                "`subject_claim` is empty",
            ));
        }
        for (name, claim) in &self.attributes {
            if name.is_empty() || claim.is_empty() {
                return Err(InvalidOption::new(
                    format!("attributes.{name}"),
                    "an attribute maps a non-empty name to a non-empty claim",
                ));
            }
        }
        for (claim, values) in &self.required_claims {
            if values.is_empty() {
                return Err(InvalidOption::new(
                    format!("required_claims.{claim}"),
                    "list the values accepted (one at least)",
                ));
            }
        }
        check_header(&self.header, &self.scheme)?;
        if self.leeway > Duration::from_secs(600) {
            return Err(InvalidOption::new(
                "leeway",
                "`leeway` is at most 10m (it extends every token's life)",
            ));
        }
        for (option, value) in [
            ("keys_refresh_interval", self.keys_refresh_interval),
            ("keys_min_interval", self.keys_min_interval),
        ] {
            if value < Duration::from_millis(10) {
                return Err(InvalidOption::new(
                    option,
                    format!("`{option}` must be at least 10ms"),
                ));
            }
            check_duration(option, value)?;
        }
        if self.cache_size == 0 || self.cache_size > 1 << 20 {
            return Err(InvalidOption::new(
                "cache_size",
                "`cache_size` is between 1 and 1048576 tokens per core",
            ));
        }
        check_timeout(self.request_timeout)
    }
}

fn misplaced_startup_timeout() -> InvalidOption {
    InvalidOption::new(
        "startup_timeout",
        "`startup_timeout` is set beside `type:` and `config:`, not inside `config:`",
    )
}

fn check_url(option: &str, value: &str) -> Result<(), InvalidOption> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(InvalidOption::new(
            option,
            format!(
                "`{option}` must be an http(s) URL such as `https://idp.example.com/…`; got `{value}`"
            ),
        )),
    }
}

fn check_header(header: &str, scheme: &str) -> Result<(), InvalidOption> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || !header.chars().all(token_char) {
        return Err(InvalidOption::new(
            "header",
            format!("`header` must be an HTTP header name such as `authorization`; got `{header}`"),
        ));
    }
    if !scheme.chars().all(token_char) {
        return Err(InvalidOption::new(
            "scheme",
            format!("`scheme` must be one word such as `Bearer` (or empty); got `{scheme}`"),
        ));
    }
    Ok(())
}

fn check_timeout(timeout: Duration) -> Result<(), InvalidOption> {
    if timeout.is_zero() || timeout > MAX_DURATION {
        return Err(InvalidOption::new(
            "request_timeout",
            "`request_timeout` must be positive and at most 1 day",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://idp.example.com/token";

    fn invalid(config: &OAuth2ClientConfig) -> (String, String) {
        let invalid = config.validate().expect_err("refused");
        (invalid.option, invalid.message)
    }

    #[test]
    fn each_grant_takes_its_own_options_and_needs_its_token_file() {
        // Token exchange and JWT bearer: a public client needs no id and no secret.
        let exchange = OAuth2ClientConfig::new(URL, "").with_token_exchange("/run/token");
        assert_eq!(exchange.validate(), Ok(()));
        assert_eq!(exchange.auth(), ClientAuth::None);
        let bearer = OAuth2ClientConfig::new(URL, "").with_jwt_bearer("/run/assertion");
        assert_eq!(bearer.validate(), Ok(()));
        // With a secret they authenticate the client, which then needs its id.
        let confidential = exchange.clone().with_client_secret(Secret::new("s"));
        assert_eq!(confidential.auth(), ClientAuth::ClientSecretBasic);
        assert_eq!(
            invalid(&confidential),
            (
                "client_id".to_owned(),
                "`client_auth: client_secret_basic` needs `client_id`".to_owned()
            )
        );

        let mut missing = OAuth2ClientConfig::new(URL, "a");
        missing.grant_type = Grant::TokenExchange;
        assert_eq!(
            invalid(&missing),
            (
                String::new(),
                "`grant_type: token_exchange` needs `subject_token_file` (the file holding the \
                 token it presents)"
                    .to_owned()
            )
        );
        let mut wrong_grant =
            OAuth2ClientConfig::new(URL, "a").with_client_secret(Secret::new("s"));
        wrong_grant.assertion_file = Some("/run/assertion".into());
        assert_eq!(
            invalid(&wrong_grant),
            (
                "assertion_file".to_owned(),
                "`assertion_file` is for `grant_type: jwt_bearer`, not `client_credentials`"
                    .to_owned()
            )
        );
        let mut typed = OAuth2ClientConfig::new(URL, "").with_jwt_bearer("/run/assertion");
        typed.subject_token_type = Some(JWT_TOKEN_TYPE.to_owned());
        assert_eq!(invalid(&typed).0, "subject_token_type");
        let mut empty_type = OAuth2ClientConfig::new(URL, "").with_token_exchange("/run/token");
        empty_type.requested_token_type = Some(" ".to_owned());
        assert_eq!(invalid(&empty_type).0, "requested_token_type");
    }

    #[test]
    fn client_credentials_still_need_the_client_to_authenticate() {
        let bare = OAuth2ClientConfig::new(URL, "a");
        assert_eq!(bare.auth(), ClientAuth::ClientSecretBasic);
        assert_eq!(invalid(&bare).0, "");
        let none = bare.clone().with_client_auth(ClientAuth::None);
        assert_eq!(
            invalid(&none),
            (
                "client_auth".to_owned(),
                "`grant_type: client_credentials` needs the client to authenticate: \
                 `client_secret_basic`, `client_secret_post` or `private_key_jwt`"
                    .to_owned()
            )
        );
        let secret_unsent = OAuth2ClientConfig::new(URL, "a")
            .with_token_exchange("/run/token")
            .with_client_auth(ClientAuth::None)
            .with_client_secret(Secret::new("s"));
        assert_eq!(
            invalid(&secret_unsent),
            (
                "client_secret".to_owned(),
                "`client_secret` is not sent with `client_auth: none`".to_owned()
            )
        );
        let reserved = OAuth2ClientConfig::new(URL, "")
            .with_token_exchange("/run/token")
            .with_param("subject_token", "x");
        assert_eq!(invalid(&reserved).0, "extra_params.subject_token");
    }
}
