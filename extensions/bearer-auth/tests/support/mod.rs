//! Helpers shared by this crate's test binaries.

#![allow(dead_code, unused_imports, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use otap_df_core::capability::{TokenSubscription, shared};
use otap_df_core::config::{ComponentConfig, PositionIndex, YamlPath};
use otap_df_core::extension::{ExtensionContext, ExtensionHandle, LifecycleKind};
use otap_df_extension_bearer_auth::testing::Reloader;
use otap_df_extension_bearer_auth::{BEARER_AUTH, BearerAuth, BearerAuthConfig};
use otap_df_tests::task::TaskRuntime;
pub use otap_df_tests::temp::TempDir;
use otap_df_tests::token::{self, next_within};

pub fn config(yaml: &str) -> BearerAuthConfig {
    otap_df_tests::config::decode(yaml, |config| {
        BearerAuthConfig::decode(config, &|name| std::env::var(name).ok())
    })
}

pub fn auth(yaml: &str) -> Arc<BearerAuth> {
    Arc::new(BearerAuth::new("tokens", &config(yaml)).expect("extension"))
}

/// Writes `content` to `path` by writing a sibling and renaming it over (atomic).
pub fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// An instance with its reload task running on a runtime of its own, as the engine runs it.
pub struct Running {
    pub auth: Arc<BearerAuth>,
    pub handle: ExtensionHandle,
    runtime: TaskRuntime,
}

pub fn running(yaml: &str) -> Running {
    let config = config(yaml);
    let auth = Arc::new(BearerAuth::new("tokens", &config).expect("extension"));
    let (runtime, mut handle) = TaskRuntime::spawn(Box::new(Reloader::new(
        auth.clone(),
        config.reload_interval,
    )));
    assert!(
        runtime.block_on(handle.wait_ready()),
        "the task became ready"
    );
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

    pub fn subscribe(&self) -> TokenSubscription {
        shared::BearerTokenProvider::subscribe(self.auth.as_ref())
    }

    /// The next token of `subscription`, within a bound.
    pub fn next(&self, subscription: &mut TokenSubscription) -> String {
        let token = self.block_on(next_within(subscription, Duration::from_secs(10)));
        token::value(&token)
    }

    /// Waits until the extension reports itself degraded (`Some`) or healthy (`None`).
    pub fn wait_degraded(&self, degraded: bool) -> Option<String> {
        let mut state = self.handle.degraded();
        for _ in 0..1000 {
            if state.is_some() == degraded {
                return state;
            }
            // Each reload runs once per reload_interval; wait for the next one.
            self.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
            state = self.handle.degraded();
        }
        panic!("the extension never became degraded={degraded}");
    }

    pub fn current(&self) -> String {
        shared::BearerTokenProvider::current_token(self.auth.as_ref())
            .expect("a token")
            .secret()
            .expose()
            .to_owned()
    }
}

/// Builds the extension through its factory: its lifecycle kind, or the error.
pub fn create(yaml: &str) -> Result<LifecycleKind, String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    let path = YamlPath::root().key("config");
    let positions = PositionIndex::default();
    let context = ExtensionContext::new(&BEARER_AUTH, "tokens", "g", "p", None);
    let constructor = BEARER_AUTH.shared_constructor().expect("shared variant");
    constructor(&context, &ComponentConfig::new(&value, &path, &positions))
        .map(|extension| extension.lifecycle_kind())
        .map_err(|e| e.to_string())
}
