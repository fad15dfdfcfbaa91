//! `config:` of `extension:bearer_auth`, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError, InvalidOption};
use otap_df_core::secret::Secret;
use serde::Deserialize;

/// The options of `extension:bearer_auth`. See the crate README for each one.
///
/// Built in code (without YAML) from the client token or the tokens a server accepts, the
/// rest at its default until set:
///
/// ```
/// use std::time::Duration;
/// use otap_df_core::secret::Secret;
/// use otap_df_extension_bearer_auth::BearerAuthConfig;
///
/// let config = BearerAuthConfig::from_token(Secret::new("t0ken"))
///     .with_header("X-Api-Key", "")
///     .with_reload_interval(Duration::from_secs(5));
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BearerAuthConfig {
    /// The client token, inline (usually `${env:…}`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the client token (surrounding whitespace is ignored); re-read when it
    /// changes.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the client token, read at start.
    #[serde(default)]
    pub token_env: Option<String>,
    /// More tokens the server side accepts (besides the client token).
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// A file of tokens the server side accepts, one a line (`#` comments and blank lines
    /// ignored); re-read when it changes.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
    /// The scheme before the token in the header; empty for a bare token.
    #[serde(default = "BearerAuthConfig::default_scheme")]
    pub scheme: String,
    /// The header that carries the token.
    #[serde(default = "BearerAuthConfig::default_header")]
    pub header: String,
    /// How often token files are checked for changes: a change is served within this bound.
    #[serde(
        default = "BearerAuthConfig::default_reload_interval",
        with = "humantime_serde"
    )]
    pub reload_interval: Duration,
}

/// Reads an environment variable (the process's, or a test's).
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The shortest `reload_interval` accepted.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(10);

/// The longest `reload_interval`: one day.
pub const MAX_RELOAD_INTERVAL: Duration = Duration::from_secs(86_400);

impl BearerAuthConfig {
    /// No token, every option at its default: the start of the constructors.
    fn empty() -> Self {
        Self {
            token: None,
            token_file: None,
            token_env: None,
            tokens: Vec::new(),
            tokens_file: None,
            scheme: Self::default_scheme(),
            header: Self::default_header(),
            reload_interval: Self::default_reload_interval(),
        }
    }

    /// The client token (`token:`), which servers accept too.
    pub fn from_token(token: Secret) -> Self {
        Self {
            token: Some(token),
            ..Self::empty()
        }
    }

    /// The client token read from a file, re-read when it changes (`token_file:`).
    pub fn from_token_file(path: impl Into<PathBuf>) -> Self {
        Self {
            token_file: Some(path.into()),
            ..Self::empty()
        }
    }

    /// The client token read from an environment variable at start (`token_env:`).
    pub fn from_token_env(variable: impl Into<String>) -> Self {
        Self {
            token_env: Some(variable.into()),
            ..Self::empty()
        }
    }

    /// Only tokens a server accepts (`tokens:`), no client token.
    pub fn accepting(tokens: impl IntoIterator<Item = Secret>) -> Self {
        Self {
            tokens: tokens.into_iter().collect(),
            ..Self::empty()
        }
    }

    /// Only a file of tokens a server accepts (`tokens_file:`), no client token.
    pub fn accepting_file(path: impl Into<PathBuf>) -> Self {
        Self {
            tokens_file: Some(path.into()),
            ..Self::empty()
        }
    }

    /// More tokens servers accept, besides those already set.
    #[must_use]
    pub fn with_tokens(mut self, tokens: impl IntoIterator<Item = Secret>) -> Self {
        self.tokens.extend(tokens);
        self
    }

