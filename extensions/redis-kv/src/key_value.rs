//! `key_value_store` on Redis: `GET`, `SET … PX`, `SET … NX PX`, `DEL` under the extension's
//! key prefix, each call bounded by `call_timeout` whatever the connection does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use otap_df_core::capability::{CircuitBreaker, KvError, shared};
use otap_df_core::extension::ExtensionContext;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError};

/// The store: a connection manager (one multiplexed connection, re-established after a
/// failure) and what every call needs.
///
/// The manager is created by the first call, on that call's runtime, where its connection
/// task then lives: in the engine that is the readiness probe on the engine's extension
/// runtime, so the connection does not depend on any core. Until then nothing connects.
pub struct RedisKv {
    pub(crate) id: String,
    /// Where it connects, without credentials (for errors and logs).
    pub(crate) target: String,
    /// What a reload may change: read per call.
    options: arc_swap::ArcSwap<Options>,
    /// The connection settings a reload may not change (`url`, credentials, `db`, timeouts
    /// of the connection, `fail_fast_after`, `tls`), as first configured.
    fixed: crate::config::RedisKvConfig,
    /// The key prefix when `key_prefix` is absent.
    default_prefix: String,
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    connection: OnceLock<ConnectionManager>,
    /// Fails calls fast while Redis is down; a background ping closes it.
    pub(crate) breaker: Arc<CircuitBreaker>,
    metrics: CallMetrics,
}

/// What an instance counts (the admin endpoint's `otap_df_extension_counter`): calls, errors
/// by class, and how long the calls that reached Redis took, in four ranges plus their sum.
#[derive(Debug, Default)]
pub(crate) struct CallMetrics {
    calls: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
    timeout: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    /// Upper bounds in microseconds, and the counter of calls that took at most as long (and
    /// longer than the bound before).
    latency: [(u64, Arc<AtomicU64>); 4],
    latency_total_us: Arc<AtomicU64>,
}

impl CallMetrics {
    pub(crate) fn of(context: &ExtensionContext) -> Self {
        Self {
            calls: context.counter("calls"),
            unavailable: context.counter("errors.unavailable"),
            timeout: context.counter("errors.timeout"),
            refused: context.counter("errors.refused"),
            latency: [
                (1_000, context.counter("latency.under_1ms")),
                (10_000, context.counter("latency.1ms_to_10ms")),
                (100_000, context.counter("latency.10ms_to_100ms")),
                (u64::MAX, context.counter("latency.over_100ms")),
            ],
            latency_total_us: context.counter("latency.total_us"),
        }
    }

    fn outcome<T>(&self, outcome: &Result<T, KvError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let class = match outcome {
            Ok(_) => return,
            Err(KvError::Unavailable { .. }) => &self.unavailable,
            Err(KvError::Timeout { .. }) => &self.timeout,
            Err(KvError::Refused { .. }) => &self.refused,
        };
        class.fetch_add(1, Ordering::Relaxed);
    }

    fn took(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_total_us.fetch_add(micros, Ordering::Relaxed);
        if let Some((_, counter)) = self.latency.iter().find(|(bound, _)| micros <= *bound) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The options a running instance takes from a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    prefix: Vec<u8>,
    default_ttl: Option<Duration>,
    call_timeout: Duration,
}

impl Options {
    fn of(config: &crate::config::RedisKvConfig, default_prefix: &str) -> Self {
        Self {
            prefix: config
                .key_prefix
                .clone()
                .unwrap_or_else(|| default_prefix.to_owned())
                .into_bytes(),
            default_ttl: config.default_ttl,
            call_timeout: config.call_timeout,
        }
    }
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = self.options.load();
        f.debug_struct("RedisKv")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("prefix", &String::from_utf8_lossy(&options.prefix))
            .field("default_ttl", &options.default_ttl)
            .field("call_timeout", &options.call_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// `config` gives `key_prefix` (`default_prefix` when absent), `default_ttl`,
    /// `call_timeout` and `fail_fast_after`.
    pub(crate) fn new(
        id: String,
        target: String,
        default_prefix: String,
        config: &crate::config::RedisKvConfig,
        client: redis::Client,
        manager_config: ConnectionManagerConfig,
        metrics: CallMetrics,
    ) -> Self {
        Self {
            metrics,
            breaker: Arc::new(CircuitBreaker::new(id.clone(), config.fail_fast_after)),
            id,
            target,
            options: arc_swap::ArcSwap::from_pointee(Options::of(config, &default_prefix)),
            fixed: config.clone(),
            default_prefix,
            client,
            manager_config,
            connection: OnceLock::new(),
        }
    }

    /// The connection manager, created on first use (inside a runtime).
    fn connection(&self) -> Result<ConnectionManager, KvError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let created = ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        )
        .map_err(|error| self.error(&error))?;
        // Two first calls racing create two managers; one is kept, the other dropped.
        Ok(self.connection.get_or_init(|| created).clone())
    }

    /// The extension id, which errors name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key prefix.
    pub fn prefix(&self) -> Vec<u8> {
        self.options.load().prefix.clone()
    }

    fn call_timeout(&self) -> Duration {
        self.options.load().call_timeout
    }

