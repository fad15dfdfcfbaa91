//! `config:` of `extension:azure_auth`, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use otap_df_core::config::{ComponentConfig, ConfigError, InvalidOption};
pub use otap_df_core::refresh::{MAX_DURATION, MIN_RETRY_INTERVAL, RefreshConfig, RetryConfig};
use otap_df_core::refresh::{check_duration, check_policies};
use otap_df_core::secret::Secret;
use serde::Deserialize;

/// The options of `extension:azure_auth`. See the crate README for each one.
///
/// Built in code (without YAML) from the scope and the method, the rest at its default until
/// set:
///
/// ```
/// use otap_df_extension_azure_auth::{AzureAuthConfig, Method};
///
/// let config = AzureAuthConfig::new("https://monitor.azure.com/.default", Method::ManagedIdentity)
///     .with_client_id("00000000-0000-0000-0000-000000000001");
/// assert_eq!(config.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AzureAuthConfig {
    /// The one scope tokens are requested for (`https://monitor.azure.com/.default`).
    pub scope: String,
    /// How the identity authenticates.
    pub method: Method,
    /// Client (application) id: a user-assigned managed identity, the workload identity's
    /// application, or the service principal.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Object (principal) id of a user-assigned managed identity.
    #[serde(default)]
    pub object_id: Option<String>,
    /// Azure resource id of a user-assigned managed identity.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Tenant (directory) id.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The Kubernetes service account token file of a workload identity.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The service principal's secret, inline (usually `${env:…}`).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file holding the service principal's secret, read at every token request (so a
    /// rotated secret is picked up).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The subscription `az` uses (`azure_cli`).
    #[serde(default)]
    pub subscription: Option<String>,
    /// The Microsoft Entra ID authority of a sovereign or private cloud (`https://…`);
    /// the Azure public cloud's when absent.
    #[serde(default)]
    pub authority_host: Option<String>,
    /// Trust for the token endpoints, beside or instead of the system's.
    #[serde(default)]
    pub tls: Option<AzureTls>,
    /// When tokens are renewed.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// How failed token requests are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Bound of one token request (an HTTP exchange or one run of `az`).
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Not an option of this block: accepted only to point at the right place.
    #[serde(default)]
    startup_timeout: Option<serde::de::IgnoredAny>,
}

/// How the extension gets its tokens; each is one `azure_identity` credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The managed identity of the Azure host (VM, App Service, Functions, AKS node).
    ManagedIdentity,
    /// Microsoft Entra Workload ID on Kubernetes (a federated service account token).
    WorkloadIdentity,
    /// A service principal and its client secret.
    ClientSecret,
    /// The signed-in Azure CLI (`az account get-access-token`).
    AzureCli,
    /// The developer tools in turn: Azure CLI, then Azure Developer CLI.
    DeveloperTools,
}

impl Method {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::ManagedIdentity => "managed_identity",
            Self::WorkloadIdentity => "workload_identity",
            Self::ClientSecret => "client_secret",
            Self::AzureCli => "azure_cli",
            Self::DeveloperTools => "developer_tools",
        }
    }

    /// The identity options this method reads.
    fn options(self) -> &'static [&'static str] {
        match self {
            Self::ManagedIdentity => &["client_id", "object_id", "resource_id", "tls"],
            Self::WorkloadIdentity => &[
                "tenant_id",
                "client_id",
                "token_file",
                "authority_host",
                "tls",
            ],
            Self::ClientSecret => &[
                "tenant_id",
                "client_id",
                "client_secret",
                "client_secret_file",
                "authority_host",
                "tls",
            ],
            Self::AzureCli => &["tenant_id", "subscription"],
            Self::DeveloperTools => &[],
        }
    }
}

/// `tls:` — trust for the token endpoints (managed identity, Entra ID).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AzureTls {
    /// PEM certificates trusted besides (or, with `system_roots: false`, instead of) the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether the system's trust store is used.
    #[serde(default = "defaults::system_roots")]
    pub system_roots: bool,
}

