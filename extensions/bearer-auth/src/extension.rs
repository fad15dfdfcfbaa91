//! `extension:bearer_auth`: the factory, the state both capabilities read, and the task that
//! re-reads token files.
//!
//! One instance serves every core (shared): one file watcher per pipeline, however many
//! cores. Readers never lock: the client token and the accepted tokens sit behind
//! `ArcSwap`s that the reload task replaces; subscribers are woken through a `watch` channel.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use otap_df_core::capability::TokenCell;
use otap_df_core::capability::{BearerTokenAuthorizer, BearerTokenProvider, CapabilityId, shared};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory, ExtensionMessage,
    Readiness, ShardedCounter, SharedExtension, SharedTask,
};
use otap_df_core::secret::{AuthHeader, BearerToken, Secret};
use tokio::sync::watch;

use crate::authorizer::{Accepted, AcceptedTokens};
use crate::config::BearerAuthConfig;
use crate::error::BearerAuthError;
use crate::token_source::{self, FileError};

/// `extension:bearer_auth`.
pub static BEARER_AUTH: ExtensionFactory = ExtensionFactory::new(
    "bearer_auth",
    env!("CARGO_PKG_NAME"),
)
.description(
    "static or file-backed bearer tokens: the token clients send, the tokens servers accept",
)
.provides(&[
    CapabilityId::BearerTokenProvider,
    CapabilityId::BearerTokenAuthorizer,
])
.validate_config(|config| decode(config).map(drop))
.shared(create)
.updates_in_place()
.build();

fn decode(
    config: &ComponentConfig<'_>,
) -> Result<BearerAuthConfig, otap_df_core::config::ConfigError> {
    BearerAuthConfig::decode(config, &|name| std::env::var(name).ok())
}

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = decode(config)?;
    let mut auth = BearerAuth::new(context.extension_id(), &config)?;
    auth.counters = Counters::of(context);
    let auth = Arc::new(auth);
    let provider: Arc<dyn shared::BearerTokenProvider> = auth.clone();
    let authorizer: Arc<dyn shared::BearerTokenAuthorizer> = auth.clone();
    let builder = context
        .shared_builder()
        .provide::<BearerTokenProvider>(provider)
        .provide::<BearerTokenAuthorizer>(authorizer)
        .updatable(auth.clone());
    if config.watches_files() {
        let task = Reloader::new(auth, config.reload_interval);
        Ok(builder.active(Box::new(task), Readiness::Probe)?)
    } else {
        Ok(builder.passive()?)
    }
}

/// Where the client token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientSource {
    /// None configured: only the server side is served.
    None,
    /// `token:` or `token_env:`, fixed for the extension's life.
    Fixed(&'static str),
    /// `token_file:`.
    File(PathBuf),
}

/// The tokens as last read, from which the accepted list is rebuilt.
#[derive(Debug, Default)]
struct Sources {
    client: Option<Secret>,
    inline: Vec<Secret>,
    file: Vec<(Secret, usize)>,
}

/// The state of one `bearer_auth` instance; both capabilities are views of it.
pub struct BearerAuth {
    pub(crate) id: String,
    pub(crate) header: AuthHeader,
    pub(crate) client: TokenCell,
    pub(crate) updates: watch::Sender<Option<BearerToken>>,
    pub(crate) accepted: ArcSwap<AcceptedTokens>,
    client_source: ClientSource,
    tokens_file: Option<PathBuf>,
    /// How often files are re-read (fixed at start: the task's timer).
    reload_interval: Duration,
    // Written only by reloads (never on a request path).
    sources: Mutex<Sources>,
    pub(crate) counters: Counters,
}

/// What an instance counts (the admin endpoint's `otap_df_extension_counter`): decisions by
/// outcome, token files served anew, and reload attempts that found a broken file. One
/// atomic add per event; the decisions, counted by every core per request, on a shard of
/// the core's own.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) authorized: Arc<ShardedCounter>,
    pub(crate) denied_missing: Arc<ShardedCounter>,
    pub(crate) denied_invalid: Arc<ShardedCounter>,
    reloads: Arc<AtomicU64>,
    reload_failures: Arc<AtomicU64>,
}

