//! The checks of the options every exporter of this crate has, whatever its protocol: the
//! upstream's URL, extra headers, the dead-letter file, merging, requests in flight, the
//! request timeout and the retry policy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};
use otap_df_core::config::{ComponentConfig, ConfigError};
use otap_df_core::secret::Secret;

use super::RetryConfig;
use super::retry::check_duration;

/// The most `merge_max_bytes` accepts: one merged request is held in memory beside the ones
/// in flight.
pub(crate) const MERGE_MAX_BYTES_LIMIT: usize = 64 << 20;

/// The most `max_in_flight` accepts: beyond it, memory (one payload each) rather than
/// throughput grows.
pub const MAX_IN_FLIGHT_LIMIT: usize = 4096;

/// The options besides the upstream's address, as each exporter's config holds them.
pub(crate) struct Common<'a> {
    pub(crate) headers: &'a BTreeMap<String, Secret>,
    pub(crate) dead_letter_file: Option<&'a Path>,
    pub(crate) merge_max_bytes: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) timeout: Duration,
    pub(crate) retry: &'a RetryConfig,
}

impl Common<'_> {
    /// Each option in its range, or the first that is not, located.
    pub(crate) fn check(&self, config: &ComponentConfig<'_>) -> Result<(), ConfigError> {
        for (name, value) in self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(config.invalid(
                    &format!("headers.{name}"),
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
            if HeaderValue::from_str(value.expose()).is_err() {
                return Err(config.invalid(
                    &format!("headers.{name}"),
                    format!("the value of header `{name}` holds characters HTTP does not allow"),
                ));
            }
        }
        if self
            .dead_letter_file
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(config.invalid(
                "dead_letter_file",
                "`dead_letter_file` is empty; name a file, or leave it out to count and log what cannot be delivered",
            ));
        }
        if self.merge_max_bytes > MERGE_MAX_BYTES_LIMIT {
            return Err(config.invalid(
                "merge_max_bytes",
                format!("`merge_max_bytes` must be at most {MERGE_MAX_BYTES_LIMIT} (64 MiB)"),
            ));
        }
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&self.max_in_flight) {
            return Err(config.invalid(
                "max_in_flight",
                format!("`max_in_flight` must be between 1 and {MAX_IN_FLIGHT_LIMIT}"),
            ));
        }
        check_duration(config, "timeout", self.timeout)?;
        self.retry.check(config)
    }
}

/// The headers sent with every request, as the client holds them (marked sensitive, so
/// that no HTTP library logs them). Checked by [`Common::check`].
pub(crate) fn header_values(headers: &BTreeMap<String, Secret>) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let mut value = HeaderValue::from_str(value.expose()).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        })
        .collect()
}

/// The port text of an authority (`[user@]host[:port]`, the host possibly `[v6]`), if any.
fn port_of(authority: &str) -> Option<&str> {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    }
}

/// `url` (option `field`) as an `http://` or `https://` URL with a host, a port in range and no
/// credentials; `example` is a valid one, for the error.
pub(crate) fn parse_url(
    config: &ComponentConfig<'_>,
    field: &str,
    url: &str,
    example: &str,
) -> Result<Uri, ConfigError> {
    let invalid = |why: &str| {
        config.invalid(
            field,
            format!("`{field}` {why}; give an http:// or https:// URL such as `{example}`"),
        )
    };
    let uri: Uri = url.parse().map_err(|_| invalid("is not a URL"))?;
    // `http::Uri` keeps a port it cannot represent (65536, `4318x`) as text and a client then
    // connects to the scheme's default port: check it here.
    if let Some(authority) = uri.authority() {
        if authority.host().is_empty() {
            return Err(invalid("has no host"));
        }
        if let Some(port) = port_of(authority.as_str())
            && port.parse::<u16>().ok().filter(|p| *p >= 1).is_none()
        {
            return Err(invalid("has a port outside 1–65535"));
        }
    }
    // Credentials in the URL would travel into logs with the authority (the HTTP client's
    // connection pool logs it): they belong in headers or an extension.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(config.invalid(
            field,
            format!(
                "`{field}` holds credentials (`user:password@`); put them in `headers` (e.g. \
                 `Authorization: Basic ${{env:UPSTREAM_AUTH}}`) or bind a \
                 `bearer_token_provider` extension"
            ),
        ));
    }
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        Some("http" | "https") => Err(invalid("has no host")),
        _ => Err(invalid("does not start with http:// or https://")),
    }
}