impl Default for AzureTls {
    /// The system's trust store, nothing besides.
    fn default() -> Self {
        Self {
            ca_file: None,
            system_roots: defaults::system_roots(),
        }
    }
}

impl AzureTls {
    /// PEM certificates trusted besides the system's.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Only the `ca_file`'s certificates, not the system's.
    #[must_use]
    pub fn without_system_roots(mut self) -> Self {
        self.system_roots = false;
        self
    }
}

mod defaults {
    use std::time::Duration;

    pub fn system_roots() -> bool {
        true
    }

    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

/// Environment variables a workload identity falls back to, by option.
pub const WORKLOAD_IDENTITY_ENV: [(&str, &str); 3] = [
    ("tenant_id", "AZURE_TENANT_ID"),
    ("client_id", "AZURE_CLIENT_ID"),
    ("token_file", "AZURE_FEDERATED_TOKEN_FILE"),
];

impl AzureAuthConfig {
    /// Tokens for `scope` through `method`, every other option at its default until set.
    pub fn new(scope: impl Into<String>, method: Method) -> Self {
        Self {
            scope: scope.into(),
            method,
            client_id: None,
            object_id: None,
            resource_id: None,
            tenant_id: None,
            token_file: None,
            client_secret: None,
            client_secret_file: None,
            subscription: None,
            authority_host: None,
            tls: None,
            refresh: RefreshConfig::default(),
            retry: RetryConfig::default(),
            request_timeout: defaults::request_timeout(),
            startup_timeout: None,
        }
    }

    /// The client (application) id.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The object (principal) id of a user-assigned managed identity.
    #[must_use]
    pub fn with_object_id(mut self, object_id: impl Into<String>) -> Self {
        self.object_id = Some(object_id.into());
        self
    }

    /// The Azure resource id of a user-assigned managed identity.
    #[must_use]
    pub fn with_resource_id(mut self, resource_id: impl Into<String>) -> Self {
        self.resource_id = Some(resource_id.into());
        self
    }

    /// The tenant (directory) id.
    #[must_use]
    pub fn with_tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// The subscription `az` uses.
    #[must_use]
    pub fn with_subscription(mut self, subscription: impl Into<String>) -> Self {
        self.subscription = Some(subscription.into());
        self
    }

    /// The Microsoft Entra ID authority of a sovereign or private cloud (`https://…`).
    #[must_use]
    pub fn with_authority_host(mut self, authority_host: impl Into<String>) -> Self {
        self.authority_host = Some(authority_host.into());
        self
    }

    /// The Kubernetes service account token file of a workload identity.
    #[must_use]
    pub fn with_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// The service principal's secret, inline.
    #[must_use]
    pub fn with_client_secret(mut self, secret: Secret) -> Self {
        self.client_secret = Some(secret);
        self
    }

    /// A file holding the service principal's secret, read at every token request.
    #[must_use]
    pub fn with_client_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_secret_file = Some(path.into());
        self
    }

