//! Helpers of this crate's test binaries: a managed identity token endpoint on loopback, a
//! fake `az`, and a way to run a test body in a child process with the environment the
//! `azure_identity` credentials read (environment variables are process-wide, so each body
//! gets a process of its own).

#![allow(dead_code, unused_imports, clippy::expect_used, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use otap_df_core::capability::{TokenSubscription, shared};
use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_core::extension::ExtensionHandle;
use otap_df_core::secret::BearerToken;
use otap_df_extension_azure_auth::testing::Refresher;
use otap_df_extension_azure_auth::{AzureAuth, AzureAuthConfig};
use otap_df_tests::task::TaskRuntime;
pub use otap_df_tests::temp::TempDir;

/// Set in the environment of a child process; holds the name of the parent test.
pub const CHILD: &str = "OTAP_DF_AZURE_TEST_CHILD";

/// The secret the endpoint expects in `X-IDENTITY-HEADER`.
pub const IDENTITY_HEADER: &str = "identity-header-secret";

/// The scope every test asks for, and the resource the endpoint receives for it.
pub const SCOPE: &str = "https://monitor.azure.com/.default";
pub const RESOURCE: &str = "https://monitor.azure.com";

/// Runs the ignored test `child` of this binary in a child process with `env`, and returns
/// what it printed; panics with its output if it failed.
pub fn run_child(child: &str, env: &[(&str, String)]) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = Command::new(exe);
    command
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, child);
    // Whatever the machine has set must not point the credentials anywhere else.
    for variable in [
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_AUTHORITY_HOST",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(variable);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test `{child}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}

/// Panics unless this process is a child started by `run_child` for `child`.
pub fn expect_child(child: &str) {
    assert_eq!(
        std::env::var(CHILD).ok().as_deref(),
        Some(child),
        "`{child}` runs in a child process started by its parent test (the test of the same \
         name without `_child`); run that one"
    );
}

/// One reply of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A token valid for this many seconds.
    Token(u64),
    /// An error status with a JSON body.
    Fail(u16),
    /// No answer until the client gives up.
    Stall,
}

/// What the endpoint saw of one request.
#[derive(Debug, Clone)]
pub struct Served {
    /// When it arrived.
    pub at: Instant,
    /// The `resource` query parameter.
    pub resource: Option<String>,
    /// The `client_id` query parameter (a user-assigned identity).
    pub client_id: Option<String>,
    /// Whether `X-IDENTITY-HEADER` held the secret.
    pub header_ok: bool,
    /// The reply given.
    pub reply: Reply,
}

struct EndpointState {
    script: VecDeque<Reply>,
    default: Reply,
    served: Vec<Served>,
    issued: u64,
    value_file: Option<PathBuf>,
}

/// An App Service managed identity endpoint (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`) on
/// 127.0.0.1, on a runtime of its own. Replies follow a script, then a default.
pub struct TokenEndpoint {
    addr: SocketAddr,
    state: Arc<Mutex<EndpointState>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl TokenEndpoint {
    /// Replies with `script` in turn, then with `default` to every request.
    pub fn start(script: &[Reply], default: Reply) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(EndpointState {
            script: script.iter().copied().collect(),
            default,
            served: Vec::new(),
            issued: 0,
            value_file: None,
        }));
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// Tokens take their value from `path` (when it exists) instead of numbering.
    pub fn with_value_file(self, path: &Path) -> Self {
        self.state.lock().unwrap().value_file = Some(path.to_owned());
        self
    }