    /// A file of more tokens servers accept.
    #[must_use]
    pub fn with_tokens_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tokens_file = Some(path.into());
        self
    }

    /// The header that carries the token, and the scheme before it (empty: a bare token).
    #[must_use]
    pub fn with_header(mut self, header: impl Into<String>, scheme: impl Into<String>) -> Self {
        self.header = header.into();
        self.scheme = scheme.into();
        self
    }

    /// How often token files are checked for changes.
    #[must_use]
    pub fn with_reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every;
        self
    }

    fn default_scheme() -> String {
        "Bearer".to_owned()
    }

    fn default_header() -> String {
        "Authorization".to_owned()
    }

    fn default_reload_interval() -> Duration {
        Duration::from_secs(1)
    }

    /// Decodes and validates the block; `env` reads `token_env`.
    pub fn decode(
        config: &ComponentConfig<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded
            .check(Some(env))
            .map_err(|invalid| config.located(invalid))?;
        Ok(decoded)
    }

    /// Checks the options as [`decode`](Self::decode) does, reading `token_env` from the
    /// process environment: for a config built in code ([`BearerAuth::new`] checks it too).
    ///
    /// [`BearerAuth::new`]: crate::BearerAuth::new
    pub fn validate(&self) -> Result<(), InvalidOption> {
        self.check(Some(&|name| std::env::var(name).ok()))
    }

    /// The checks; `env` reads `token_env` (None: not read here, as the constructor reads it
    /// and says what is wrong with it).
    pub(crate) fn check(&self, env: Option<&Lookup<'_>>) -> Result<(), InvalidOption> {
        let decoded = self;
        let sources: Vec<&str> = [
            ("token", decoded.token.is_some()),
            ("token_file", decoded.token_file.is_some()),
            ("token_env", decoded.token_env.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if let [first, second, ..] = sources.as_slice() {
            return Err(InvalidOption::new(
                *second,
                format!(
                    "`{first}` and `{second}` are both set; the client token comes from exactly \
                     one of `token`, `token_file`, `token_env`"
                ),
            ));
        }
        if sources.is_empty() && decoded.tokens.is_empty() && decoded.tokens_file.is_none() {
            return Err(InvalidOption::new(
                "",
                "no token configured: set one of `token`, `token_file`, `token_env` (the token \
                 clients send, also accepted by servers), and/or `tokens`, `tokens_file` (more \
                 tokens servers accept)",
            ));
        }
        // A token travels in an HTTP header: a line break or control character in it would
        // make every request fail (or be refused by every server). The token is not echoed.
        let inline = decoded
            .token
            .iter()
            .map(|token| ("token".to_owned(), "`token`", token))
            .chain(
                decoded
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(i, token)| (format!("tokens[{i}]"), "this token", token)),
            );
        for (field, what, token) in inline {
            if token.is_empty() {
                return Err(InvalidOption::new(&field, format!("{what} is empty")));
            }
            if !is_header_text(token.expose()) {
                return Err(InvalidOption::new(
                    &field,
                    format!(
                        "{what} holds a line break or control character, which HTTP headers \
                         cannot carry"
                    ),
                ));
            }
        }
        if let (Some(name), Some(env)) = (&decoded.token_env, env) {
            match env(name) {
                Some(value) if !value.trim().is_empty() => {}
                Some(_) => {
                    return Err(InvalidOption::new(
                        "token_env",
                        format!("environment variable `{name}` is empty"),
                    ));
                }
                None => {
                    return Err(InvalidOption::new(
                        "token_env",
                        format!("environment variable `{name}` is not set"),
                    ));
                }
            }
        }
        if !is_header_name(&decoded.header) {
            return Err(InvalidOption::new(
                "header",
                format!(
                    "`{}` is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
                    decoded.header
                ),
            ));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(&decoded.header))
        {
            return Err(InvalidOption::new(
                "header",
                format!(
                    "`{}` frames or routes the HTTP message and cannot carry a token; use \
                     `Authorization` (the default) or a header of your own such as `X-Api-Key`",
                    decoded.header
                ),
            ));
        }
        if decoded
            .scheme
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(InvalidOption::new(
                "scheme",
                "`scheme` is one word (`Bearer`, `Token`…), or empty for a bare token",
            ));
        }
        if !(MIN_RELOAD_INTERVAL..=MAX_RELOAD_INTERVAL).contains(&decoded.reload_interval) {
            return Err(InvalidOption::new(
                "reload_interval",
                format!(
                    "`reload_interval` must be between {MIN_RELOAD_INTERVAL:?} and 1 day (86400s)"
                ),
            ));
        }
        Ok(())
    }

    /// Whether a file is configured: the extension then runs a task that watches it.
    pub fn watches_files(&self) -> bool {
        self.token_file.is_some() || self.tokens_file.is_some()
    }
}

/// Headers that frame or route an HTTP message: a token in one would be read as something
/// else by every HTTP stack on the way (with `Host`, a request to host `t1` carries token
/// `t1`).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-connection",
];

