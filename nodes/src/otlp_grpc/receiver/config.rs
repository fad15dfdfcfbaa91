//! `config:` of `receiver:otlp_grpc`: the options, their defaults and ranges.

use std::net::SocketAddr;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

use crate::Permissions;

pub use crate::otlp_http::receiver::ServerTls;

/// `config:` of `receiver:otlp_grpc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcReceiverConfig {
    /// The address to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The largest message accepted, in bytes, compressed or not (a compressed message is also held
    /// to it once decompressed).
    #[serde(default = "defaults::max_message_size")]
    pub max_message_size: usize,
    /// Calls in progress at once on one connection (HTTP/2 streams).
    #[serde(default = "defaults::max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Open connections per core; a connection beyond it is closed at once.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// How long a call waits for room in a full pipeline before it is refused
    /// (`RESOURCE_EXHAUSTED` with `RetryInfo`).
    #[serde(default = "defaults::admission_timeout", with = "humantime_serde")]
    pub admission_timeout: Duration,
    /// The delay `RetryInfo` gives when the pipeline pushes back.
    #[serde(default = "defaults::retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// How long a client may take to send a call's message once it was admitted
    /// (`DEADLINE_EXCEEDED`), and a TLS handshake.
    #[serde(default = "defaults::message_read_timeout", with = "humantime_serde")]
    pub message_read_timeout: Duration,
    /// Bytes of messages being read at once per core; a call beyond it waits like a call for
    /// queue room, then gets `RESOURCE_EXHAUSTED`.
    #[serde(default = "defaults::max_message_bytes_in_flight")]
    pub max_message_bytes_in_flight: usize,
    /// How long a connection may carry no call before it is closed (`GOAWAY`; its client
    /// reconnects for its next call).
    #[serde(default = "defaults::idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Keepalive pings on idle connections: every `interval`, the connection closed when one
    /// is not answered within `timeout`. Off when absent.
    #[serde(default)]
    pub keepalive: Option<Keepalive>,
    /// Serve TLS (ALPN `h2`) with this certificate and key.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Which authorized callers may send each signal (see [`Permissions`]); needs a bound
    /// `bearer_token_authorizer`.
    #[serde(default)]
    pub permissions: Permissions,
}

/// `keepalive:` of `receiver:otlp_grpc`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// How often an idle connection is pinged.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(default = "defaults::keepalive_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4317))
    }

    /// gRPC servers' default (the Collector's `max_recv_msg_size_mib: 4`).
    pub fn max_message_size() -> usize {
        4 * 1024 * 1024
    }

    /// gRPC-Go's usual bound: enough for a client's concurrent exports on one connection.
    pub fn max_concurrent_streams() -> u32 {
        100
    }

    pub fn max_connections() -> usize {
        4096
    }

    /// As `receiver:otlp_http`: inside the SDKs' default export timeout (10 s).
    pub fn admission_timeout() -> Duration {
        Duration::from_secs(5)
    }

    pub fn retry_after() -> Duration {
        Duration::from_secs(1)
    }

    pub fn message_read_timeout() -> Duration {
        Duration::from_secs(30)
    }

    pub fn max_message_bytes_in_flight() -> usize {
        128 * 1024 * 1024
    }

    /// Long enough that a client exporting every few seconds or minutes keeps its
    /// connection; short enough that connections left open by clients gone quiet do not hold
    /// `max_connections` for ever.
    pub fn idle_timeout() -> Duration {
        Duration::from_secs(600)
    }

    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(20)
    }
}

/// The most `max_message_size` accepts: 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The most `max_message_bytes_in_flight` accepts (1 TiB): it is counted in KiB units.
const MAX_MESSAGE_BYTES_IN_FLIGHT: usize = 1 << 40;

impl OtlpGrpcReceiverConfig {
    /// Decodes and checks ranges (no file is read, no socket bound).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if let Some((signal, attribute)) = decoded.permissions.empty_rule() {
            return Err(config.invalid(
                &format!("permissions.{signal}.{attribute}"),
                "list the values accepted (a rule without any would refuse every caller)",
            ));
        }
        if !(1024..=MAX_MESSAGE_SIZE).contains(&decoded.max_message_size) {
            return Err(config.invalid(
                "max_message_size",
                format!("`max_message_size` must be between 1024 and {MAX_MESSAGE_SIZE} (64 MiB)"),
            ));
        }
        if !(1..=10_000).contains(&decoded.max_concurrent_streams) {
            return Err(config.invalid(
                "max_concurrent_streams",
                "`max_concurrent_streams` must be between 1 and 10000",
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
        let ranges = [
            ("retry_after", decoded.retry_after),
            ("message_read_timeout", decoded.message_read_timeout),
        ];
        for (field, value) in ranges {
            if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&value) {
                return Err(config.invalid(field, format!("`{field}` must be between 10ms and 1h")));
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(7 * 86_400))
            .contains(&decoded.idle_timeout)
        {
            return Err(config.invalid(
                "idle_timeout",
                "`idle_timeout` must be between 1s and 7 days",
            ));
        }
        if let Some(keepalive) = decoded.keepalive {
            for (field, value) in [
                ("keepalive.interval", keepalive.interval),
                ("keepalive.timeout", keepalive.timeout),
            ] {
                if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&value) {
                    return Err(
                        config.invalid(field, format!("`{field}` must be between 1s and 1 day"))
                    );
                }
            }
        }
        if decoded.max_message_bytes_in_flight < decoded.max_message_size
            || decoded.max_message_bytes_in_flight > MAX_MESSAGE_BYTES_IN_FLIGHT
        {
            return Err(config.invalid(
                "max_message_bytes_in_flight",
                format!(
                    "`max_message_bytes_in_flight` must be at least `max_message_size` ({}) and \
                     at most {MAX_MESSAGE_BYTES_IN_FLIGHT}",
                    decoded.max_message_size
                ),
            ));
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<OtlpGrpcReceiverConfig, String> {
        otap_df_tests::config::try_decode(yaml, OtlpGrpcReceiverConfig::decode)
    }

    #[test]
    fn defaults_are_a_grpc_servers_and_bad_values_are_located() {
        let decoded = decode("{}").expect("valid");
        assert_eq!(decoded.listen, SocketAddr::from(([127, 0, 0, 1], 4317)));
        assert_eq!(decoded.max_message_size, 4 << 20);
        assert_eq!(decoded.max_concurrent_streams, 100);
        assert!(decoded.keepalive.is_none());
        assert_eq!(decoded.idle_timeout, Duration::from_secs(600));
        for (yaml, said) in [
            (
                "max_message_size: 10",
                "at `config.max_message_size`: `max_message_size` must be between 1024 and",
            ),
            (
                "max_concurrent_streams: 0",
                "`max_concurrent_streams` must be between 1 and 10000",
            ),
            (
                "keepalive: { interval: 10ms }",
                "at `config.keepalive.interval`: `keepalive.interval` must be between 1s and 1 day",
            ),
            (
                "{ max_message_size: 2097152, max_message_bytes_in_flight: 1048576 }",
                "`max_message_bytes_in_flight` must be at least `max_message_size` (2097152)",
            ),
            (
                "idle_timeout: 0s",
                "at `config.idle_timeout`: `idle_timeout` must be between 1s and 7 days",
            ),
            ("max_body_size: 5", "unknown field `max_body_size`"),
        ] {
            let error = decode(yaml).expect_err(yaml);
            assert!(error.contains(said), "{yaml}: {error}");
        }
    }
}