    /// Trust for the token endpoints.
    #[must_use]
    pub fn with_tls(mut self, tls: AzureTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// When tokens are renewed.
    #[must_use]
    pub fn with_refresh(mut self, refresh: RefreshConfig) -> Self {
        self.refresh = refresh;
        self
    }

    /// How failed token requests are retried.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// The bound of one token request.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

impl AzureAuthConfig {
    /// Decodes and validates the block; `env` reads the `AZURE_*` fallbacks of a workload
    /// identity. Nothing is contacted.
    pub fn decode(
        config: &ComponentConfig<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        decoded
            .check(env)
            .map_err(|invalid| config.located(invalid))?;
        Ok(decoded)
    }

    /// Checks the options as [`decode`](Self::decode) does, reading a workload identity's
    /// `AZURE_*` fallbacks from the process environment: for a config built in code
    /// ([`AzureAuth::new`](crate::AzureAuth::new) checks it too). Nothing is contacted.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        self.check(&|name| std::env::var(name).ok())
    }

    fn check(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), InvalidOption> {
        self.check_endpoints()?;
        self.check_method(env)?;
        self.check_ids()?;
        self.check_schedule()
    }

    /// The scope, the options of another method, the authority and the trust.
    fn check_endpoints(&self) -> Result<(), InvalidOption> {
        let decoded = self;
        if decoded.startup_timeout.is_some() {
            return Err(InvalidOption::new(
                "startup_timeout",
                "`startup_timeout` is set beside `type:` and `config:`, not inside `config:` \
                 (default for azure_auth: 30s)",
            ));
        }
        if let Err(message) = check_scope(&decoded.scope) {
            return Err(InvalidOption::new("scope", message));
        }
        decoded.check_method_options()?;
        if let Some(host) = &decoded.authority_host {
            let parsed = reqwest::Url::parse(host).ok().filter(|url| {
                url.scheme() == "https"
                    && url.host_str().is_some_and(|h| !h.is_empty())
                    && url.username().is_empty()
                    && url.password().is_none()
            });
            if parsed.is_none() {
                return Err(InvalidOption::new(
                    "authority_host",
                    format!(
                        "`authority_host` `{host}` is not an https:// URL with a host (e.g. \
                         `https://login.microsoftonline.us` for Azure Government)"
                    ),
                ));
            }
        }
        if let Some(tls) = &decoded.tls {
            if tls
                .ca_file
                .as_ref()
                .is_some_and(|path| path.as_os_str().is_empty())
            {
                return Err(InvalidOption::new(
                    "tls.ca_file",
                    "`tls.ca_file` is empty; name a PEM file",
                ));
            }
            if !tls.system_roots && tls.ca_file.is_none() {
                return Err(InvalidOption::new(
                    "tls.system_roots",
                    "`tls.system_roots: false` needs `tls.ca_file`: nothing would be trusted",
                ));
            }
        }
        Ok(())
    }

    /// What the method needs (`env`: a workload identity's `AZURE_*` fallbacks).
    fn check_method(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), InvalidOption> {
        let decoded = self;
        match decoded.method {
            Method::ManagedIdentity => {
                let ids: Vec<&str> = [
                    ("client_id", decoded.client_id.is_some()),
                    ("object_id", decoded.object_id.is_some()),
                    ("resource_id", decoded.resource_id.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, set)| set.then_some(name))
                .collect();
                if let [first, second, ..] = ids.as_slice() {
                    return Err(InvalidOption::new(
                        *second,
                        format!(
                            "`{first}` and `{second}` are both set; a user-assigned identity is \
                             named by one of `client_id`, `object_id`, `resource_id` (none: the \
                             system-assigned identity)"
                        ),
                    ));
                }
            }
            Method::WorkloadIdentity => {
                for (option, variable) in WORKLOAD_IDENTITY_ENV {
                    let set = match option {
                        "tenant_id" => decoded.tenant_id.is_some(),
                        "client_id" => decoded.client_id.is_some(),
                        _ => decoded.token_file.is_some(),
                    };
                    if !set && env(variable).is_none_or(|v| v.trim().is_empty()) {
                        return Err(InvalidOption::new(
                            "",
                            format!(
                                "method `workload_identity` needs `{option}`: set it here or in \
                                 the environment variable `{variable}`"
                            ),
                        ));
                    }
                }
            }
            Method::ClientSecret => {
                for (option, set) in [
                    ("tenant_id", decoded.tenant_id.is_some()),
                    ("client_id", decoded.client_id.is_some()),
                ] {
                    if !set {
                        return Err(InvalidOption::new(
                            "",
                            format!("method `client_secret` needs `{option}`"),
                        ));
                    }
                }
                match (&decoded.client_secret, &decoded.client_secret_file) {
                    (Some(_), Some(_)) => {
                        return Err(InvalidOption::new(
                            "client_secret_file",
                            "`client_secret` and `client_secret_file` are both set; the secret \
                             comes from exactly one of them",
                        ));
                    }
                    (None, None) => {
                        return Err(InvalidOption::new(
                            "",
                            "method `client_secret` needs `client_secret` or \
                             `client_secret_file`",
                        ));
                    }
                    (Some(secret), None) if secret.is_empty() => {
                        return Err(InvalidOption::new(
                            "client_secret",
                            "`client_secret` is empty",
                        ));
                    }
                    _ => {}
                }
            }
            Method::AzureCli | Method::DeveloperTools => {}
        }
        Ok(())
    }

    /// Ids that are set are not blank, and a tenant is a directory id or a domain.
    fn check_ids(&self) -> Result<(), InvalidOption> {
        let decoded = self;
        for (option, value) in [
            ("tenant_id", &decoded.tenant_id),
            ("client_id", &decoded.client_id),
            ("object_id", &decoded.object_id),
            ("resource_id", &decoded.resource_id),
            ("subscription", &decoded.subscription),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(InvalidOption::new(option, format!("`{option}` is empty")));
            }
        }
        if let Some(tenant) = &decoded.tenant_id
            && !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(InvalidOption::new(
                "tenant_id",
                "`tenant_id` is a directory id (a GUID) or a domain name \
                 (letters, digits, `-`, `.`)",
            ));
        }
        Ok(())
    }

    /// Options that belong to another method are errors naming the method they belong to.
    fn check_method_options(&self) -> Result<(), InvalidOption> {
        let set = [
            ("client_id", self.client_id.is_some()),
            ("object_id", self.object_id.is_some()),
            ("resource_id", self.resource_id.is_some()),
            ("tenant_id", self.tenant_id.is_some()),
            ("token_file", self.token_file.is_some()),
            ("client_secret", self.client_secret.is_some()),
            ("client_secret_file", self.client_secret_file.is_some()),
            ("subscription", self.subscription.is_some()),
            ("authority_host", self.authority_host.is_some()),
            ("tls", self.tls.is_some()),
        ];
        let allowed = self.method.options();
        for (option, _) in set.iter().filter(|(_, set)| *set) {
            if !allowed.contains(option) {
                let users: Vec<&str> = ALL_METHODS
                    .iter()
                    .filter(|m| m.options().contains(option))
                    .map(|m| m.name())
                    .collect();
                let here = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed
                        .iter()
                        .map(|o| format!("`{o}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(InvalidOption::new(
                    *option,
                    format!(
                        "`{option}` does not apply to method `{}` (it is an option of {}); the \
                         options of `{}` are: {here}",
                        self.method.name(),
                        users.join(", "),
                        self.method.name(),
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_schedule(&self) -> Result<(), InvalidOption> {
        check_policies(&self.refresh, &self.retry)?;
        check_duration("request_timeout", self.request_timeout)?;
        if self.request_timeout.is_zero() {
            return Err(InvalidOption::new(
                "request_timeout",
                "`request_timeout` must be positive",
            ));
        }
        Ok(())
    }
}

const ALL_METHODS: [Method; 5] = [
    Method::ManagedIdentity,
    Method::WorkloadIdentity,
    Method::ClientSecret,
    Method::AzureCli,
    Method::DeveloperTools,
];

/// The characters `azure_identity` accepts in a scope; checked here so that a typo is a
/// configuration error rather than a failing token request.
fn check_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Err("`scope` is empty; e.g. `https://monitor.azure.com/.default`".to_owned());
    }
    if let Some(bad) = scope
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')))
    {
        return Err(format!(
            "`scope` contains {bad:?}; a scope is one resource URI with `/.default` (e.g. \
             `https://monitor.azure.com/.default`): letters, digits and `.-_:/` only"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<AzureAuthConfig, String> {
        let env = |name: &str| match name {
            "AZURE_TENANT_ID" => Some("tenant-from-env".to_owned()),
            "AZURE_CLIENT_ID" => Some("client-from-env".to_owned()),
            _ => None,
        };
        otap_df_tests::config::try_decode(yaml, |config| AzureAuthConfig::decode(config, &env))
    }

    const SCOPE: &str = "scope: https://monitor.azure.com/.default";

    #[test]
    fn a_config_built_in_code_is_checked_as_a_decoded_one() {
        let scope = "https://monitor.azure.com/.default";
        let built = AzureAuthConfig::new(scope, Method::ClientSecret)
            .with_tenant_id("my-tenant")
            .with_client_id("my-client")
            .with_client_secret_file("/secret")
            .with_refresh(RefreshConfig::default().with_renewal(0.5, Duration::from_secs(600)))
            .with_retry(
                RetryConfig::default()
                    .with_intervals(Duration::from_millis(100), Duration::from_secs(10)),
            )
            .with_tls(AzureTls::default().with_ca_file("/ca.pem"));
        assert_eq!(built.validate(), Ok(()));
        let decoded = decode(&format!(
            "{{ scope: '{scope}', method: client_secret, tenant_id: my-tenant, \
             client_id: my-client, client_secret_file: /secret, \
             refresh: {{ lifetime_fraction: 0.5, before_expiry: 10m }}, \
             retry: {{ initial_interval: 100ms, max_interval: 10s }}, tls: {{ ca_file: /ca.pem }} }}"
        ))
        .expect("valid");
        assert_eq!(format!("{built:?}"), format!("{decoded:?}"));

        let cases = [
            (
                AzureAuthConfig::new(scope, Method::ClientSecret).with_tenant_id("t"),
                InvalidOption::new("", "method `client_secret` needs `client_id`"),
            ),
            (
                AzureAuthConfig::new(scope, Method::ManagedIdentity).with_tenant_id("t"),
                InvalidOption::new(
                    "tenant_id",
                    "`tenant_id` does not apply to method `managed_identity` (it is an option \
                     of workload_identity, client_secret, azure_cli); the options of \
                     `managed_identity` are: `client_id`, `object_id`, `resource_id`, `tls`",
                ),
            ),
            (
                AzureAuthConfig::new(scope, Method::AzureCli)
                    .with_tls(AzureTls::default().without_system_roots()),
                InvalidOption::new(
                    "tls",
                    "`tls` does not apply to method `azure_cli` (it is an option of \
                     managed_identity, workload_identity, client_secret); the options of \
                     `azure_cli` are: `tenant_id`, `subscription`",
                ),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
        // The constructor refuses what the check refuses, as a misconfiguration.
        let refused = AzureAuthConfig::new(scope, Method::ClientSecret);
        let error = crate::AzureAuth::new("azure", &refused).expect_err("refused");
        assert_eq!(
            error.kind(),
            otap_df_core::extension::ErrorKind::Misconfigured
        );
        assert!(error.to_string().contains("needs `tenant_id`"), "{error}");
    }

    #[test]
    fn defaults() {
        let config = decode(&format!("{{ {SCOPE}, method: managed_identity }}")).expect("valid");
        assert_eq!(config.method, Method::ManagedIdentity);
        assert_eq!(config.refresh.lifetime_fraction, 0.8);
        assert_eq!(config.refresh.before_expiry, Duration::from_secs(300));
        assert_eq!(config.refresh.min_interval, Duration::from_secs(5));
        assert_eq!(config.retry.initial_interval, Duration::from_secs(1));
        assert_eq!(config.retry.max_interval, Duration::from_secs(300));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn scope_and_method_are_required_and_methods_are_listed() {
        let missing = decode("method: azure_cli").expect_err("no scope");
        assert!(
            missing.contains("missing required field `scope`"),
            "{missing}"
        );
        let unknown = decode(&format!("{{ {SCOPE}, method: password }}")).expect_err("unknown");
        assert!(
            unknown.contains(
                "unknown variant `password`, expected one of `managed_identity`, \
                 `workload_identity`, `client_secret`, `azure_cli`, `developer_tools`"
            ),
            "{unknown}"
        );
        assert!(unknown.contains("config.method"), "{unknown}");
    }

    #[test]
    fn durations_that_would_overflow_a_deadline_are_refused() {
        for field in [
            "refresh: { before_expiry: 18446744073709551615s }",
            "refresh: { min_interval: 2days }",
            "retry: { initial_interval: 18446744073709551615s }",
            "request_timeout: 18446744073709551615s",
        ] {
            let error = decode(&format!("{{ {SCOPE}, method: managed_identity, {field} }}"))
                .expect_err(field);
            assert!(error.contains("must be at most 1 day"), "{field}: {error}");
        }
    }

    #[test]
    fn authority_host_and_tls_are_checked_and_belong_to_the_http_methods() {
        let secret = "method: client_secret, tenant_id: t, client_id: c, client_secret: s";
        for host in [
            "http://login.example",
            "login.example",
            "https://",
            "https://user:pw@login.example",
        ] {
            let error = decode(&format!(
                "{{ {SCOPE}, {secret}, authority_host: '{host}' }}"
            ))
            .expect_err(host);
            assert!(
                error.contains("is not an https:// URL with a host"),
                "{host}: {error}"
            );
            assert!(error.contains("config.authority_host"), "{error}");
        }
        let ok = decode(&format!(
            "{{ {SCOPE}, {secret}, authority_host: 'https://login.microsoftonline.us' }}"
        ))
        .expect("valid");
        assert_eq!(
            ok.authority_host.as_deref(),
            Some("https://login.microsoftonline.us")
        );
        let cli = decode(&format!(
            "{{ {SCOPE}, method: azure_cli, authority_host: 'https://login.example' }}"
        ))
        .expect_err("not for az");
        assert!(
            cli.contains("`authority_host` does not apply to method `azure_cli`"),
            "{cli}"
        );
        let nothing = decode(&format!(
            "{{ {SCOPE}, method: managed_identity, tls: {{ system_roots: false }} }}"
        ))
        .expect_err("no trust at all");
        assert!(
            nothing.contains("`tls.system_roots: false` needs `tls.ca_file`"),
            "{nothing}"
        );
        let empty = decode(&format!(
            "{{ {SCOPE}, method: managed_identity, tls: {{ ca_file: '' }} }}"
        ))
        .expect_err("empty path");
        assert!(empty.contains("`tls.ca_file` is empty"), "{empty}");
    }

    #[test]
    fn bad_scopes_are_refused() {
        let empty = decode("{ scope: '', method: azure_cli }").expect_err("empty");
        assert!(empty.contains("`scope` is empty"), "{empty}");
        let space =
            decode("{ scope: 'https://a b/.default', method: azure_cli }").expect_err("space");
        assert!(space.contains("`scope` contains ' '"), "{space}");
    }

    #[test]
    fn options_of_another_method_are_errors_naming_their_method() {
        let error = decode(&format!(
            "{{ {SCOPE}, method: managed_identity, tenant_id: t }}"
        ))
        .expect_err("tenant for MI");
        assert!(
            error.contains(
                "`tenant_id` does not apply to method `managed_identity` (it is an option of \
                 workload_identity, client_secret, azure_cli); the options of \
                 `managed_identity` are: `client_id`, `object_id`, `resource_id`"
            ),
            "{error}"
        );
        assert!(error.contains("config.tenant_id"), "{error}");
        let none = decode(&format!(
            "{{ {SCOPE}, method: developer_tools, subscription: s }}"
        ))
        .expect_err("subscription");
        assert!(
            none.contains("the options of `developer_tools` are: none"),
            "{none}"
        );
    }

    #[test]
    fn one_user_assigned_id_at_most() {
        assert!(
            decode(&format!(
                "{{ {SCOPE}, method: managed_identity, object_id: o }}"
            ))
            .is_ok()
        );
        let error = decode(&format!(
            "{{ {SCOPE}, method: managed_identity, client_id: c, resource_id: r }}"
        ))
        .expect_err("two ids");
        assert!(
            error.contains("`client_id` and `resource_id` are both set"),
            "{error}"
        );
    }

    #[test]
    fn workload_identity_falls_back_to_the_environment() {
        // tenant and client come from the environment here; the token file does not.
        let error =
            decode(&format!("{{ {SCOPE}, method: workload_identity }}")).expect_err("no file");
        assert!(
            error.contains(
                "method `workload_identity` needs `token_file`: set it here or in the \
                 environment variable `AZURE_FEDERATED_TOKEN_FILE`"
            ),
            "{error}"
        );
        assert!(
            decode(&format!(
                "{{ {SCOPE}, method: workload_identity, token_file: /var/run/token }}"
            ))
            .is_ok()
        );
    }

    #[test]
    fn client_secret_needs_its_parts() {
        let tenant = decode(&format!(
            "{{ {SCOPE}, method: client_secret, client_id: c }}"
        ))
        .expect_err("tenant");
        assert!(
            tenant.contains("method `client_secret` needs `tenant_id`"),
            "{tenant}"
        );
        let secret = decode(&format!(
            "{{ {SCOPE}, method: client_secret, client_id: c, tenant_id: t }}"
        ))
        .expect_err("secret");
        assert!(
            secret.contains("needs `client_secret` or `client_secret_file`"),
            "{secret}"
        );
        let both = decode(&format!(
            "{{ {SCOPE}, method: client_secret, client_id: c, tenant_id: t, client_secret: \
             hunter2-value, client_secret_file: /s }}"
        ))
        .expect_err("both");
        assert!(both.contains("are both set"), "{both}");
        assert!(!both.contains("hunter2-value"), "{both}");
        let bad_tenant = decode(&format!(
            "{{ {SCOPE}, method: client_secret, client_id: c, tenant_id: 'a/b', client_secret: s }}"
        ))
        .expect_err("tenant chars");
        assert!(
            bad_tenant.contains("`tenant_id` is a directory id"),
            "{bad_tenant}"
        );
    }

    #[test]
    fn schedule_limits() {
        let fraction = decode(&format!(
            "{{ {SCOPE}, method: azure_cli, refresh: {{ lifetime_fraction: 1.0 }} }}"
        ))
        .expect_err("fraction");
        assert!(fraction.contains("between 0 and 1 exclusive"), "{fraction}");
        let before = decode(&format!(
            "{{ {SCOPE}, method: azure_cli, refresh: {{ before_expiry: 30s }} }}"
        ))
        .expect_err("before");
        assert!(before.contains("must exceed 30s"), "{before}");
        let retry = decode(&format!(
            "{{ {SCOPE}, method: azure_cli, retry: {{ initial_interval: 2s, max_interval: 1s }} }}"
        ))
        .expect_err("retry");
        assert!(
            retry.contains("`retry.max_interval` must be at least `retry.initial_interval`"),
            "{retry}"
        );
    }

    #[test]
    fn startup_timeout_inside_config_points_outside() {
        let error = decode(&format!(
            "{{ {SCOPE}, method: azure_cli, startup_timeout: 60s }}"
        ))
        .expect_err("misplaced");
        assert!(
            error.contains("`startup_timeout` is set beside `type:` and `config:`"),
            "{error}"
        );
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let error = decode(&format!(
            "{{ {SCOPE}, method: client_secret, client_id: c, tenant_id: t, client_secret: \
             hunter2-value, unknown: 1 }}"
        ))
        .expect_err("unknown field");
        assert!(!error.contains("hunter2-value"), "{error}");
    }
}
