//! `extension:oauth2_client`: tokens from an OAuth2 token endpoint with the client
//! credentials grant (RFC 6749 §4.4), the client authenticated by its secret (basic or
//! post) or by a JWT it signs (`private_key_jwt`, RFC 7523), or by trading a token this
//! workload was issued by someone else (token exchange, RFC 8693; JWT bearer, RFC 7523
//! §2.1); renewed ahead of expiry by the refresh machinery `azure_auth` uses too
//! ([`otap_df_core::refresh`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use otap_df_core::capability::{BearerTokenProvider, CapabilityId, shared};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ConfigUpdater, ExtensionContext, ExtensionError, ExtensionFactory, Readiness, SharedExtension,
};
use otap_df_core::refresh::{FetchError, Refresher, RefreshingToken, TokenSource};
use otap_df_core::secret::{AuthHeader, BearerToken, Secret};
use serde::Deserialize;

use crate::config::{ClientAuth, Grant, JWT_TOKEN_TYPE, OAuth2ClientConfig};
use crate::error::OAuth2Error;
use crate::http;
use crate::jwt::{Algorithm, SigningKey, random_id};

/// The default `startup_timeout`: a first failed request is retried within it.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `extension:oauth2_client`.
pub static OAUTH2_CLIENT: ExtensionFactory =
    ExtensionFactory::new("oauth2_client", env!("CARGO_PKG_NAME"))
        .description(
            "OAuth2 tokens: client credentials (client secret, basic or post, or a \
     private_key_jwt assertion), token exchange or JWT bearer with a token read from a file; \
     renewed ahead of expiry",
        )
        .provides(&[CapabilityId::BearerTokenProvider])
        .default_startup_timeout(DEFAULT_STARTUP_TIMEOUT)
        .validate_config(|config| OAuth2ClientConfig::decode(config).map(drop))
        .shared(create)
        .updates_in_place()
        .build();

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = OAuth2ClientConfig::decode(config)?;
    let client = OAuth2Client::build(context.extension_id(), &config, |tokens| {
        tokens.with_metrics(
            context.counter("renewals"),
            context.counter("renewal_failures"),
            context.gauge("token_expiry_unix_seconds"),
        )
    })?;
    let client = Arc::new(client);
    let provider: Arc<dyn shared::BearerTokenProvider> = client.tokens.clone();
    Ok(context
        .shared_builder()
        .provide::<BearerTokenProvider>(provider)
        .updatable(client.clone())
        .active(
            Box::new(Refresher::new(client.tokens.clone())),
            Readiness::Probe,
        )?)
}

/// One `oauth2_client` instance: a [`RefreshingToken`] whose source is the token endpoint.
#[derive(Debug)]
pub struct OAuth2Client {
    tokens: Arc<RefreshingToken>,
}

impl OAuth2Client {
    /// Resolves the configuration (reads the secret or key file once, so that an unreadable
    /// one fails the start); makes no request.
    pub fn new(id: &str, config: &OAuth2ClientConfig) -> Result<Self, ExtensionError> {
        Self::build(id, config, |tokens| tokens)
    }

    fn build(
        id: &str,
        config: &OAuth2ClientConfig,
        finish: impl FnOnce(RefreshingToken) -> RefreshingToken,
    ) -> Result<Self, ExtensionError> {
        config
            .validate()
            .map_err(|invalid| ExtensionError::typed(id, invalid))?;
        let source =
            TokenRequests::new(config).map_err(|error| ExtensionError::typed(id, error))?;
        let tokens = RefreshingToken::new(id, Arc::new(source), config.refresh, config.retry)
            .with_header(AuthHeader::new(&config.header, &config.scheme));
        Ok(Self {
            tokens: Arc::new(finish(tokens)),
        })
    }

    /// The token and its refreshes: what consumers read and the [`Refresher`] supplies.
    pub fn tokens(&self) -> &Arc<RefreshingToken> {
        &self.tokens
    }

    /// Takes a changed configuration (a reload): the next token request, made at once, uses
    /// it. One that cannot be resolved (an unreadable key) is refused; the current stays.
    pub fn update(&self, config: &OAuth2ClientConfig) -> Result<(), ExtensionError> {
        let source = TokenRequests::new(config)
            .map_err(|error| ExtensionError::typed(self.tokens.id(), error))?;
        self.tokens
            .update(Arc::new(source), config.refresh, config.retry);
        Ok(())
    }
}

impl ConfigUpdater for OAuth2Client {
    fn update(&self, config: &ComponentConfig<'_>) -> Result<(), ExtensionError> {
        OAuth2Client::update(self, &OAuth2ClientConfig::decode(config)?)
    }
}

/// Where the client's secret comes from.
#[derive(Debug)]
enum ClientSecret {
    None,
    Inline(Secret),
    File(PathBuf),
}

