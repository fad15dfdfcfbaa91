//! One token request through `azure_identity`.
//!
//! A credential is built for every request: the library's credentials keep their own token
//! cache, which hands back the cached token until 5 minutes before its expiry and so would
//! defeat the refresh policy. Building one is cheap next to the request it makes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::ffi::OsStr;
use std::process::{Output, Stdio};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::Executor;
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, DeveloperToolsCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use otap_df_core::refresh::FetchError;
use otap_df_core::secret::{BearerToken, Secret};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{AzureAuthConfig, AzureTls, Method};
use crate::error::AzureAuthError;

/// Where tokens come from: the method and its identity options, resolved at start.
pub struct TokenSource {
    scope: String,
    method: Method,
    client_id: Option<String>,
    tenant_id: Option<String>,
    user_assigned: Option<UserAssignedId>,
    token_file: Option<PathBuf>,
    secret: SecretSource,
    subscription: Option<String>,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    /// A sovereign or private cloud's Entra ID authority (`None`: the public cloud).
    authority_host: Option<String>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("scope", &self.scope)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

enum SecretSource {
    None,
    Inline(Secret),
    File(PathBuf),
}

#[otap_df_core::async_trait]
impl otap_df_core::refresh::TokenSource for TokenSource {
    async fn fetch(&self) -> Result<BearerToken, FetchError> {
        self.request().await
    }

    fn method(&self) -> &str {
        self.method.name()
    }
}

impl TokenSource {
    /// Resolves `config` (validated by [`AzureAuthConfig::decode`]); reads the client secret
    /// file once so that an unreadable one fails the start.
    pub fn new(config: &AzureAuthConfig) -> Result<Self, AzureAuthError> {
        let secret = match (&config.client_secret, &config.client_secret_file) {
            (Some(secret), _) => SecretSource::Inline(secret.clone()),
            (None, Some(path)) => {
                read_secret(path)?;
                SecretSource::File(path.clone())
            }
            (None, None) => SecretSource::None,
        };
        let user_assigned = match (&config.client_id, &config.object_id, &config.resource_id) {
            _ if config.method != Method::ManagedIdentity => None,
            (Some(id), _, _) => Some(UserAssignedId::ClientId(id.clone())),
            (_, Some(id), _) => Some(UserAssignedId::ObjectId(id.clone())),
            (_, _, Some(id)) => Some(UserAssignedId::ResourceId(id.clone())),
            (None, None, None) => None,
        };
        Ok(Self {
            scope: config.scope.clone(),
            method: config.method,
            client_id: config.client_id.clone(),
            tenant_id: config.tenant_id.clone(),
            user_assigned,
            token_file: config.token_file.clone(),
            secret,
            subscription: config.subscription.clone(),
            timeout: config.request_timeout,
            tls: Arc::new(tls_config(config.tls.as_ref())?),
            authority_host: config.authority_host.clone(),
        })
    }

    /// Asks for a token once, within `request_timeout`. The error never contains a token
    /// or a secret.
    async fn request(&self) -> Result<BearerToken, FetchError> {
        let credential = self.credential().map_err(FetchError::misconfigured)?;
        let scopes = [self.scope.as_str()];
        let token =
            match tokio::time::timeout(self.timeout, credential.get_token(&scopes, None)).await {
                Err(_) => {
                    return Err(FetchError::unavailable(format!(
                        "no answer within request_timeout ({:?})",
                        self.timeout
                    )));
                }
                Ok(Err(error)) => {
                    let message = one_line(&error.to_string());
                    // Entra ID answers a wrong client, secret or scope with 400/401/403.
                    return Err(match http_status(&error) {
                        Some(400..=403) => FetchError::misconfigured(message),
                        _ => FetchError::unavailable(message),
                    });
                }
                Ok(Ok(token)) => token,
            };
        let expires_at = SystemTime::from(token.expires_on);
        Ok(BearerToken::new(token.token.secret()).with_expiry(expires_at))
    }

    fn client_options(&self) -> Result<ClientOptions, String> {
        // One attempt per request: retries, backoff and their logging are the refresh loop's.
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let cloud = self.authority_host.as_ref().map(|host| {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.clone();
            Arc::new(CloudConfiguration::from(custom))
        });
        Ok(ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(Transport::new(Arc::new(client))),
            cloud,
            ..ClientOptions::default()
        })
    }

