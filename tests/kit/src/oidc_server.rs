//! A real OAuth2/OIDC server for tests: the published `oauth2-mock-server` (npm), driven by
//! `oidc-server/server.mjs` of this crate. It serves a discovery document, a JWKS and a token
//! endpoint whose tokens `jose` signs; the script adds what the package leaves out (it checks
//! the clients' secrets and `private_key_jwt` assertions with Node's own crypto) and a
//! control endpoint: add signing keys, mint tokens, set the issued tokens' lifetime, fail
//! token requests, list the requests seen.
//!
//! The package is installed on first use (`npm ci`, pinned by the lock file) under
//! `target/oidc-server/`. [`require`] is what a test calls: under `CI=true` or
//! `OTAP_DF_REQUIRE_NODE=1` (set by `cargo xtask test`) a server that cannot start fails the
//! test; elsewhere, without Node, the test is skipped with a message that says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const SCRIPT: &str = include_str!("../oidc-server/server.mjs");
const PACKAGE: &str = include_str!("../oidc-server/package.json");
const LOCK: &str = include_str!("../oidc-server/package-lock.json");

/// Not an error of the server: Node is not installed.
const NOT_INSTALLED: &str = "node or npm is not installed";

/// A running OAuth2/OIDC server; killed on drop.
#[derive(Debug)]
pub struct OidcServer {
    child: Child,
    // Closing it ends the server (the script exits when its stdin does).
    _stdin: Option<ChildStdin>,
    issuer: String,
    control: String,
}

/// A server for a test, its clients given as JSON (`{"clients": {"<id>": {"secret"?,
/// "jwk"?, "kid"?, "tenant"?}}, "audience": "<default aud>"}`): `Some` when one runs, `None`
/// (after saying so loudly) when Node is not installed and nothing requires it.
pub fn require(test: &str, settings: &str) -> Option<OidcServer> {
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("OTAP_DF_REQUIRE_NODE").is_ok_and(|v| v == "1");
    match OidcServer::start(settings) {
        Ok(server) => Some(server),
        Err(error) if required => {
            panic!("{test}: cannot start the OAuth2/OIDC test server, and CI requires it: {error}")
        }
        Err(error) if !error.starts_with(NOT_INSTALLED) => {
            panic!("{test}: the OAuth2/OIDC test server did not start: {error}")
        }
        Err(error) => {
            eprintln!(
                "{test}: SKIPPED: {error}; install Node.js 18.12+ and npm to run this test \
                 (`cargo xtask test` requires them)"
            );
            None
        }
    }
}

/// Serialises the installation between the tests of one binary.
static INSTALL: Mutex<()> = Mutex::new(());

/// `target/oidc-server/`, with the package installed as the lock file pins it.
fn installed() -> Result<PathBuf, String> {
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Err(format!("{NOT_INSTALLED} (`{tool} --version` failed)"));
        }
    }
    let dir = target_dir()?.join("oidc-server");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_if_changed(&dir.join("server.mjs"), SCRIPT)?;
    write_if_changed(&dir.join("package.json"), PACKAGE)?;
    let changed = write_if_changed(&dir.join("package-lock.json"), LOCK)?;
    let marker = dir
        .join("node_modules")
        .join("oauth2-mock-server")
        .join("package.json");
    if changed || !marker.exists() {
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("cannot run `npm ci`: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "`npm ci` in {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(dir)
}

/// The cargo target directory: `CARGO_TARGET_DIR`, or the one the test binary runs from
/// (`target/<profile>/deps/<binary>`).
fn target_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| format!("no test binary path: {e}"))?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("`{}` is not in a cargo target directory", exe.display()))
}

/// Writes `text` to `path` unless it holds it already; whether it wrote.
fn write_if_changed(path: &Path, text: &str) -> Result<bool, String> {
    if std::fs::read_to_string(path).is_ok_and(|held| held == text) {
        return Ok(false);
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(true)
}

impl OidcServer {
    /// Installs (once) and starts a server; returns when it listens.
    pub fn start(settings: &str) -> Result<Self, String> {
        let dir = installed()?;
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg(settings)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run node: {e}"))?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            return Err("no stdout from node".to_owned());
        };
        // The script prints its addresses once listening, or exits (its error on stderr).
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the server's addresses: {e}"))?;
        let field = |name: &str| -> Option<String> {
            let start = line.find(&format!("\"{name}\":\""))? + name.len() + 4;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        };
        let (Some(issuer), Some(control)) = (field("issuer"), field("control")) else {
            let _ = child.kill();
            return Err(format!(
                "the server did not start (it printed `{}`)",
                line.trim()
            ));
        };
        Ok(Self {
            child,
            _stdin: stdin,
            issuer,
            control,
        })
    }

    /// The issuer (`iss` of its tokens; discovery at `<issuer>/.well-known/openid-configuration`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// The key set.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// Adds a signing key (`RS256`, `ES256`, ...) named `kid` to the key set.
    pub fn add_key(&self, alg: &str, kid: &str) {
        self.call("/keys", &format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#));
    }

    /// A token signed with key `kid`, its claims `claims` (a JSON object) over the issuer's
    /// own (`iss`, `iat`, `nbf`, `exp` = now + `expires_in` seconds, which may be negative).
    pub fn mint(&self, kid: &str, claims: &str, expires_in: i64) -> String {
        let answer = self.call(
            "/mint",
            &format!(r#"{{"kid":"{kid}","claims":{claims},"expiresIn":{expires_in}}}"#),
        );
        let start = answer.find(r#""token":""#).map(|at| at + 9);
        let token = start.and_then(|start| {
            let end = start + answer[start..].find('"')?;
            Some(answer[start..end].to_owned())
        });
        token.unwrap_or_else(|| panic!("no token minted: {answer}"))
    }

    /// The lifetime (seconds) of the tokens the token endpoint issues from now on.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.call("/ttl", &format!(r#"{{"seconds":{seconds}}}"#));
    }

    /// The next `count` token requests are answered `status` with an OAuth2 error.
    pub fn fail_next(&self, status: u16, count: u32) {
        self.call(
            "/fail",
            &format!(r#"{{"status":{status},"count":{count}}}"#),
        );
    }

    /// The token requests seen, in order, as a JSON array of `{grant_type, method,
    /// client_id, scope, audience, resource, error}`.
    pub fn requests(&self) -> String {
        self.call("/requests", "")
    }

    /// One control call (HTTP/1.1 on loopback, the connection closed after it).
    fn call(&self, path: &str, body: &str) -> String {
        let address = self.control.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("cannot reach the test server's control: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let method = if body.is_empty() { "GET" } else { "POST" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("control call {path}: {e}"));
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("control call {path}: {e}"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "control call {path} failed: {head} {body}"
        );
        body.to_owned()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