impl Counters {
    fn of(context: &ExtensionContext) -> Self {
        Self {
            authorized: context.sharded_counter("authorized"),
            denied_missing: context.sharded_counter("denied.missing"),
            denied_invalid: context.sharded_counter("denied.invalid"),
            reloads: context.counter("reloads"),
            reload_failures: context.counter("reload_failures"),
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("id", &self.id)
            .field("header", &self.header)
            .field("client_source", &self.client_source)
            .field("tokens_file", &self.tokens_file)
            .field("accepted", &self.accepted.load().len())
            .finish_non_exhaustive()
    }
}

impl BearerAuth {
    /// Reads every configured source once; a token file that cannot give a token is an error
    /// naming it, and so is an option that is not valid (a config built in code is checked as
    /// a decoded one).
    pub fn new(id: &str, config: &BearerAuthConfig) -> Result<Self, ExtensionError> {
        config
            .check(None)
            .map_err(|invalid| ExtensionError::typed(id, invalid))?;
        let failed = |error: FileError| ExtensionError::typed(id, BearerAuthError::from(error));
        let (client_source, client) = Self::client_of(id, config)?;
        let file = match &config.tokens_file {
            Some(path) => {
                let content = token_source::read_blocking(path).map_err(failed)?;
                token_source::parse_tokens(path, content).map_err(failed)?
            }
            None => Vec::new(),
        };
        let sources = Sources {
            client,
            inline: config.tokens.clone(),
            file,
        };
        let auth = Self {
            id: id.to_owned(),
            header: AuthHeader::new(&config.header, &config.scheme),
            client: TokenCell::new(),
            updates: watch::Sender::new(None),
            accepted: ArcSwap::from_pointee(AcceptedTokens::default()),
            client_source,
            tokens_file: config.tokens_file.clone(),
            reload_interval: config.reload_interval,
            sources: Mutex::new(Sources::default()),
            counters: Counters::default(),
        };
        auth.install(sources);
        Ok(auth)
    }

    /// Where the client token of `config` comes from, and the token as read now.
    fn client_of(
        id: &str,
        config: &BearerAuthConfig,
    ) -> Result<(ClientSource, Option<Secret>), ExtensionError> {
        let failed = |error: FileError| ExtensionError::typed(id, BearerAuthError::from(error));
        Ok(
            match (&config.token, &config.token_file, &config.token_env) {
                (Some(token), _, _) => (ClientSource::Fixed("token"), Some(token.clone())),
                (_, Some(path), _) => {
                    let content = token_source::read_blocking(path).map_err(failed)?;
                    let token = token_source::parse_token(path, content).map_err(failed)?;
                    (ClientSource::File(path.clone()), Some(token))
                }
                (_, _, Some(name)) => {
                    let value = std::env::var(name).map_err(|_| {
                        ExtensionError::typed(
                            id,
                            BearerAuthError::UnsetVariable { name: name.clone() },
                        )
                    })?;
                    let token = Secret::new(value.trim());
                    if token.is_empty() {
                        return Err(ExtensionError::typed(
                            id,
                            BearerAuthError::EmptyVariable { name: name.clone() },
                        ));
                    }
                    (ClientSource::Fixed("token_env"), Some(token))
                }
                (None, None, None) => (ClientSource::None, None),
            },
        )
    }

    /// Takes a changed `config:` (a reload): new inline tokens and client token are served
    /// from the next request on; the options that set up files and the header cannot change.
    pub fn update(&self, config: &BearerAuthConfig) -> Result<(), ExtensionError> {
        let fixed =
            |option| ExtensionError::typed(&self.id, BearerAuthError::FixedAtStart { option });
        if AuthHeader::new(&config.header, &config.scheme) != self.header {
            return Err(fixed("header` / `scheme"));
        }
        if config.tokens_file != self.tokens_file {
            return Err(fixed("tokens_file"));
        }
        if config.reload_interval != self.reload_interval {
            return Err(fixed("reload_interval"));
        }
        let (client_source, client) = Self::client_of(&self.id, config)?;
        // Which option gives the client token is fixed (a file has its task); its inline
        // value or variable is not.
        if client_source != self.client_source {
            return Err(fixed("token` / `token_env` / `token_file"));
        }
        let (file, client) = {
            let current = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            // A token file keeps its last reading: its task re-reads it.
            let client = match client_source {
                ClientSource::File(_) => current.client.clone(),
                _ => client,
            };
            (current.file.clone(), client)
        };
        self.install(Sources {
            client,
            inline: config.tokens.clone(),
            file,
        });
        tracing::info!(extension = %self.id, "configuration updated; serving the new tokens");
        Ok(())
    }

