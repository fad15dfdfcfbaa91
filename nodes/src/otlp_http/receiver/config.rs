//! `config:` of `receiver:otlp_http`: the options, their defaults and ranges.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

use crate::Permissions;

/// `config:` of `receiver:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpReceiverConfig {
    /// The address to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The largest request body accepted, in bytes, compressed or not (a compressed body is also
    /// held to it once decompressed).
    #[serde(default = "defaults::max_body_size")]
    pub max_body_size: usize,
    /// What `Retry-After` says when the pipeline pushes back.
    #[serde(default = "defaults::retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// How long a request waits for room in a full pipeline before it is refused (`429`).
    #[serde(default = "defaults::admission_timeout", with = "humantime_serde")]
    pub admission_timeout: Duration,
    /// How long a client may take to send a request's headers (and a TLS handshake), and how
    /// long a keep-alive connection may stay idle; then the connection is closed.
    #[serde(default = "defaults::header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body once it was admitted (`408`).
    #[serde(default = "defaults::body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Open connections per core; a connection beyond it is closed at once.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Bytes of request bodies being read at once per core (by `Content-Length`, or
    /// `max_body_size` when a body does not declare it); a request beyond it waits like a
    /// request for queue room, then gets `429`.
    #[serde(default = "defaults::max_body_bytes_in_flight")]
    pub max_body_bytes_in_flight: usize,
    /// Serve HTTPS with this certificate and key.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Which authorized callers may send each signal (see [`Permissions`]); needs a bound
    /// `bearer_token_authorizer`.
    #[serde(default)]
    pub permissions: Permissions,
}

/// `tls:` of `receiver:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM file of the server certificate chain.
    pub cert_file: PathBuf,
    /// PEM file of its private key.
    pub key_file: PathBuf,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4318))
    }

    pub fn max_body_size() -> usize {
        20 * 1024 * 1024
    }

    pub fn retry_after() -> Duration {
        Duration::from_secs(1)
    }

    /// Well inside the OpenTelemetry SDKs' default export timeout (10 s), so that a client
    /// gets its answer, accepted or `429`, before it gives up.
    pub fn admission_timeout() -> Duration {
        Duration::from_secs(5)
    }

    /// hyper's own default, and the Go servers' usual `ReadHeaderTimeout` order of magnitude.
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(30)
    }

    pub fn body_read_timeout() -> Duration {
        Duration::from_secs(30)
    }

    /// An idle HTTP/1.1 connection costs about 10–15 KiB here: 4096 stay under 64 MiB a core.
    pub fn max_connections() -> usize {
        4096
    }

    /// Six bodies of the default `max_body_size`, thousands of typical OTLP requests.
    pub fn max_body_bytes_in_flight() -> usize {
        128 * 1024 * 1024
    }
}

impl OtlpHttpReceiverConfig {
    /// Decodes and checks ranges (no file is read, no socket bound).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if let Some((signal, attribute)) = decoded.permissions.empty_rule() {
            return Err(config.invalid(
                &format!("permissions.{signal}.{attribute}"),
                "list the values accepted (a rule without any would refuse every caller)",
            ));
        }
        if decoded.max_body_size == 0 {
            return Err(config.invalid("max_body_size", "`max_body_size` must be at least 1"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&decoded.retry_after) {
            return Err(config.invalid(
                "retry_after",
                "`retry_after` must be between 1s and 1h (`Retry-After` counts whole seconds)",
            ));
        }
        for (field, value) in [
            ("header_read_timeout", decoded.header_read_timeout),
            ("body_read_timeout", decoded.body_read_timeout),
        ] {
            if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&value) {
                return Err(config.invalid(field, format!("`{field}` must be between 10ms and 1h")));
            }
        }
        if decoded.max_body_bytes_in_flight < decoded.max_body_size
            || decoded.max_body_bytes_in_flight > MAX_BODY_BYTES_IN_FLIGHT
        {
            return Err(config.invalid(
                "max_body_bytes_in_flight",
                format!(
                    "`max_body_bytes_in_flight` must be at least `max_body_size` ({}) and at \
                     most {MAX_BODY_BYTES_IN_FLIGHT}",
                    decoded.max_body_size
                ),
            ));
        }
        if !(1..=1_000_000).contains(&decoded.max_connections) {
            return Err(config.invalid(
                "max_connections",
                "`max_connections` must be between 1 and 1000000",
            ));
        }
        if decoded.admission_timeout > Duration::from_secs(60) {
            return Err(config.invalid(
                "admission_timeout",
                "`admission_timeout` must be at most 60s (0s refuses at once when the pipeline is full)",
            ));
        }
        Ok(decoded)
    }
}

/// The most `max_body_bytes_in_flight` accepts (1 TiB): it is counted in KiB units.
const MAX_BODY_BYTES_IN_FLIGHT: usize = 1 << 40;
