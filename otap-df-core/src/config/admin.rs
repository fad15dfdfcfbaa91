//! `engine.admin:` the admin endpoint's settings: where it listens, how it bounds what a
//! client controls, and which requests need a token.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::CapabilityBinding;

/// `engine.admin:` the admin endpoint (`/livez`, `/readyz`, `/status`, `/metrics`,
/// `POST /reload`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens: an IP address and a port. Default `127.0.0.1:8888`: loopback, this
    /// machine only; another address is reachable from elsewhere (`validate` warns).
    #[serde(
        default = "AdminConfig::default_listen",
        deserialize_with = "socket_address"
    )]
    pub listen: SocketAddr,
    /// Which requests need a token when a `bearer_token_authorizer` is bound
    /// (`capabilities:`): `mutating` (`POST /reload`; the default) or `all` (also `/status`
    /// and `/metrics`; `/livez` and `/readyz` stay open to probes).
    #[serde(default)]
    pub require_token_for: TokenScope,
    /// Open connections at once (1–4096, default 32); at the cap a new connection displaces
    /// the one idle longest, and is closed at once only when every connection is busy.
    #[serde(default = "AdminConfig::default_max_connections")]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a connection may
    /// stay idle between requests (100ms–10m, default 10s).
    #[serde(
        default = "AdminConfig::default_header_read_timeout",
        with = "humantime_serde"
    )]
    pub header_read_timeout: Duration,
    /// `capabilities: { bearer_token_authorizer: <extension> }`: the engine extension that
    /// decides on the token (parsed like a node's `capabilities:`).
    #[serde(skip)]
    pub capabilities: Vec<CapabilityBinding>,
}

/// Which requests of the admin endpoint need a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Those that change something: `POST /reload`.
    #[default]
    Mutating,
    /// Every one but the probes (`/livez`, `/readyz`).
    All,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            require_token_for: TokenScope::default(),
            max_connections: Self::default_max_connections(),
            header_read_timeout: Self::default_header_read_timeout(),
            capabilities: Vec::new(),
        }
    }
}

impl AdminConfig {
    /// The most `max_connections` accepts.
    pub const MAX_CONNECTIONS: usize = 4096;

    fn default_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8888))
    }

    fn default_max_connections() -> usize {
        32
    }

    fn default_header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }

    /// What is out of range, as `(field, message)`.
    pub fn out_of_range(&self) -> Option<(&'static str, String)> {
        if !(1..=Self::MAX_CONNECTIONS).contains(&self.max_connections) {
            return Some((
                "max_connections",
                format!(
                    "`max_connections` must be between 1 and {}",
                    Self::MAX_CONNECTIONS
                ),
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(600))
            .contains(&self.header_read_timeout)
        {
            return Some((
                "header_read_timeout",
                "`header_read_timeout` must be between 100ms and 10m".to_owned(),
            ));
        }
        None
    }
}

/// An IP address and port, with an error that says what is expected.
fn socket_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an IP address and port (such as `127.0.0.1:8888` or `[::1]:8888`; \
             a host name is not accepted)"
        ))
    })
}