    /// Makes `sources` the served tokens: rebuilds the accepted list and, when the client
    /// token changed, swaps it and wakes subscribers.
    fn install(&self, sources: Sources) {
        let mut accepted = Vec::new();
        if let Some(token) = &sources.client {
            let name = match &self.client_source {
                ClientSource::Fixed(option) => (*option).to_owned(),
                _ => "token_file".to_owned(),
            };
            accepted.push(Accepted::new(token.clone(), &format!("{}:{name}", self.id)));
        }
        for (i, token) in sources.inline.iter().enumerate() {
            accepted.push(Accepted::new(
                token.clone(),
                &format!("{}:tokens[{i}]", self.id),
            ));
        }
        if let Some(path) = &self.tokens_file {
            for (token, line) in &sources.file {
                accepted.push(Accepted::new(
                    token.clone(),
                    &format!("{}:{}:{line}", self.id, path.display()),
                ));
            }
        }
        self.accepted.store(Arc::new(AcceptedTokens::new(accepted)));
        let mut current = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let client_changed = current.client.as_ref().map(Secret::expose)
            != sources.client.as_ref().map(Secret::expose);
        if client_changed {
            let token = sources.client.clone().map(BearerToken::from_secret);
            self.client.store(token.clone());
            self.updates.send_replace(token);
        }
        *current = sources;
    }

    /// Re-reads the token files. Files that cannot give a token keep their last good tokens;
    /// their errors are returned.
    pub(crate) async fn reload(&self) -> Vec<FileError> {
        let mut errors = Vec::new();
        let (mut client, inline, mut file) = {
            let current = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            (
                current.client.clone(),
                current.inline.clone(),
                current.file.clone(),
            )
        };
        if let ClientSource::File(path) = &self.client_source {
            match token_source::read(path)
                .await
                .and_then(|content| token_source::parse_token(path, content))
            {
                Ok(token) => client = Some(token),
                Err(error) => errors.push(error),
            }
        }
        if let Some(path) = &self.tokens_file {
            match token_source::read(path)
                .await
                .and_then(|content| token_source::parse_tokens(path, content))
            {
                Ok(tokens) => file = tokens,
                Err(error) => errors.push(error),
            }
        }
        if !self.same_as_current(&client, &file) {
            self.install(Sources {
                client,
                inline,
                file,
            });
            tracing::info!(extension = %self.id, "token files changed; serving the new tokens");
            Counters::add(&self.counters.reloads);
        }
        if !errors.is_empty() {
            Counters::add(&self.counters.reload_failures);
        }
        errors
    }

    fn same_as_current(&self, client: &Option<Secret>, file: &[(Secret, usize)]) -> bool {
        let current = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        current.client.as_ref().map(Secret::expose) == client.as_ref().map(Secret::expose)
            && current.file.len() == file.len()
            && current
                .file
                .iter()
                .zip(file)
                .all(|((a, la), (b, lb))| a.expose() == b.expose() && la == lb)
    }

    /// Whether the client token comes from a file (so `fresh_token` re-reads it).
    pub(crate) fn client_file(&self) -> bool {
        matches!(self.client_source, ClientSource::File(_))
    }

    /// Why there is no client token to give.
    pub(crate) fn no_client_token(&self) -> &'static str {
        match self.client_source {
            ClientSource::None => {
                "no client token configured (set `token`, `token_file` or `token_env`)"
            }
            _ => "the token source gave no token",
        }
    }
}

impl otap_df_core::extension::ConfigUpdater for BearerAuth {
    fn update(&self, config: &ComponentConfig<'_>) -> Result<(), ExtensionError> {
        BearerAuth::update(self, &decode(config)?)
    }
}

/// The task of a file-backed instance: re-reads the files every `every`, reports the
/// extension degraded (and keeps serving the last good tokens) while a file is broken.
pub struct Reloader {
    auth: Arc<BearerAuth>,
    every: Duration,
}

impl Reloader {
    /// The task that keeps `auth` in step with its files.
    pub fn new(auth: Arc<BearerAuth>, every: Duration) -> Self {
        Self { auth, every }
    }
}

#[otap_df_core::async_trait]
impl SharedTask for Reloader {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        // The constructor read every file successfully: ready now.
        control.set_ready();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut degraded: Option<String> = None;
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    let errors = self.auth.reload().await;
                    let now = (!errors.is_empty()).then(|| {
                        let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
                        format!("{}; serving the last good tokens", problems.join("; "))
                    });
                    if now != degraded {
                        match &now {
                            Some(why) => {
                                tracing::warn!(extension = %self.auth.id, "{why}");
                                control.set_degraded(why.clone());
                            }
                            None => {
                                tracing::info!(extension = %self.auth.id, "token files readable again");
                                control.set_healthy();
                            }
                        }
                        degraded = now;
                    }
                }
            }
        }
    }
}