/// What signs a `private_key_jwt` assertion.
#[derive(Debug)]
struct Assertion {
    key_file: PathBuf,
    algorithm: Option<Algorithm>,
    key_id: Option<String>,
    audience: String,
    lifetime: Duration,
}

/// The token a token exchange or JWT bearer grant presents: read from its file at every
/// request.
#[derive(Debug)]
struct Presented {
    /// The option naming the file, and the form parameter the token is sent as.
    option: &'static str,
    param: &'static str,
    path: PathBuf,
}

/// Token requests of one grant against one token endpoint.
#[derive(Debug)]
pub struct TokenRequests {
    token_url: String,
    client_id: String,
    auth: ClientAuth,
    secret: ClientSecret,
    assertion: Option<Assertion>,
    presented: Option<Presented>,
    /// The form parameters every request carries besides the client's credentials.
    params: Vec<(String, String)>,
    client: reqwest::Client,
}

impl TokenRequests {
    /// Resolves `config` (checked): reads the secret, key or presented token's file once.
    pub fn new(config: &OAuth2ClientConfig) -> Result<Self, OAuth2Error> {
        let secret = match (&config.client_secret, &config.client_secret_file) {
            (Some(secret), _) => ClientSecret::Inline(secret.clone()),
            (None, Some(path)) => {
                read_secret(path)?;
                ClientSecret::File(path.clone())
            }
            (None, None) => ClientSecret::None,
        };
        let assertion = match (&config.private_key_file, config.auth()) {
            (Some(path), ClientAuth::PrivateKeyJwt) => {
                read_key(path, config.signing_algorithm)?;
                Some(Assertion {
                    key_file: path.clone(),
                    algorithm: config.signing_algorithm,
                    key_id: config.key_id.clone(),
                    audience: config
                        .assertion_audience
                        .clone()
                        .unwrap_or_else(|| config.token_url.clone()),
                    lifetime: config.assertion_lifetime,
                })
            }
            _ => None,
        };
        let presented = match config.grant_type {
            Grant::TokenExchange => config.subject_token_file.clone().map(|path| Presented {
                option: "subject_token_file",
                param: "subject_token",
                path,
            }),
            Grant::JwtBearer => config.assertion_file.clone().map(|path| Presented {
                option: "assertion_file",
                param: "assertion",
                path,
            }),
            _ => None,
        };
        if let Some(presented) = &presented {
            read_presented(presented)?;
        }
        let mut params = vec![("grant_type".to_owned(), config.grant_type.uri().to_owned())];
        if config.grant_type == Grant::TokenExchange {
            params.push((
                "subject_token_type".to_owned(),
                config
                    .subject_token_type
                    .clone()
                    .unwrap_or_else(|| JWT_TOKEN_TYPE.to_owned()),
            ));
            if let Some(requested) = &config.requested_token_type {
                params.push(("requested_token_type".to_owned(), requested.clone()));
            }
        }
        if !config.scopes.is_empty() {
            params.push(("scope".to_owned(), config.scopes.join(" ")));
        }
        if let Some(audience) = &config.audience {
            params.push(("audience".to_owned(), audience.clone()));
        }
        params.extend(
            config
                .extra_params
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        Ok(Self {
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            auth: config.auth(),
            secret,
            assertion,
            presented,
            params,
            client: http::client(&config.tls, config.request_timeout)?,
        })
    }

    /// The request's body and, for `client_secret_basic`, its `Authorization` value.
    fn request(&self) -> Result<(String, Option<Secret>), FetchError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.params {
            form.append_pair(name, value);
        }
        if let Some(presented) = &self.presented {
            let token =
                read_presented(presented).map_err(|e| FetchError::misconfigured(e.to_string()))?;
            form.append_pair(presented.param, token.expose());
        }
        let mut basic = None;
        match self.auth {
            ClientAuth::ClientSecretBasic => {
                // RFC 6749 §2.3.1: each part form-encoded, then base64.
                let secret = self.secret()?;
                let pair = format!("{}:{}", encode(&self.client_id), encode(secret.expose()));
                basic = Some(Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )));
            }
            ClientAuth::ClientSecretPost => {
                let secret = self.secret()?;
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", secret.expose());
            }
            ClientAuth::PrivateKeyJwt => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                form.append_pair("client_assertion", &self.assertion()?);
            }
            ClientAuth::None => {
                if !self.client_id.is_empty() {
                    form.append_pair("client_id", &self.client_id);
                }
            }
        }
        Ok((form.finish(), basic))
    }

    fn secret(&self) -> Result<Secret, FetchError> {
        match &self.secret {
            ClientSecret::Inline(secret) => Ok(secret.clone()),
            ClientSecret::File(path) => {
                read_secret(path).map_err(|e| FetchError::misconfigured(e.to_string()))
            }
            ClientSecret::None => Err(FetchError::misconfigured("no client secret configured")),
        }
    }

    /// A fresh assertion (RFC 7523 §3): the client is issuer and subject, the token endpoint
    /// (or `assertion_audience`) the audience, a unique `jti`.
    fn assertion(&self) -> Result<String, FetchError> {
        let Some(assertion) = &self.assertion else {
            return Err(FetchError::misconfigured("no private key configured"));
        };
        let key = read_key(&assertion.key_file, assertion.algorithm)
            .map_err(|e| FetchError::misconfigured(e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": assertion.audience,
            "jti": random_id(),
            "iat": now,
            "nbf": now,
            "exp": now + assertion.lifetime.as_secs(),
        });
        key.sign(assertion.key_id.as_deref(), &claims)
            .map_err(FetchError::unavailable)
    }
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// What file `path` (option `option`: a secret, a presented token) holds, surrounding
/// whitespace removed; never empty.
fn read_secret_file(option: &'static str, path: &Path) -> Result<Secret, OAuth2Error> {
    let text = std::fs::read_to_string(path).map_err(|source| OAuth2Error::Unreadable {
        option,
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(OAuth2Error::File {
            option,
            path: path.to_path_buf(),
            problem: "is empty".to_owned(),
        });
    }
    Ok(Secret::new(secret))
}

fn read_secret(path: &Path) -> Result<Secret, OAuth2Error> {
    read_secret_file("client_secret_file", path)
}

/// The token a grant presents, read from its file.
fn read_presented(presented: &Presented) -> Result<Secret, OAuth2Error> {
    read_secret_file(presented.option, &presented.path)
}

fn read_key(path: &PathBuf, algorithm: Option<Algorithm>) -> Result<SigningKey, OAuth2Error> {
    let pem = std::fs::read(path).map_err(|source| OAuth2Error::Unreadable {
        option: "private_key_file",
        path: path.clone(),
        source,
    })?;
    SigningKey::from_pem(&pem, algorithm).map_err(|problem| OAuth2Error::File {
        option: "private_key_file",
        path: path.clone(),
        problem: format!("holds {problem}"),
    })
}

/// A token endpoint's answer (RFC 6749 §5.1, §5.2).
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[otap_df_core::async_trait]
impl TokenSource for TokenRequests {
    async fn fetch(&self) -> Result<BearerToken, FetchError> {
        let (body, basic) = self.request()?;
        let mut request = self
            .client
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body);
        if let Some(basic) = &basic {
            request = request.header("authorization", basic.expose());
        }
        let response = request.send().await.map_err(|e| {
            FetchError::unavailable(format!(
                "the token endpoint could not be reached: {}",
                http::one_line(&e)
            ))
        })?;
        let status = response.status().as_u16();
        let body = http::body(response)
            .await
            .map_err(|e| FetchError::unavailable(format!("the token endpoint's {e}")))?;
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let described = match &answer {
                Some(Answer {
                    error: Some(error), ..
                }) => match answer.as_ref().and_then(|a| a.error_description.as_deref()) {
                    Some(description) => format!("{error}: {}", one_line(description)),
                    None => error.clone(),
                },
                _ => "no OAuth2 error in the answer".to_owned(),
            };
            let message = format!("the token endpoint answered {status} ({described})");
            // 400 (invalid_client, invalid_scope, unauthorized_client), 401 and 403 say the
            // configuration sends what the service refuses; the rest may pass later.
            return Err(if matches!(status, 400 | 401 | 403) {
                FetchError::misconfigured(message)
            } else {
                FetchError::unavailable(message)
            });
        }
        let answer = answer.ok_or_else(|| {
            FetchError::unavailable(format!(
                "the token endpoint answered {status} without a JSON token answer"
            ))
        })?;
        let Some(token) = answer.access_token.filter(|token| !token.is_empty()) else {
            return Err(FetchError::unavailable(
                "the token endpoint's answer has no `access_token`",
            ));
        };
        if let Some(kind) = answer
            .token_type
            .as_deref()
            .filter(|kind| !kind.eq_ignore_ascii_case("bearer"))
        {
            return Err(FetchError::misconfigured(format!(
                "the token endpoint issued a `{kind}` token, not a bearer token"
            )));
        }
        let expires_at = match answer.expires_in.as_ref().and_then(seconds) {
            Some(seconds) => SystemTime::now() + Duration::from_secs(seconds),
            // No lifetime stated: a JWT's own `exp` (read, not trusted: it only schedules the
            // renewal).
            None => jwt_expiry(token.expose()).ok_or_else(|| {
                FetchError::unavailable(
                    "the token endpoint's answer has no `expires_in` and the token is not a \
                     JWT with an `exp`: when to renew it is unknown",
                )
            })?,
        };
        Ok(BearerToken::from_secret(token).with_expiry(expires_at))
    }

    fn method(&self) -> &str {
        self.auth.name()
    }
}

/// `expires_in` as a number of seconds (some services send it as a string).
fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.get("exp")?.as_u64()?))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