/// Text an HTTP header value can hold: visible ASCII, spaces and tabs, and non-ASCII bytes.
fn is_header_text(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<BearerAuthConfig, String> {
        let env = |name: &str| match name {
            "SET" => Some("from-env".to_owned()),
            "BLANK" => Some("  ".to_owned()),
            _ => None,
        };
        otap_df_tests::config::try_decode(yaml, |config| BearerAuthConfig::decode(config, &env))
    }

    #[test]
    fn a_config_built_in_code_is_checked_as_a_decoded_one() {
        let built = BearerAuthConfig::from_token(Secret::new("t0ken"))
            .with_tokens([Secret::new("other")])
            .with_header("X-Api-Key", "")
            .with_reload_interval(Duration::from_secs(5));
        assert_eq!(built.validate(), Ok(()));
        let decoded = decode(
            "{ token: t0ken, tokens: [other], header: X-Api-Key, scheme: '', reload_interval: 5s }",
        )
        .expect("valid");
        assert_eq!(format!("{built:?}"), format!("{decoded:?}"));

        let cases = [
            (
                BearerAuthConfig::accepting([]),
                InvalidOption::new(
                    "",
                    "no token configured: set one of `token`, `token_file`, `token_env` (the \
                     token clients send, also accepted by servers), and/or `tokens`, \
                     `tokens_file` (more tokens servers accept)",
                ),
            ),
            (
                BearerAuthConfig::from_token(Secret::new("a\nb")),
                InvalidOption::new(
                    "token",
                    "`token` holds a line break or control character, which HTTP headers \
                     cannot carry",
                ),
            ),
            (
                BearerAuthConfig::from_token(Secret::new("t")).with_header("Host", "Bearer"),
                InvalidOption::new(
                    "header",
                    "`Host` frames or routes the HTTP message and cannot carry a token; use \
                     `Authorization` (the default) or a header of your own such as `X-Api-Key`",
                ),
            ),
            (
                BearerAuthConfig::from_token_env("OTAP_DF_TEST_SURELY_UNSET"),
                InvalidOption::new(
                    "token_env",
                    "environment variable `OTAP_DF_TEST_SURELY_UNSET` is not set",
                ),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
        // The constructor refuses what the check refuses, as a misconfiguration.
        let error = crate::BearerAuth::new("tokens", &BearerAuthConfig::accepting([]))
            .expect_err("refused");
        assert_eq!(
            error.kind(),
            otap_df_core::extension::ErrorKind::Misconfigured
        );
        assert!(error.to_string().contains("no token configured"), "{error}");
    }

    #[test]
    fn defaults() {
        let config = decode("token: abc").expect("valid");
        assert_eq!(config.scheme, "Bearer");
        assert_eq!(config.header, "Authorization");
        assert_eq!(config.reload_interval, Duration::from_secs(1));
        assert!(!config.watches_files());
    }

    #[test]
    fn exactly_one_client_source() {
        let error = decode("{ token: abc, token_env: SET }").expect_err("two sources");
        assert!(
            error.contains(
                "`token` and `token_env` are both set; the client token comes from exactly one of"
            ),
            "{error}"
        );
        assert!(error.contains("config.token_env"), "{error}");
    }

    #[test]
    fn nothing_configured_is_an_error_listing_the_options() {
        let error = decode("{}").expect_err("empty");
        assert!(error.contains("no token configured"), "{error}");
    }

    #[test]
    fn token_env_must_be_set_and_not_blank() {
        assert!(decode("token_env: SET").is_ok());
        let unset = decode("token_env: UNSET").expect_err("unset");
        assert!(
            unset.contains("environment variable `UNSET` is not set"),
            "{unset}"
        );
        let blank = decode("token_env: BLANK").expect_err("blank");
        assert!(
            blank.contains("environment variable `BLANK` is empty"),
            "{blank}"
        );
    }

    #[test]
    fn header_scheme_and_interval_are_checked() {
        let header = decode("{ token: a, header: 'X Token' }").expect_err("space");
        assert!(header.contains("is not an HTTP header name"), "{header}");
        let scheme = decode("{ token: a, scheme: 'Bearer x' }").expect_err("two words");
        assert!(scheme.contains("`scheme` is one word"), "{scheme}");
        assert!(decode("{ token: a, scheme: '', header: X-Api-Key }").is_ok());
        for reserved in ["Host", "content-length", "Transfer-Encoding"] {
            let error = decode(&format!("{{ token: a, header: {reserved} }}")).expect_err(reserved);
            assert!(
                error.contains("cannot carry a token"),
                "{reserved}: {error}"
            );
        }
        let newline = decode("{ token: \"ab\\ncd\" }").expect_err("newline");
        assert!(
            newline.contains("line break or control character"),
            "{newline}"
        );
        assert!(
            !newline.contains("ab"),
            "the token is not echoed: {newline}"
        );
        let in_list = decode("{ tokens: [ok, \"a\\rb\"] }").expect_err("carriage return");
        assert!(in_list.contains("tokens[1]"), "{in_list}");
        let interval = decode("{ token: a, reload_interval: 1ms }").expect_err("too short");
        assert!(
            interval.contains("`reload_interval` must be between 10ms and 1 day (86400s)"),
            "{interval}"
        );
    }

    #[test]
    fn empty_tokens_are_located() {
        let error = decode("tokens: [a, '']").expect_err("empty");
        assert!(error.contains("config.tokens[1]"), "{error}");
        assert!(error.contains("this token is empty"), "{error}");
    }

    #[test]
    fn tokens_never_appear_in_errors() {
        let error = decode("{ token: hunter2-secret, tokens: [x], unknown: 1 }")
            .expect_err("unknown field");
        assert!(!error.contains("hunter2-secret"), "{error}");
    }
}