    /// The environment that points a managed identity credential here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "IDENTITY_ENDPOINT",
                format!("http://{}/msi/token", self.addr),
            ),
            ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
        ]
    }

    /// The requests seen so far.
    pub fn served(&self) -> Vec<Served> {
        self.state.lock().unwrap().served.clone()
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The expiry (seconds since the epoch) a numbered token `tok.<n>.<expiry>` carries.
pub fn expiry_of(value: &str) -> u64 {
    value
        .rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered token"))
}

/// The number `n` of a numbered token `tok.<n>.<expiry>`.
pub fn number_of(value: &str) -> u64 {
    value
        .split('.')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered token"))
}

async fn answer(state: &Mutex<EndpointState>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let header_ok = request
        .headers()
        .get("x-identity-header")
        .is_some_and(|v| v.as_bytes() == IDENTITY_HEADER.as_bytes());
    let (reply, body) = {
        let mut state = state.lock().unwrap();
        let reply = state.script.pop_front().unwrap_or(state.default);
        state.served.push(Served {
            at: Instant::now(),
            resource: param("resource"),
            client_id: param("client_id"),
            header_ok,
            reply,
        });
        let body = match reply {
            Reply::Token(lifetime) => {
                state.issued += 1;
                let expires_on = unix_now() + lifetime;
                let value = state
                    .value_file
                    .as_ref()
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| format!("tok.{}.{expires_on}", state.issued));
                format!(
                    r#"{{"access_token":"{value}","expires_on":"{expires_on}","resource":"{}","token_type":"Bearer"}}"#,
                    param("resource").unwrap_or_default()
                )
            }
            Reply::Fail(_) => {
                r#"{"error":"service_unavailable","error_description":"the token service is down"}"#
                    .to_owned()
            }
            Reply::Stall => String::new(),
        };
        (reply, body)
    };
    let status = match reply {
        _ if !header_ok => StatusCode::UNAUTHORIZED,
        Reply::Token(_) => StatusCode::OK,
        Reply::Fail(status) => StatusCode::from_u16(status).unwrap(),
        Reply::Stall => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// Decodes an `azure_auth` config block.
pub fn config(yaml: &str) -> AzureAuthConfig {
    otap_df_tests::config::decode(yaml, |config| {
        AzureAuthConfig::decode(config, &|name| std::env::var(name).ok())
    })
}

/// An instance with its refresh loop running on a runtime of its own, as the engine runs
/// shared extensions.
pub struct Running {
    pub auth: Arc<AzureAuth>,
    pub handle: ExtensionHandle,
    runtime: TaskRuntime,
}

/// Starts an instance; does not wait for readiness.
pub fn start(yaml: &str) -> Running {
    let auth = Arc::new(AzureAuth::new("azure", &config(yaml)).expect("extension"));
    let (runtime, handle) = TaskRuntime::spawn(Box::new(Refresher::new(auth.tokens().clone())));
    Running {
        auth,
        handle,
        runtime,
    }
}

/// Starts an instance and waits (bounded) until it is ready.
pub fn running(yaml: &str) -> Running {
    let Running {
        auth,
        mut handle,
        runtime,
    } = start(yaml);
    let ready = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), handle.wait_ready()).await
    });
    assert_eq!(ready, Ok(true), "ready within 20s");
    Running {
        auth,
        handle,
        runtime,
    }
}

impl Running {
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn current(&self) -> Option<BearerToken> {
        shared::BearerTokenProvider::current_token(self.auth.tokens().as_ref())
    }

    pub fn current_value(&self) -> String {
        self.current()
            .expect("a current token")
            .secret()
            .expose()
            .to_owned()
    }

    pub fn subscribe(&self) -> TokenSubscription {
        shared::BearerTokenProvider::subscribe(self.auth.tokens().as_ref())
    }

    /// The next token of `subscription`, within 20 s.
    pub fn next(&self, subscription: &mut TokenSubscription) -> BearerToken {
        self.block_on(otap_df_tests::token::next_within(
            subscription,
            Duration::from_secs(20),
        ))
    }
}

/// A managed identity config with test-sized timings; `extra` is more YAML flow entries.
pub fn managed_identity(extra: &str) -> String {
    format!(
        "{{ scope: '{SCOPE}', method: managed_identity, request_timeout: 2s, \
         refresh: {{ lifetime_fraction: 0.05, min_interval: 10ms }}, \
         retry: {{ initial_interval: 200ms, max_interval: 2s }}{extra} }}"
    )
}
