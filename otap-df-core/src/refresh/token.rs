//! [`RefreshingToken`]: the state a provider's consumers read, and the fetches that replace
//! it; [`Refresher`]: the task that keeps it supplied.
//!
//! One instance serves every core (shared), so N cores make one token request, not N.
//! Readers never lock: the token sits in a [`TokenCell`] (an `ArcSwapOption` and a
//! generation) that the fetches replace; subscribers are woken through a `watch` channel.
//! Fetches are serialised by one async mutex, whether the loop or a consumer (`fresh_token`)
//! asks: concurrent askers share one request.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::{Backoff, FetchError, RefreshConfig, RetryConfig, TokenSource, refresh_delay};
use crate::capability::{TokenCell, TokenError, TokenSubscription, shared};
use crate::extension::{ErrorKind, ExtensionControl, ExtensionError, ExtensionMessage, SharedTask};
use crate::secret::{AuthHeader, BearerToken, EXPIRY_MARGIN};

/// Who asks for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The refresh loop, on its schedule.
    Scheduled,
    /// A consumer, through `fresh_token` (a server rejected the current token).
    Forced,
}

/// What the fetches have learnt; guarded by the fetch mutex, read by the loop.
#[derive(Debug)]
struct FetchState {
    backoff: Backoff,
    /// When the next request is due: a retry after a failure, or the renewal of the token.
    next_attempt: Option<Instant>,
    /// When the last request started.
    last_started: Option<Instant>,
    /// When the last request asked by a consumer started.
    last_forced: Option<Instant>,
    /// Why the last request failed, while the failures last.
    last_error: Option<(ErrorKind, String)>,
}

/// A token from a [`TokenSource`], renewed ahead of its expiry: provides
/// `bearer_token_provider` to every core.
///
/// Counters for the admin endpoint: `renewals` (tokens received), `renewal_failures`
/// (requests failed), and the gauge `token_expiry_unix_seconds` (when the token served
/// expires; 0 before the first) — see [`with_metrics`](Self::with_metrics).
pub struct RefreshingToken {
    id: String,
    header: AuthHeader,
    token: TokenCell,
    updates: watch::Sender<Option<BearerToken>>,
    /// Where tokens come from, and when to renew them: replaced by an update, read by each
    /// request.
    settings: Mutex<Arc<Settings>>,
    /// New settings an update left for the next request (which it makes due at once).
    pending: Mutex<Option<Arc<Settings>>>,
    fetch: tokio::sync::Mutex<FetchState>,
    /// Requests made (successful or not); the loop watches it to re-plan and report.
    attempts: watch::Sender<u64>,
    renewals: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    expiry: Arc<AtomicI64>,
    // A copy of the fetch state's schedule and error, readable without the async mutex.
    status: Mutex<Status>,
}