    fn credential(&self) -> Result<Arc<dyn TokenCredential>, String> {
        let built: azure_core::Result<Arc<dyn TokenCredential>> = match self.method {
            Method::ManagedIdentity => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: self.user_assigned.clone(),
                    client_options: self.client_options()?,
                }))
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            Method::WorkloadIdentity => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: self.client_options()?,
                    },
                    client_id: self.client_id.clone(),
                    tenant_id: self.tenant_id.clone(),
                    token_file_path: self.token_file.clone(),
                }))
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            Method::ClientSecret => {
                let secret = match &self.secret {
                    SecretSource::Inline(secret) => secret.expose().to_owned(),
                    SecretSource::File(path) => read_secret(path)
                        .map_err(|e| e.to_string())?
                        .expose()
                        .to_owned(),
                    SecretSource::None => return Err("no client secret configured".to_owned()),
                };
                ClientSecretCredential::new(
                    self.tenant_id.as_deref().unwrap_or_default(),
                    self.client_id.clone().unwrap_or_default(),
                    AzureSecret::new(secret),
                    Some(ClientSecretCredentialOptions {
                        client_options: self.client_options()?,
                    }),
                )
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            Method::AzureCli => AzureCliCredential::new(Some(AzureCliCredentialOptions {
                tenant_id: self.tenant_id.clone(),
                subscription: self.subscription.clone(),
                executor: Some(Arc::new(GroupExecutor)),
            }))
            .map(|c| c as Arc<dyn TokenCredential>),
            Method::DeveloperTools => {
                DeveloperToolsCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
            }
        };
        built.map_err(|e| one_line(&e.to_string()))
    }
}

/// Runs `az` (azure_identity's `/bin/sh -c "az …"`) in a process group of its own, and kills
/// the whole group when the request is abandoned at `request_timeout`: `az` is a script that
/// starts Python, and killing only the shell would leave them running.
#[derive(Debug)]
struct GroupExecutor;

#[otap_df_core::async_trait]
impl Executor for GroupExecutor {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> std::io::Result<Output> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        command.process_group(0);
        let child = command.spawn()?;
        let mut group = ProcessGroup(child.id());
        let output = child.wait_with_output().await;
        // Ended by itself: nothing to kill (and its group id may be reused from now on).
        group.0 = None;
        output
    }
}

/// A process group to kill when dropped (the request was abandoned before it ended).
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(id) = self.0.and_then(|id| i32::try_from(id).ok()) {
            // SAFETY: `kill` takes plain integers and touches no memory of ours. A negative id
            // names the process group the child leads (`process_group(0)` above); the child is
            // not reaped before this kill (it is not killed on drop, and the wait that reaps
            // it clears the id first), so the id still names its group and no other.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(-id, libc::SIGKILL);
            }
        }
    }
}

/// Reads a client secret file (surrounding whitespace ignored).
fn read_secret(path: &PathBuf) -> Result<Secret, AzureAuthError> {
    let content = std::fs::read_to_string(path).map_err(|source| AzureAuthError::Unreadable {
        option: "client_secret_file",
        path: path.clone(),
        source,
    })?;
    let secret = Secret::new(content.trim());
    if secret.is_empty() {
        return Err(AzureAuthError::EmptySecretFile { path: path.clone() });
    }
    Ok(secret)
}

/// The system's trust store (unless `tls.system_roots: false`) and `tls.ca_file`, with the
/// `ring` provider (the same TLS stack as the rest of otap-df; reqwest's default would build
/// aws-lc).
fn tls_config(tls: Option<&AzureTls>) -> Result<rustls::ClientConfig, AzureAuthError> {
    let mut roots = rustls::RootCertStore::empty();
    if tls.is_none_or(|tls| tls.system_roots) {
        // Unreadable entries of the system store are skipped, as browsers do.
        let (added, _) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if added == 0 && tls.and_then(|tls| tls.ca_file.as_ref()).is_none() {
            tracing::warn!(
                "no CA certificate in the system trust store; Microsoft Entra ID will not be trusted"
            );
        }
    }
    if let Some(path) = tls.and_then(|tls| tls.ca_file.as_ref()) {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|e| AzureAuthError::Unreadable {
                option: "tls.ca_file",
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if certificates.is_empty() {
            return Err(AzureAuthError::CaFile {
                path: path.clone(),
                problem: "holds no PEM certificate".to_owned(),
            });
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| AzureAuthError::CaFile {
                path: path.clone(),
                problem: format!("holds a certificate that cannot be trusted: {e}"),
            })?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AzureAuthError::Tls {
            message: e.to_string(),
        })
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// The library's messages span lines (a troubleshooting link on the last): keep them on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The HTTP status the token service answered with, wherever in the error's chain it is
/// (a credential's error wraps the HTTP one).
fn http_status(error: &azure_core::Error) -> Option<u16> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(status) = current
            .downcast_ref::<azure_core::Error>()
            .and_then(azure_core::Error::http_status)
        {
            return Some(u16::from(status));
        }
        next = current.source();
    }
    None
}
