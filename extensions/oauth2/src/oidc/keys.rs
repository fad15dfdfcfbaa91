//! Where `oidc_auth`'s keys come from: the issuer's key set, found through its discovery
//! document (or at `jwks_url`), and the task that keeps it fresh.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use otap_df_core::extension::{ExtensionControl, ExtensionError, ExtensionMessage, SharedTask};
use otap_df_core::refresh::{Backoff, RetryConfig};
use serde::Deserialize;

use super::OidcAuth;
use crate::http;
use crate::jwt::KeySet;

/// Where the keys come from.
#[derive(Debug)]
pub(super) struct KeySource {
    pub(super) issuer: String,
    pub(super) jwks_url: Option<String>,
    pub(super) client: reqwest::Client,
    pub(super) refresh_interval: Duration,
    pub(super) min_interval: Duration,
}

/// The discovery document's members used here (OpenID Connect Discovery 1.0 §3).
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl KeySource {
    /// The key set, through discovery unless `jwks_url` is set.
    async fn fetch(&self) -> Result<KeySet, String> {
        let jwks_url = match &self.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|e| format!("`{url}` is not an OIDC discovery document: {e}"))?;
                // OIDC Discovery §4.3: the document must name the issuer it was asked of.
                if discovery.issuer != self.issuer {
                    return Err(format!(
                        "`{url}` names the issuer `{}`, not `{}`; set `issuer` to what the \
                         tokens' `iss` says",
                        discovery.issuer, self.issuer
                    ));
                }
                discovery.jwks_uri
            }
        };
        let set =
            KeySet::parse(&self.get(&jwks_url).await?).map_err(|e| format!("`{jwks_url}`: {e}"))?;
        if set.is_empty() {
            return Err(format!(
                "`{jwks_url}` holds no signing key of a type used here"
            ));
        }
        Ok(set)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("`{url}` could not be reached: {}", http::one_line(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("`{url}` answered {status}"));
        }
        http::body(response)
            .await
            .map_err(|e| format!("`{url}`: {e}"))
    }
}

/// The task of an instance: fetches the key set at start (ready after the first success),
/// every `keys_refresh_interval`, and when a token names a key the set lacks (at most once
/// per `keys_min_interval`); failures are retried with backoff and reported as degraded,
/// while the last good set keeps being used.
pub struct KeyFetcher {
    auth: Arc<OidcAuth>,
}

impl KeyFetcher {
    /// The loop that keeps `auth` supplied with keys.
    pub fn new(auth: Arc<OidcAuth>) -> Self {
        Self { auth }
    }
}

#[otap_df_core::async_trait]
impl SharedTask for KeyFetcher {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        let auth = &self.auth;
        let mut backoff = Backoff::new(RetryConfig::default().with_intervals(
            Duration::from_millis(200),
            auth.source.refresh_interval.min(Duration::from_secs(60)),
        ));
        let mut ready = false;
        let mut degraded = false;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => continue,
                },
                () = tokio::time::sleep_until(next.into()) => {}
                () = auth.wanted.notified() => {
                    // At most one fetch per `keys_min_interval`: a request within it is
                    // served when the interval ends.
                    let earliest = auth.keys.load().as_ref().map(|keys| {
                        keys.fetched + auth.source.min_interval
                    });
                    if let Some(earliest) = earliest.filter(|at| *at > Instant::now()) {
                        next = next.min(earliest);
                        continue;
                    }
                }
            }
            auth.counters.fetches.fetch_add(1, Ordering::Relaxed);
            match auth.source.fetch().await {
                Ok(set) => {
                    tracing::info!(extension = %auth.id, keys = set.len(), "issuer keys fetched");
                    auth.set_keys(set);
                    backoff.reset();
                    next = Instant::now() + auth.source.refresh_interval;
                    if !ready {
                        ready = true;
                        control.set_ready();
                    }
                    if degraded {
                        degraded = false;
                        control.set_healthy();
                    }
                }
                Err(error) => {
                    auth.counters.failures.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay(None);
                    next = Instant::now() + delay;
                    let serving = if auth.keys.load().is_some() {
                        "the keys fetched before are used meanwhile"
                    } else {
                        "no key yet: every token is refused with 503"
                    };
                    let message = format!(
                        "fetching the issuer's keys failed ({} in a row; next attempt in \
                         {delay:?}; {serving}): {error}",
                        backoff.failures()
                    );
                    tracing::warn!(extension = %auth.id, "{message}");
                    degraded = true;
                    control.set_degraded(message);
                }
            }
        }
    }
}