/// What a configuration decides: where tokens come from, when to renew, how to retry.
struct Settings {
    source: Arc<dyn TokenSource>,
    refresh: RefreshConfig,
    retry: RetryConfig,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("method", &self.source.method())
            .field("refresh", &self.refresh)
            .field("retry", &self.retry)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
struct Status {
    next_attempt: Option<Instant>,
    last_error: Option<(ErrorKind, String)>,
}

impl std::fmt::Debug for RefreshingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingToken")
            .field("id", &self.id)
            .field("settings", &self.settings())
            .field("renewals", &self.renewals.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RefreshingToken {
    /// Tokens from `source` for extension `id`, renewed on `refresh`, retried on `retry`
    /// (checked by the caller: [`check_policies`](super::check_policies)); makes no request
    /// (the [`Refresher`] makes the first).
    pub fn new(
        id: &str,
        source: Arc<dyn TokenSource>,
        refresh: RefreshConfig,
        retry: RetryConfig,
    ) -> Self {
        Self {
            id: id.to_owned(),
            header: AuthHeader::default(),
            token: TokenCell::new(),
            updates: watch::Sender::new(None),
            settings: Mutex::new(Arc::new(Settings {
                source,
                refresh,
                retry,
            })),
            pending: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(FetchState {
                backoff: Backoff::new(retry),
                next_attempt: None,
                last_started: None,
                last_forced: None,
                last_error: None,
            }),
            attempts: watch::Sender::new(0),
            renewals: Arc::default(),
            failures: Arc::default(),
            expiry: Arc::default(),
            status: Mutex::new(Status::default()),
        }
    }

    /// Counts into the extension's metrics (`context.counter("renewals")`,
    /// `context.counter("renewal_failures")`, `context.gauge("token_expiry_unix_seconds")`).
    #[must_use]
    pub fn with_metrics(
        mut self,
        renewals: Arc<AtomicU64>,
        failures: Arc<AtomicU64>,
        expiry: Arc<AtomicI64>,
    ) -> Self {
        self.renewals = renewals;
        self.failures = failures;
        self.expiry = expiry;
        self
    }

    /// Sends the token in `header` instead of `Authorization: Bearer`.
    #[must_use]
    pub fn with_header(mut self, header: AuthHeader) -> Self {
        self.header = header;
        self
    }

    /// The extension id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes a changed configuration (a reload): the next token request — made at once —
    /// uses it; the current token is served until that request answers.
    pub fn update(&self, source: Arc<dyn TokenSource>, refresh: RefreshConfig, retry: RetryConfig) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Settings {
            source,
            refresh,
            retry,
        }));
        // Due now: the loop re-plans when the attempt count moves.
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_attempt = Some(Instant::now());
        self.attempts.send_modify(|_| {});
        tracing::info!(extension = %self.id, "configuration updated; requesting a token with it");
    }

    /// What kind of failure the last token request was, while requests fail.
    pub fn failing(&self) -> Option<ErrorKind> {
        self.status().last_error.map(|(kind, _)| kind)
    }

    /// Tokens received so far.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// The token being served, usable or not.
    fn stored(&self) -> Option<BearerToken> {
        self.token.load()
    }

    /// The token being served if it is still usable.
    fn usable(&self) -> Option<BearerToken> {
        self.token.load().filter(BearerToken::is_usable)
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes one request unless another one already answered the need; returns the token
    /// to use. Requests never overlap.
    async fn fetch(&self, trigger: Trigger) -> Result<BearerToken, FetchError> {
        let asked = Instant::now();
        let mut state = self.fetch.lock().await;
        let updated = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(settings) = updated {
            // New settings: a request now, whatever the schedule said.
            state.backoff = Backoff::new(settings.retry);
            state.next_attempt = None;
            state.last_forced = None;
            *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
        }
        let settings = self.settings();
        let now = Instant::now();
        let skip = match trigger {
            // A consumer's request made since this one was planned moved the schedule.
            Trigger::Scheduled => state.next_attempt.is_some_and(|due| due > now),
            Trigger::Forced => {
                // A request started after this caller asked: its answer is fresh enough.
                state.last_started.is_some_and(|at| at >= asked)
                    // Backing off after failures (the negative cache).
                    || state.last_error.is_some()
                        && state.next_attempt.is_some_and(|due| due > now)
                    // A storm of rejections makes one request per `min_interval`.
                    || state
                        .last_forced
                        .is_some_and(|at| now.duration_since(at) < settings.refresh.min_interval)
            }
        };
        if skip {
            return self.usable().ok_or_else(|| match &state.last_error {
                Some((kind, message)) => FetchError {
                    kind: *kind,
                    message: message.clone(),
                },
                None => FetchError::unavailable("no token received yet"),
            });
        }
        let started = Instant::now();
        state.last_started = Some(started);
        if trigger == Trigger::Forced {
            state.last_forced = Some(started);
        }
        let result = settings
            .source
            .fetch()
            .await
            .and_then(|token| lifetime(&token).map(|lifetime| (token, lifetime)));
        let outcome = match result {
            Ok((token, lifetime)) => {
                state.backoff.reset();
                state.last_error = None;
                let delay = refresh_delay(lifetime, &settings.refresh);
                state.next_attempt = Some(started + delay);
                let renewals = self.renewals.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    extension = %self.id,
                    method = settings.source.method(),
                    renewals,
                    expires_in = ?lifetime,
                    renew_in = ?delay,
                    "token received"
                );
                self.token.store(Some(token.clone()));
                if let Some(seconds) = token
                    .expires_at()
                    .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                {
                    let seconds = i64::try_from(seconds.as_secs()).unwrap_or(i64::MAX);
                    self.expiry.store(seconds, Ordering::Relaxed);
                }
                // Subscribers hear of a new value; a renewal that returns the same value with
                // a later expiry only updates `current_token`.
                self.updates.send_if_modified(|served| {
                    let changed = served
                        .as_ref()
                        .is_none_or(|s| s.secret().expose() != token.secret().expose());
                    *served = Some(token.clone());
                    changed
                });
                Ok(token)
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let usable_left = self.usable().and_then(|t| usable_left(&t));
                let delay = state.backoff.next_delay(usable_left);
                state.next_attempt = Some(Instant::now() + delay);
                let serving = match usable_left {
                    Some(left) => format!("serving the current token for {left:?} more"),
                    None => "no usable token to serve".to_owned(),
                };
                let message = format!(
                    "token request failed ({}; {} in a row; next attempt in {delay:?}; \
                     {serving}): {}",
                    error.kind,
                    state.backoff.failures(),
                    error.message,
                );
                tracing::warn!(extension = %self.id, trigger = ?trigger, "{message}");
                state.last_error = Some((error.kind, message.clone()));
                self.usable().ok_or(FetchError {
                    kind: error.kind,
                    message,
                })
            }
        };
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Status {
            next_attempt: state.next_attempt,
            last_error: state.last_error.clone(),
        };
        self.attempts.send_modify(|n| *n += 1);
        outcome
    }

    /// Stops serving a token that is no longer usable.
    fn withdraw_unusable(&self) -> bool {
        let stale = self.token.load().is_some_and(|t| !t.is_usable());
        if stale {
            self.token.store(None);
            self.updates.send_replace(None);
        }
        stale
    }
}

