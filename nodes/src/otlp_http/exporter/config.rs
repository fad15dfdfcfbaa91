//! `config:` of `exporter:otlp_http`: decoded and checked before anything connects.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::data::Signal;
use otap_df_core::secret::Secret;
use serde::Deserialize;

use crate::export::RetryConfig;
use crate::export::options::{Common, parse_url};
use crate::otlp_http::signal_path;

/// `config:` of `exporter:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL; each signal goes to `<endpoint>/v1/<signal>`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for logs, used as is (overrides `endpoint`).
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Full URL for metrics, used as is.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for traces, used as is.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Bound of one request, response included.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Headers sent with every request; values are secrets (never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Headers set on each request from who sent its payload: header → the identity's
    /// attribute (`tenant`), or `name` for the identity's name. A payload whose identity
    /// lacks one is not sent (counted, logged, dead-lettered).
    #[serde(default)]
    pub headers_from_identity: BTreeMap<String, String>,
    /// Retries of failed requests.
    #[serde(default)]
    pub retry: RetryConfig,
    /// A file (`exporter:file` format) that receives what could not be delivered.
    #[serde(default)]
    pub dead_letter_file: Option<PathBuf>,
    /// Trust for `https://` endpoints.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Requests outstanding at once, per core (each with its own retries).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// The largest request that payloads waiting for a free request are merged into, in
    /// bytes before compression; `0`: never merge.
    #[serde(default = "defaults::merge_max_bytes")]
    pub merge_max_bytes: usize,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `Content-Encoding: gzip`.
    #[default]
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
    /// Uncompressed.
    None,
}

/// `tls:` of `exporter:otlp_http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) to trust instead of the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

mod defaults {
    use std::time::Duration;

    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }

    /// Enough to keep a loopback or LAN upstream busy from one core; the Collector's exporters
    /// default to 10 consumers, upstream otap-dataflow's to 5.
    pub fn max_in_flight() -> usize {
        16
    }

    /// Well under the request limits of common OTLP servers (the Collector's is 20 MiB).
    pub fn merge_max_bytes() -> usize {
        1 << 20
    }
}

pub use crate::export::options::MAX_IN_FLIGHT_LIMIT;

/// The URLs of the three signals.
#[derive(Debug, Clone)]
pub(super) struct Endpoints {
    logs: Uri,
    metrics: Uri,
    traces: Uri,
}

impl Endpoints {
    pub(super) fn of(&self, signal: Signal) -> &Uri {
        match signal {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
        }
    }
}

impl OtlpHttpExporterConfig {
    /// Decodes and checks the block (no connection is made, no file read).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded.endpoints(config)?;
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

    pub(super) fn endpoints(&self, config: &ComponentConfig<'_>) -> Result<Endpoints, ConfigError> {
        let parse = |field: &str, url: &str| parse_url(config, field, url, "http://collector:4318");
        let base = self
            .endpoint
            .as_deref()
            .map(|url| parse("endpoint", url))
            .transpose()?;
        let signal = |signal: Signal, field: &str, own: &Option<String>| {
            match (own, &base) {
            (Some(url), _) => parse(field, url),
            (None, Some(base)) => {
                let path = base.path().trim_end_matches('/');
                let joined = format!(
                    "{}://{}{path}/{}",
                    base.scheme_str().unwrap_or("http"),
                    base.authority().map(|a| a.as_str()).unwrap_or(""),
                    signal_path(signal)
                );
                parse("endpoint", &joined)
            }
            (None, None) => Err(config.invalid(
                "endpoint",
                format!("`endpoint` is required unless `{field}` and the other per-signal endpoints are all set"),
            )),
        }
        };
        Ok(Endpoints {
            logs: signal(Signal::Logs, "logs_endpoint", &self.logs_endpoint)?,
            metrics: signal(Signal::Metrics, "metrics_endpoint", &self.metrics_endpoint)?,
            traces: signal(Signal::Traces, "traces_endpoint", &self.traces_endpoint)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use otap_df_core::config::{PositionIndex, YamlPath};

    use super::*;

    fn endpoints(yaml: &str) -> Result<Endpoints, String> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        let path = YamlPath::root().key("config");
        let positions = PositionIndex::default();
        let config = ComponentConfig::new(&value, &path, &positions);
        OtlpHttpExporterConfig::decode(&config)
            .and_then(|decoded| decoded.endpoints(&config))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn signal_urls_are_derived_from_the_base_as_the_specification_says() {
        let derived = endpoints("endpoint: http://collector:4318").expect("valid");
        assert_eq!(derived.logs, "http://collector:4318/v1/logs");
        assert_eq!(derived.traces, "http://collector:4318/v1/traces");
        let with_path = endpoints("endpoint: https://gw/otlp/").expect("valid");
        assert_eq!(with_path.metrics, "https://gw/otlp/v1/metrics");
        let overridden =
            endpoints("{ endpoint: 'http://c:4318', traces_endpoint: 'http://t:1/x' }")
                .expect("valid");
        assert_eq!(overridden.traces, "http://t:1/x");
        assert_eq!(overridden.logs, "http://c:4318/v1/logs");
    }

    #[test]
    fn bad_endpoints_and_headers_are_located_errors() {
        let missing = endpoints("{ logs_endpoint: 'http://l' }").expect_err("no base");
        assert!(missing.contains("`endpoint` is required"), "{missing}");
        for (url, why) in [
            ("http://c:65536", "has a port outside 1–65535"),
            ("http://c:99999999", "has a port outside 1–65535"),
            ("http://c:4318x", "has a port outside 1–65535"),
            ("http://c:0", "has a port outside 1–65535"),
            ("http://[::1]:70000", "has a port outside 1–65535"),
        ] {
            let error = endpoints(&format!("endpoint: '{url}'")).expect_err(url);
            assert!(error.contains(why), "{url}: {error}");
        }
        for url in [
            "http://c:4318",
            "https://c",
            "http://[::1]:4318",
            "http://[::1]",
        ] {
            assert!(endpoints(&format!("endpoint: '{url}'")).is_ok(), "{url}");
        }
        let long =
            endpoints("{ endpoint: 'http://c', retry: { max_interval: 18446744073709551615s } }")
                .expect_err("overflowing interval");
        assert!(
            long.contains("`retry.max_interval` must be between 1ms and 7 days"),
            "{long}"
        );
        let userinfo =
            endpoints("endpoint: 'http://user:pw@collector:4318'").expect_err("userinfo");
        assert!(userinfo.contains("holds credentials"), "{userinfo}");
        assert!(
            !userinfo.contains("pw@"),
            "the password is not echoed: {userinfo}"
        );
        let scheme = endpoints("endpoint: ftp://h").expect_err("scheme");
        assert!(scheme.contains("does not start with http://"), "{scheme}");
        let header =
            endpoints("{ endpoint: 'http://h', headers: { 'bad name': x } }").expect_err("header");
        assert!(header.contains("not a valid HTTP header name"), "{header}");
    }

    #[test]
    fn merge_max_bytes_is_bounded() {
        let error = endpoints("{ endpoint: 'http://c', merge_max_bytes: 67108865 }")
            .expect_err("over 64 MiB");
        assert!(
            error.contains("`merge_max_bytes` must be at most 67108864 (64 MiB)"),
            "{error}"
        );
        assert!(endpoints("{ endpoint: 'http://c', merge_max_bytes: 0 }").is_ok());
        let empty =
            endpoints("{ endpoint: 'http://c', dead_letter_file: '' }").expect_err("an empty path");
        assert!(empty.contains("`dead_letter_file` is empty"), "{empty}");
    }
}
