//! `extension:redis_kv`: the factory, how an instance connects, and its readiness task.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use otap_df_core::capability::{CapabilityId, CircuitBreaker, KeyValueStore, KvError, shared};
use otap_df_core::config::ComponentConfig;
use otap_df_core::extension::{
    ExtensionContext, ExtensionControl, ExtensionError, ExtensionFactory, ExtensionMessage,
    Readiness, SharedExtension, SharedTask,
};
use redis::aio::ConnectionManagerConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::RedisKvConfig;
use crate::error::RedisKvError;
use crate::key_value::RedisKv;

/// `extension:redis_kv`.
pub static REDIS_KV: ExtensionFactory = ExtensionFactory::new("redis_kv", env!("CARGO_PKG_NAME"))
    .description("key/value store on Redis: one connection for all cores, bounded calls")
    .provides(&[CapabilityId::KeyValueStore])
    .default_startup_timeout(Duration::from_secs(10))
    .validate_config(|config| RedisKvConfig::decode(config).map(drop))
    .shared(create)
    .updates_in_place()
    .build();

fn create(
    context: &ExtensionContext,
    config: &ComponentConfig<'_>,
) -> Result<SharedExtension, ExtensionError> {
    let config = RedisKvConfig::decode(config)?;
    let store = Arc::new(connect(context, &config)?);
    let provided: Arc<dyn shared::KeyValueStore> = store.clone();
    Ok(context
        .shared_builder()
        .provide::<KeyValueStore>(provided)
        .updatable(store.clone())
        .active(Box::new(Probe { store }), Readiness::Probe)?)
}

impl otap_df_core::extension::ConfigUpdater for RedisKv {
    fn update(&self, config: &ComponentConfig<'_>) -> Result<(), ExtensionError> {
        RedisKv::update(self, &RedisKvConfig::decode(config)?)
            .map_err(|error| ExtensionError::typed(self.id(), error))
    }
}

/// The default key prefix: unique per extension instance of a configuration.
pub fn default_prefix(context: &ExtensionContext) -> String {
    format!(
        "otap-df:{}/{}/{}:",
        context.group(),
        context.pipeline(),
        context.extension_id()
    )
}

/// Builds the store; it connects on its first call (the readiness probe's, in the engine), so
/// a server that is down at start is reported by the probe, not here.
pub fn connect(
    context: &ExtensionContext,
    config: &RedisKvConfig,
) -> Result<RedisKv, ExtensionError> {
    let id = context.extension_id().to_owned();
    // A config built in code is checked as a decoded one.
    config
        .validate()
        .map_err(|invalid| ExtensionError::typed(id.clone(), invalid))?;
    let failed = |error: RedisKvError| ExtensionError::typed(id.clone(), error);
    let client = redis::Client::open(config.url.expose())
        .map_err(|e| failed(RedisKvError::InvalidUrl { kind: e.kind() }))?;
    let mut info = client.get_connection_info().clone();
    let target = info.addr().to_string();
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    if let Some(path) = &config.password_file {
        let password = std::fs::read_to_string(path).map_err(|source| {
            failed(RedisKvError::Unreadable {
                option: "password_file".to_owned(),
                path: path.clone(),
                source,
            })
        })?;
        settings = settings.set_password(password.trim());
    }
    if let Some(db) = config.db {
        settings = settings.set_db(db);
    }
    info = info.set_redis_settings(settings);
    let uses_tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    if uses_tls {
        install_crypto_provider();
    }
    let client = match &config.tls {
        // Validation allows `tls` with `rediss://` only.
        Some(tls) if uses_tls => {
            let read = |field: &str, path: &Path| {
                std::fs::read(path).map_err(|source| {
                    failed(RedisKvError::Unreadable {
                        option: format!("tls.{field}"),
                        path: path.to_owned(),
                        source,
                    })
                })
            };
            // A PEM file without a certificate would give an empty trust store, and every
            // handshake would then fail far from its cause: say so here.
            let certificates = |field: &str, path: &Path| {
                let pem = read(field, path)?;
                let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
                match parsed {
                    Ok(certificates) if !certificates.is_empty() => Ok(pem),
                    Ok(_) => Err(failed(RedisKvError::NoCertificate {
                        option: format!("tls.{field}"),
                        path: path.to_owned(),
                    })),
                    Err(error) => Err(failed(RedisKvError::InvalidPem {
                        option: format!("tls.{field}"),
                        path: path.to_owned(),
                        problem: error.to_string(),
                    })),
                }
            };
            let root_cert = match &tls.ca_file {
                Some(path) => Some(certificates("ca_file", path)?),
                None => None,
            };
            let client_tls = match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                    client_cert: certificates("cert_file", cert)?,
                    client_key: read("key_file", key)?,
                }),
                _ => None,
            };
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
            // These errors are about the PEM files, never the URL.
            .map_err(|e| {
                failed(RedisKvError::Tls {
                    message: e.to_string(),
                })
            })?
        }
        _ => redis::Client::open(info).map_err(|e| {
            failed(RedisKvError::Target {
                target: target.clone(),
                kind: e.kind(),
            })
        })?,
    };
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(config.max_retries)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    Ok(RedisKv::new(
        id,
        target,
        default_prefix(context),
        config,
        client,
        manager_config,
        crate::key_value::CallMetrics::of(context),
    ))
}