/// How long `token` stays usable from now.
fn usable_left(token: &BearerToken) -> Option<Duration> {
    let last_usable = token.expires_at()?.checked_sub(EXPIRY_MARGIN)?;
    last_usable.duration_since(SystemTime::now()).ok()
}

/// The lifetime of a new token; one that is not usable even now is a failed request.
fn lifetime(token: &BearerToken) -> Result<Duration, FetchError> {
    let Some(expires_at) = token.expires_at() else {
        return Err(FetchError::unavailable(
            "the token service returned a token without an expiry",
        ));
    };
    let lifetime = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    if !token.is_usable() {
        return Err(FetchError::unavailable(format!(
            "the token service returned a token that expires in {lifetime:?}, too soon to be \
             used (tokens are not sent within {EXPIRY_MARGIN:?} of their expiry)"
        )));
    }
    Ok(lifetime)
}

/// The task of an instance: requests a token at start (ready after the first), renews it
/// on schedule, retries failures with backoff, and reports the extension degraded while
/// requests fail.
pub struct Refresher {
    auth: Arc<RefreshingToken>,
}

impl Refresher {
    /// The loop that keeps `auth` supplied.
    pub fn new(auth: Arc<RefreshingToken>) -> Self {
        Self { auth }
    }

    /// Reports the state after a request or a withdrawal: degraded while requests fail or
    /// no usable token is held, healthy otherwise.
    fn report(&self, control: &ExtensionControl, degraded: &mut Option<String>) {
        let status = self.auth.status();
        let now = match (status.last_error, self.auth.usable().is_some()) {
            (Some((_, error)), _) => Some(error),
            (None, true) => None,
            (None, false) => Some("the token expired and no new one was received yet".to_owned()),
        };
        if now != *degraded {
            match &now {
                Some(why) => control.set_degraded(why.clone()),
                None => {
                    if degraded.is_some() {
                        tracing::info!(extension = %self.auth.id, "token requests succeed again");
                    }
                    control.set_healthy();
                }
            }
            *degraded = now;
        }
    }
}

#[crate::async_trait]
impl SharedTask for Refresher {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        let mut attempts = self.auth.attempts.subscribe();
        let mut ready = false;
        let mut degraded: Option<String> = None;
        loop {
            attempts.borrow_and_update();
            // The first request is due at once (no schedule yet).
            let due = self.auth.status().next_attempt.unwrap_or_else(Instant::now);
            let stale_at = self
                .auth
                .stored()
                .map(|token| Instant::now() + usable_left(&token).unwrap_or_default());
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => continue,
                },
                // Dropped, request included, when a shutdown arrives first.
                _ = async {
                    tokio::time::sleep_until(due.into()).await;
                    let _ = self.auth.fetch(Trigger::Scheduled).await;
                } => {}
                _ = sleep_until_some(stale_at) => {
                    if self.auth.withdraw_unusable() {
                        tracing::warn!(
                            extension = %self.auth.id,
                            "the token expired before a new one was received; none is served"
                        );
                    }
                }
                // A consumer's request: re-plan.
                _ = attempts.changed() => {}
            }
            if !ready && self.auth.usable().is_some() {
                ready = true;
                control.set_ready();
            }
            self.report(&control, &mut degraded);
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[crate::async_trait]
impl shared::BearerTokenProvider for RefreshingToken {
    /// One lock-free load and a reference-count increment; `None` before the first token.
    /// The refresh loop withdraws a token when it stops being usable
    /// ([`EXPIRY_MARGIN`] before its expiry), so none is handed out past its expiry.
    fn current_token(&self) -> Option<BearerToken> {
        self.stored()
    }

    fn token_generation(&self) -> u64 {
        self.token.generation()
    }

    fn subscribe(&self) -> TokenSubscription {
        TokenSubscription::new(self.updates.subscribe())
    }

    fn header(&self) -> &AuthHeader {
        &self.header
    }

    /// Asks the token service now, unless a request was made within `refresh.min_interval`
    /// or the extension is backing off after failures; then the current token, if usable.
    async fn fresh_token(&self) -> Result<BearerToken, TokenError> {
        self.fetch(Trigger::Forced)
            .await
            .map_err(|error| TokenError {
                provider: self.id.clone(),
                message: error.message,
            })
    }
}