    /// Takes a changed configuration (a reload): `key_prefix`, `default_ttl` and
    /// `call_timeout` apply from the next call. What sets up the connection cannot change
    /// while running; such a change is refused, naming the option, and nothing changes.
    pub fn update(
        &self,
        config: &crate::config::RedisKvConfig,
    ) -> Result<(), crate::error::RedisKvError> {
        let old = &self.fixed;
        let tls = |c: &crate::config::RedisKvConfig| {
            c.tls
                .as_ref()
                .map(|t| (t.ca_file.clone(), t.cert_file.clone(), t.key_file.clone()))
        };
        let fixed = [
            ("url", old.url.expose() == config.url.expose()),
            ("username", old.username == config.username),
            (
                "password",
                old.password.as_ref().map(|p| p.expose())
                    == config.password.as_ref().map(|p| p.expose()),
            ),
            ("password_file", old.password_file == config.password_file),
            ("db", old.db == config.db),
            (
                "connect_timeout",
                old.connect_timeout == config.connect_timeout,
            ),
            (
                "response_timeout",
                old.response_timeout == config.response_timeout,
            ),
            ("max_retries", old.max_retries == config.max_retries),
            (
                "fail_fast_after",
                old.fail_fast_after == config.fail_fast_after,
            ),
            ("tls", tls(old) == tls(config)),
        ];
        if let Some((option, _)) = fixed.iter().find(|(_, same)| !same) {
            return Err(crate::error::RedisKvError::FixedAtStart { option });
        }
        self.options
            .store(Arc::new(Options::of(config, &self.default_prefix)));
        tracing::info!(extension = %self.id, "configuration updated");
        Ok(())
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let options = self.options.load();
        let mut full = Vec::with_capacity(options.prefix.len() + key.len());
        full.extend_from_slice(&options.prefix);
        full.extend_from_slice(key);
        full
    }

    /// Runs `command` unless the breaker is open, within `call_timeout`.
    pub(crate) async fn call<T: FromRedisValue>(&self, command: redis::Cmd) -> Result<T, KvError> {
        if let Err(refused) = self.breaker.admit() {
            if self.breaker.take_trial() {
                self.check_in_background();
            }
            let refused = Err(refused);
            self.metrics.outcome(&refused);
            return refused;
        }
        let started = std::time::Instant::now();
        let outcome = self.call_direct(command).await;
        self.metrics.took(started.elapsed());
        self.metrics.outcome(&outcome);
        self.breaker.record(&outcome);
        outcome
    }

    /// Pings Redis on a task of its own (the caller does not wait); an answer closes the
    /// breaker.
    fn check_in_background(&self) {
        let Ok(mut connection) = self.connection() else {
            return;
        };
        let (breaker, timeout) = (self.breaker.clone(), self.call_timeout());
        tokio::spawn(async move {
            let ping = redis::cmd("PING");
            if let Ok(Ok(_)) =
                tokio::time::timeout(timeout, ping.query_async::<String>(&mut connection)).await
            {
                breaker.close();
            }
        });
    }

    /// Runs `command` within `call_timeout`, whatever the breaker says (the probe's way).
    pub(crate) async fn call_direct<T: FromRedisValue>(
        &self,
        command: redis::Cmd,
    ) -> Result<T, KvError> {
        let mut connection = self.connection()?;
        let timeout = self.call_timeout();
        match tokio::time::timeout(timeout, command.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(&error)),
            Err(_) => Err(KvError::Timeout {
                store: self.id.clone(),
                timeout,
            }),
        }
    }

    /// A transient error for connection trouble, a permanent one for what the server refused
    /// (authentication, a key of another type).
    fn error(&self, error: &RedisError) -> KvError {
        if error.is_timeout() {
            return KvError::Timeout {
                store: self.id.clone(),
                timeout: self.call_timeout(),
            };
        }
        let store = self.id.clone();
        let message = format!("{}: {error}", self.target);
        let transient = !is_refusal(error)
            && (error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_unrecoverable_error()
                || is_passing_server_state(error));
        if transient {
            KvError::Unavailable { store, message }
        } else {
            KvError::Refused { store, message }
        }
    }

    fn set_command(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> redis::Cmd {
        let mut command = redis::cmd("SET");
        command.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl.or(self.options.load().default_ttl) {
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            command.arg("PX").arg(millis);
        }
        command
    }
}

/// Authentication and permission failures: retrying with the same credentials fails the same
/// way, however the library classifies them for its reconnection logic.
fn is_refusal(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Server replies that describe a state that passes without any change on our side: still
/// loading its data set, a script running too long, a failover, memory full.
fn is_passing_server_state(error: &RedisError) -> bool {
    matches!(
        error.code(),
        Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY" | "OOM")
    )
}

#[otap_df_core::async_trait]
impl shared::KeyValueStore for RedisKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let mut command = redis::cmd("GET");
        command.arg(self.key(key));
        self.call(command).await
    }

    async fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        self.call::<()>(self.set_command(key, value, ttl)).await
    }

    async fn set_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut command = self.set_command(key, value, ttl);
        command.arg("NX");
        // `OK` when set, nil when a live value was there.
        let reply: Option<String> = self.call(command).await?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, KvError> {
        let mut command = redis::cmd("DEL");
        command.arg(self.key(key));
        let removed: u64 = self.call(command).await?;
        Ok(removed > 0)
    }
}
