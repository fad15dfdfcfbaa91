//! `config:` of `exporter:otlp_grpc`: decoded and checked before anything connects.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::secret::Secret;
use serde::Deserialize;

use crate::export::RetryConfig;
use crate::export::options::{Common, parse_url};
use crate::otlp_http::exporter::{ClientTls, Compression};

/// `config:` of `exporter:otlp_grpc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcExporterConfig {
    /// The server: `http://host:4317` (h2c) or `https://host:4317` (TLS); no path, as each
    /// signal goes to its service's method.
    pub endpoint: String,
    /// Bound of one call, response included.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Metadata sent with every call; values are secrets (never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Headers set on each request from who sent its payload: header → the identity's
    /// attribute (`tenant`), or `name` for the identity's name. A payload whose identity
    /// lacks one is not sent (counted, logged, dead-lettered).
    #[serde(default)]
    pub headers_from_identity: BTreeMap<String, String>,
    /// Retries of failed calls.
    #[serde(default)]
    pub retry: RetryConfig,
    /// A file (`exporter:file` format) that receives what could not be delivered.
    #[serde(default)]
    pub dead_letter_file: Option<PathBuf>,
    /// Trust for an `https://` endpoint.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Calls outstanding at once, per core (each its own HTTP/2 stream, with its own
    /// retries).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// The largest request that payloads waiting for a free call are merged into, in bytes
    /// before compression; `0`: never merge.
    #[serde(default = "defaults::merge_max_bytes")]
    pub merge_max_bytes: usize,
}

mod defaults {
    use std::time::Duration;

    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }

    pub fn max_in_flight() -> usize {
        16
    }

    /// Under the 4 MiB a gRPC server takes by default (the Collector's `max_recv_msg_size_mib`).
    pub fn merge_max_bytes() -> usize {
        1 << 20
    }
}

impl OtlpGrpcExporterConfig {
    /// Decodes and checks the block (no connection is made, no file read).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded.endpoint(config)?;
        let common = Common {
            headers: &decoded.headers,
            dead_letter_file: decoded.dead_letter_file.as_deref(),
            merge_max_bytes: decoded.merge_max_bytes,
            max_in_flight: decoded.max_in_flight,
            timeout: decoded.timeout,
            retry: &decoded.retry,
        };
        common.check(config)?;
        crate::export::identity::check(config, &decoded.headers_from_identity, &decoded.headers)?;
        Ok(decoded)
    }

    /// The server's URL: scheme and authority, without a path.
    pub(super) fn endpoint(&self, config: &ComponentConfig<'_>) -> Result<Uri, ConfigError> {
        let uri = parse_url(config, "endpoint", &self.endpoint, "http://collector:4317")?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(config.invalid(
                "endpoint",
                format!(
                    "`endpoint` has a path (`{}`); an OTLP/gRPC server is addressed by scheme, \
                     host and port only (`http://collector:4317`): each signal goes to its \
                     service's method",
                    uri.path_and_query().map_or("", |p| p.as_str())
                ),
            ));
        }
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<OtlpGrpcExporterConfig, String> {
        otap_df_tests::config::try_decode(yaml, OtlpGrpcExporterConfig::decode)
    }

    #[test]
    fn the_endpoint_is_a_server_without_a_path() {
        let decoded = decode("endpoint: http://collector:4317").expect("valid");
        assert_eq!(decoded.compression, Compression::Gzip);
        assert_eq!(decoded.timeout, Duration::from_secs(10));
        assert!(decode("endpoint: 'https://collector:4317/'").is_ok());
        let path = decode("endpoint: http://collector:4317/v1/logs").expect_err("a path");
        assert!(
            path.contains("at `config.endpoint`: `endpoint` has a path (`/v1/logs`)"),
            "{path}"
        );
        let port = decode("endpoint: http://collector:70000").expect_err("a port");
        assert!(port.contains("has a port outside 1–65535"), "{port}");
        let missing = decode("{}").expect_err("no endpoint");
        assert!(
            missing.contains("missing required field `endpoint`"),
            "{missing}"
        );
        let unknown = decode("{ endpoint: 'http://c:4317', logs_endpoint: x }").expect_err("field");
        assert!(
            unknown.contains("unknown field `logs_endpoint`"),
            "{unknown}"
        );
        let in_flight =
            decode("{ endpoint: 'http://c:4317', max_in_flight: 0 }").expect_err("0 in flight");
        assert!(
            in_flight.contains("`max_in_flight` must be between 1 and 4096"),
            "{in_flight}"
        );
    }
}
