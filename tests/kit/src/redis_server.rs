//! A real `redis-server` for tests: started on a free loopback port with persistence off,
//! ready once it answers `PING`, killed (by its pid) on drop. Stop and restart it on the same
//! port to test outages.
//!
//! [`require`] is what a test calls: under `CI=true` a server that cannot start fails the
//! test; elsewhere the test is skipped with a message that says how to install Redis.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::tls::TestPki;

/// How long a server may take to answer its first `PING`.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    tls: Option<Tls>,
    extra_args: Vec<String>,
}

/// The TLS side of a server: its port and files.
#[derive(Debug, Clone)]
struct Tls {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    require_client_cert: bool,
}

/// A server for a test: `Some` when one runs; `None` (after saying loudly how to install it)
/// when `redis-server` is not installed and nothing requires it. Panics when none can be
/// started under `CI=true` or `OTAP_DF_REQUIRE_REDIS=1` (set by `cargo xtask test`, which
/// installs Redis first), and everywhere when an installed server does not start (bad
/// arguments, ...): a skip must never hide a failure.
pub fn require(test: &str) -> Option<RedisServer> {
    require_with(test, RedisServer::start)
}

/// Like [`require`], with more `redis-server` arguments (see [`RedisServer::start_with_args`]).
pub fn require_with_args(test: &str, args: &[&str]) -> Option<RedisServer> {
    require_with(test, || RedisServer::start_with_args(args))
}

/// Like [`require`], for a server that also listens for TLS (see [`RedisServer::start_tls`]).
pub fn require_tls(test: &str, pki: &TestPki, require_client_cert: bool) -> Option<RedisServer> {
    require_with(test, || RedisServer::start_tls(pki, require_client_cert))
}

fn require_with(
    test: &str,
    start: impl FnOnce() -> Result<RedisServer, String>,
) -> Option<RedisServer> {
    match start() {
        Ok(server) => Some(server),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: cannot start redis-server, and CI=true requires it: {error}")
        }
        Err(error) if std::env::var("OTAP_DF_REQUIRE_REDIS").is_ok_and(|v| v == "1") => {
            panic!(
                "{test}: cannot start redis-server, and OTAP_DF_REQUIRE_REDIS=1 requires it: {error}"
            )
        }
        Err(error) if !error.starts_with(NOT_INSTALLED) => {
            panic!("{test}: redis-server is installed but did not start: {error}")
        }
        Err(error) => {
            eprintln!(
                "{test}: SKIPPED: cannot start redis-server ({error}); install it \
                 (`apt-get install redis-server`) to run this test"
            );
            None
        }
    }
}

/// How a start error begins when `redis-server` cannot be run at all.
const NOT_INSTALLED: &str = "cannot run `redis-server`";

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<Self, String> {
        Self::start_with(None, &[])
    }

    /// Starts a server with more `redis-server` arguments (e.g. `--requirepass`, `--user`),
    /// kept for [`restart`](Self::restart).
    pub fn start_with_args(args: &[&str]) -> Result<Self, String> {
        Self::start_with(None, args)
    }

    /// Starts a server that also listens for TLS on a second free port, with the server
    /// certificate of `pki`; with `require_client_cert`, TLS clients must present a
    /// certificate signed by `pki`'s CA. The plain port stays open for readiness checks.
    pub fn start_tls(pki: &TestPki, require_client_cert: bool) -> Result<Self, String> {
        Self::start_with(
            Some(Tls {
                port: 0,
                cert: pki.server_cert(),
                key: pki.server_key(),
                ca: pki.ca_cert(),
                require_client_cert,
            }),
            &[],
        )
    }

    fn start_with(tls: Option<Tls>, extra_args: &[&str]) -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "otap-df-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Another process may take the port between our probe and the server's bind: retry
        // with a new one.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut tls = tls.clone();
            if let Some(tls) = &mut tls {
                tls.port = crate::ports::free_port()?;
            }
            let mut server = Self {
                child: None,
                port: crate::ports::free_port()?,
                dir: dir.clone(),
                tls,
                extra_args: extra_args.iter().map(|&a| a.to_owned()).collect(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn spawn(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut command = Command::new("redis-server");
        if let Some(tls) = &self.tls {
            command
                .args(["--tls-port", &tls.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args([
                    "--tls-auth-clients",
                    if tls.require_client_cert { "yes" } else { "no" },
                ]);
        }
        let child = command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .args(["--loglevel", "warning"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .arg("--unixsocket")
            .arg(self.socket())
            .args(["--unixsocketperm", "700"])
            .args(&self.extra_args)
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{NOT_INSTALLED}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                // Argument errors go to stderr, the rest (a port in use) to the log.
                let mut output = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut output);
                }
                output.push_str(
                    &std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default(),
                );
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited ({status}): {}",
                    self.port,
                    output.trim()
                ));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {START_DEADLINE:?}",
                    self.port
                ));
            }
            // Readiness poll: the server binds within milliseconds; bounded by the deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// `unix://<socket>`.
    pub fn unix_url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// `rediss://localhost:<tls port>` of a server started with
    /// [`start_tls`](Self::start_tls).
    ///
    /// # Panics
    /// When the server has no TLS port.
    pub fn tls_url(&self) -> String {
        let Some(tls) = &self.tls else {
            panic!("tls_url: this redis-server was started without TLS")
        };
        format!("rediss://localhost:{}", tls.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server answers `PING` now (a `NOAUTH` refusal is an answer).
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        // A server that requires a password answers, too: `-NOAUTH Authentication required.`
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && (&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`stop`](Self::stop)).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
