//! `config:` of `extension:redis_kv`, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use otap_df_core::capability::key_value;
use otap_df_core::config::{ComponentConfig, ConfigError, InvalidOption};
use otap_df_core::secret::Secret;
use serde::Deserialize;

/// The options of `extension:redis_kv`. See the crate README for each one.
///
/// Built in code (without YAML) from the server's URL, the rest at its default until set:
///
/// ```
/// use std::time::Duration;
/// use otap_df_core::secret::Secret;
/// use otap_df_extension_redis_kv::RedisKvConfig;
///
/// let config = RedisKvConfig::new(Secret::new("redis://127.0.0.1:6379/0"))
///     .with_default_ttl(Duration::from_secs(600));
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisKvConfig {
    /// `redis://host:port/db` or `unix:///path/to.sock`; may carry credentials, so it is held
    /// as a secret and shown without them.
    pub url: Secret,
    /// ACL user name (overrides the URL's).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (overrides the URL's).
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (surrounding whitespace ignored), read at start.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Database number (overrides the URL's).
    #[serde(default)]
    pub db: Option<i64>,
    /// Prefix of every key; `otap-df:<group>/<pipeline>/<extension id>:` when absent.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Expiry of entries written without a TTL; none when absent.
    #[serde(default, with = "humantime_serde")]
    pub default_ttl: Option<Duration>,
    /// Bound of one connection attempt.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound of one command's response.
    #[serde(default = "defaults::response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Reconnection attempts after a connection is lost, before calls fail at once until
    /// the next call starts a new round.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: usize,
    /// Bound of a whole call, reconnection included: no call takes longer.
    #[serde(default = "defaults::call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Transient failures in a row after which calls fail at once, until a background
    /// probe finds Redis answering again.
    #[serde(default = "defaults::fail_fast_after")]
    pub fail_fast_after: u32,
    /// Certificates for a `rediss://` server; the system's trust store when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `tls:` of a `rediss://` connection: `TlsConfig::default()` trusts the system's store;
/// `with_*` adds the rest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) to trust instead of the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate chain, for servers that require mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The CA certificate(s) to trust instead of the system's trust store.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// A client certificate chain and its private key, for servers that require mutual TLS.
    #[must_use]
    pub fn with_client_certificate(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }
}

mod defaults {
    use std::time::Duration;

    pub fn connect_timeout() -> Duration {
        Duration::from_millis(250)
    }

    pub fn response_timeout() -> Duration {
        Duration::from_millis(500)
    }

    pub fn max_retries() -> usize {
        2
    }

    pub fn call_timeout() -> Duration {
        Duration::from_secs(1)
    }

    pub fn fail_fast_after() -> u32 {
        3
    }
}

impl RedisKvConfig {
    /// The server at `url` (`redis://host:port/db`, `rediss://…`, `unix:///path`), every
    /// other option at its default until set.
    pub fn new(url: Secret) -> Self {
        Self {
            url,
            username: None,
            password: None,
            password_file: None,
            db: None,
            key_prefix: None,
            default_ttl: None,
            connect_timeout: defaults::connect_timeout(),
            response_timeout: defaults::response_timeout(),
            max_retries: defaults::max_retries(),
            call_timeout: defaults::call_timeout(),
            fail_fast_after: defaults::fail_fast_after(),
            tls: None,
        }
    }

    /// The ACL user and password (overriding the URL's).
    #[must_use]
    pub fn with_credentials(mut self, username: Option<String>, password: Secret) -> Self {
        self.username = username;
        self.password = Some(password);
        self
    }

    /// The prefix of every key (the default keeps extensions apart).
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// The expiry of entries written without a TTL.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// The bounds of one connection attempt, one command's response, and a whole call.
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, response: Duration, call: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self.call_timeout = call;
        self
    }

    /// Certificates for a `rediss://` server.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Decodes and validates the block (no connection is made).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded
            .validate()
            .map_err(|invalid| config.located(invalid))?;
        Ok(decoded)
    }

    /// Checks the options as [`decode`](Self::decode) does (no connection is made): for a
    /// config built in code ([`connect`](crate::connect) checks it too).
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let decoded = self;
        let scheme = decoded
            .url
            .expose()
            .split_once("://")
            .map(|(scheme, _)| scheme);
        let tls = match scheme {
            Some("redis" | "unix" | "redis+unix") => false,
            Some("rediss") => true,
            _ => {
                return Err(InvalidOption::new(
                    "url",
                    "`url` must start with `redis://`, `rediss://` (TLS) or `unix://` \
                     (e.g. `redis://127.0.0.1:6379/0`)",
                ));
            }
        };
        if let Some(tls_config) = &decoded.tls {
            if !tls {
                return Err(InvalidOption::new(
                    "tls",
                    "`tls` is set but `url` does not use TLS; use a `rediss://` URL",
                ));
            }
            if tls_config.cert_file.is_some() != tls_config.key_file.is_some() {
                let (set, missing) = if tls_config.cert_file.is_some() {
                    ("cert_file", "key_file")
                } else {
                    ("key_file", "cert_file")
                };
                return Err(InvalidOption::new(
                    format!("tls.{set}"),
                    format!(
                        "`tls.{set}` is set without `tls.{missing}`; a client certificate needs both"
                    ),
                ));
            }
        }
        match redis::Client::open(decoded.url.expose()) {
            // The library's message may quote the URL: report its kind only.
            Err(error) => {
                return Err(InvalidOption::new(
                    "url",
                    format!("`url` is not a valid Redis URL ({:?})", error.kind()),
                ));
            }
            Ok(client) => {
                if let redis::ConnectionAddr::TcpTls { insecure: true, .. } =
                    client.get_connection_info().addr()
                {
                    return Err(InvalidOption::new(
                        "url",
                        "`#insecure` (no certificate verification) is not supported; trust the \
                         server's CA with `tls.ca_file` instead",
                    ));
                }
            }
        }
        if decoded.password.is_some() && decoded.password_file.is_some() {
            return Err(InvalidOption::new(
                "password_file",
                "`password` and `password_file` are both set; use one",
            ));
        }
        if decoded.key_prefix.as_deref() == Some("") {
            return Err(InvalidOption::new(
                "key_prefix",
                "`key_prefix` is empty; leave it out for the default, which keeps extensions apart",
            ));
        }
        for (field, value) in [
            ("connect_timeout", decoded.connect_timeout),
            ("response_timeout", decoded.response_timeout),
            ("call_timeout", decoded.call_timeout),
        ] {
            if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&value) {
                return Err(InvalidOption::new(
                    field,
                    format!("`{field}` must be between 1ms and 1h"),
                ));
            }
        }
        if !(1..=1000).contains(&decoded.fail_fast_after) {
            return Err(InvalidOption::new(
                "fail_fast_after",
                "`fail_fast_after` must be between 1 and 1000 failures",
            ));
        }
        if let Some(reason) = decoded
            .default_ttl
            .and_then(|ttl| key_value::ttl_out_of_range("default_ttl", ttl))
        {
            return Err(InvalidOption::new("default_ttl", reason));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<RedisKvConfig, String> {
        otap_df_tests::config::try_decode(yaml, RedisKvConfig::decode)
    }

    #[test]
    fn a_config_built_in_code_is_checked_as_a_decoded_one() {
        let built = RedisKvConfig::new(Secret::new("rediss://127.0.0.1:6380/1"))
            .with_key_prefix("app:")
            .with_default_ttl(Duration::from_secs(600))
            .with_tls(TlsConfig::default().with_ca_file("/ca.pem"));
        assert_eq!(built.validate(), Ok(()));
        let decoded = decode(
            "{ url: 'rediss://127.0.0.1:6380/1', key_prefix: 'app:', default_ttl: 10m, \
             tls: { ca_file: /ca.pem } }",
        )
        .expect("valid");
        assert_eq!(format!("{built:?}"), format!("{decoded:?}"));

        let cases = [
            (
                RedisKvConfig::new(Secret::new("http://x")),
                InvalidOption::new(
                    "url",
                    "`url` must start with `redis://`, `rediss://` (TLS) or `unix://` (e.g. \
                     `redis://127.0.0.1:6379/0`)",
                ),
            ),
            (
                RedisKvConfig::new(Secret::new("redis://x"))
                    .with_tls(TlsConfig::default().with_ca_file("/ca.pem")),
                InvalidOption::new(
                    "tls",
                    "`tls` is set but `url` does not use TLS; use a `rediss://` URL",
                ),
            ),
            (
                RedisKvConfig::new(Secret::new("redis://x")).with_timeouts(
                    Duration::ZERO,
                    Duration::from_secs(1),
                    Duration::from_secs(1),
                ),
                InvalidOption::new(
                    "connect_timeout",
                    "`connect_timeout` must be between 1ms and 1h",
                ),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
        // `connect` refuses what the check refuses, as a misconfiguration.
        let context = otap_df_core::extension::ExtensionContext::new(
            &crate::REDIS_KV,
            "store",
            "g",
            "p",
            None,
        );
        let error = crate::connect(&context, &RedisKvConfig::new(Secret::new("http://x")))
            .expect_err("refused");
        assert_eq!(
            error.kind(),
            otap_df_core::extension::ErrorKind::Misconfigured
        );
        assert!(
            error.to_string().contains("`url` must start with"),
            "{error}"
        );
    }

    #[test]
    fn a_default_ttl_outside_what_every_store_holds_is_refused() {
        for ttl in ["0s", "18446744073709551615s"] {
            let error =
                decode(&format!("{{ url: 'redis://h', default_ttl: {ttl} }}")).expect_err(ttl);
            assert!(
                error.contains("`default_ttl` must be between 1ms and 3650 days"),
                "{ttl}: {error}"
            );
        }
    }

    #[test]
    fn defaults_fail_a_call_within_about_a_second() {
        let config = decode("url: redis://127.0.0.1:6379").expect("valid");
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.response_timeout, Duration::from_millis(500));
        assert_eq!(config.max_retries, 2);
        assert_eq!(config.call_timeout, Duration::from_secs(1));
        assert_eq!(config.key_prefix, None);
    }

    #[test]
    fn url_schemes_are_checked_without_echoing_the_url() {
        let error = decode("url: http://user:hunter2@host").expect_err("scheme");
        assert!(
            error.contains("`url` must start with `redis://`"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        assert!(decode("url: rediss://host").is_ok());
        assert!(decode("url: unix:///run/redis.sock").is_ok());
        let insecure = decode("url: 'rediss://host/#insecure'").expect_err("insecure");
        assert!(insecure.contains("`#insecure`"), "{insecure}");
    }

    #[test]
    fn tls_options_need_a_tls_url_and_come_in_pairs() {
        let config = decode("{ url: 'rediss://h', tls: { ca_file: /ca.pem } }").expect("valid");
        assert_eq!(
            config.tls.and_then(|tls| tls.ca_file),
            Some(PathBuf::from("/ca.pem"))
        );
        let plain = decode("{ url: 'redis://h', tls: { ca_file: /ca.pem } }").expect_err("plain");
        assert!(plain.contains("`url` does not use TLS"), "{plain}");
        let half = decode("{ url: 'rediss://h', tls: { cert_file: /c.pem } }").expect_err("half");
        assert!(
            half.contains("`tls.cert_file` is set without `tls.key_file`"),
            "{half}"
        );
        let unknown = decode("{ url: 'rediss://h', tls: { ca: /ca.pem } }").expect_err("unknown");
        assert!(unknown.contains("ca"), "{unknown}");
    }

    #[test]
    fn exclusive_and_empty_options_are_errors() {
        let both =
            decode("{ url: 'redis://h', password: a, password_file: /p }").expect_err("both");
        assert!(
            both.contains("`password` and `password_file` are both set"),
            "{both}"
        );
        let prefix = decode("{ url: 'redis://h', key_prefix: '' }").expect_err("empty");
        assert!(prefix.contains("`key_prefix` is empty"), "{prefix}");
        let zero = decode("{ url: 'redis://h', call_timeout: 0s }").expect_err("zero");
        assert!(
            zero.contains("`call_timeout` must be between 1ms and 1h"),
            "{zero}"
        );
    }
}