/// TLS needs a process-wide rustls crypto provider; this crate brings `ring`. A provider the
/// application installed first is kept.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Pings until the server answers (ready), then waits for shutdown. While the server does not
/// answer, the extension reports why, so a readiness timeout says what was tried.
struct Probe {
    store: Arc<RedisKv>,
}

#[otap_df_core::async_trait]
impl SharedTask for Probe {
    async fn run(self: Box<Self>, mut control: ExtensionControl) -> Result<(), ExtensionError> {
        loop {
            match self.store.call_direct::<String>(redis::cmd("PING")).await {
                Ok(_) => {
                    control.set_healthy();
                    control.set_ready();
                    tracing::info!(extension = %self.store.id, target = %self.store.target, "connected to Redis");
                    break;
                }
                // What the server refuses (a wrong password, an ACL) will not pass by itself:
                // fail the start now instead of at the end of `startup_timeout`.
                Err(KvError::Refused { message, .. }) => {
                    return Err(ExtensionError::typed(
                        self.store.id.clone(),
                        RedisKvError::Refused { message },
                    ));
                }
                Err(error) => {
                    control.set_degraded(format!(
                        "Redis at `{}` does not answer: {error}",
                        self.store.target
                    ));
                    tokio::select! {
                        message = control.recv() => match message {
                            None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                            Some(_) => {}
                        },
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
        // Ready: from now on, watch the breaker. While it is open the extension is degraded
        // and pings Redis every 100 ms; the first answer closes it.
        let store = &self.store;
        loop {
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                    Some(_) => continue,
                },
                () = store.breaker.opened() => {}
            }
            let why = format!(
                "Redis at `{}` does not answer; calls fail fast until it does ({})",
                store.target,
                store.breaker.last_error()
            );
            tracing::warn!(extension = %store.id, "{why}");
            control.set_degraded(why);
            loop {
                tokio::select! {
                    message = control.recv() => match message {
                        None | Some(ExtensionMessage::Shutdown { .. }) => return Ok(()),
                        Some(_) => continue,
                    },
                    () = tokio::time::sleep(CircuitBreaker::TRIAL_INTERVAL) => {}
                }
                // A consumer's trial call may have closed it already.
                if !store.breaker.is_open()
                    || store
                        .call_direct::<String>(redis::cmd("PING"))
                        .await
                        .is_ok()
                {
                    store.breaker.close();
                    control.set_healthy();
                    tracing::info!(extension = %store.id, target = %store.target, "Redis answers again");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use otap_df_core::extension::ExtensionContext;

    use super::{REDIS_KV, default_prefix};

    #[test]
    fn the_default_prefix_names_the_scope_of_the_instance() {
        let prefix = |group: &str, pipeline: &str| {
            default_prefix(&ExtensionContext::new(
                &REDIS_KV, "store", group, pipeline, None,
            ))
        };
        assert_eq!(prefix("g", "p"), "otap-df:g/p/store:");
        // Declared in group `g` or at the engine: one instance for all their pipelines.
        assert_eq!(prefix("g", ""), "otap-df:g//store:");
        assert_eq!(prefix("", ""), "otap-df://store:");
    }
}
