//! `otap-df run`: logs set up, the configuration read, the engine started with the reload
//! thread, the admin endpoint and the signal watcher beside it, progress lines, and the exit
//! code that tells what was lost.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::output::{Out, Report, read_config};
use super::{DEFAULT_LOG_FILTER, EXIT_LOST};
use crate::Registry;
use crate::core::config::AdminConfig;
use crate::core::resolve::ResolvedConfig;
use crate::core::runtime::{Engine, EngineError, RunOptions, ShutdownHandle, Telemetry};
use crate::sources::Sources;

/// How `run` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `run`'s flags.
#[derive(clap::Args)]
pub(super) struct RunFlags {
    /// Pipeline instances (one per core); overrides `engine.cores`.
    #[arg(long)]
    cores: Option<usize>,
    /// No progress and no final line on standard error.
    #[arg(long)]
    quiet: bool,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 1.0)]
    progress_interval: f64,
    /// Seconds a graceful shutdown may take: receivers stop, what they accepted drains;
    /// shortly before this deadline exporters stop retrying and dead-letter (or count
    /// lost) whatever they still hold.
    #[arg(long, default_value_t = 10.0)]
    shutdown_timeout: f64,
    /// Serves the admin endpoint (/livez, /readyz, /status, /metrics) on this address
    /// (an IP address and port); overrides `engine.admin.listen`.
    #[arg(long, value_name = "ADDRESS")]
    admin_listen: Option<std::net::SocketAddr>,
    /// How log lines are written to standard error: `text` (colours only on a terminal,
    /// never with NO_COLOR set) or `json` (one JSON object per line, the progress and
    /// final summaries included).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Progress lines even when standard error is not a terminal (by default they are
    /// written only to a terminal; the final line always is).
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
    /// Exit 3 when any accepted record was not delivered, dead-lettered ones included
    /// (without it, exit 3 only when records were lost: neither delivered nor
    /// dead-lettered).
    #[arg(long)]
    fail_on_loss: bool,
}

pub(super) fn run(out: Out, registry: &Registry, sources: &Sources, flags: RunFlags) -> ExitCode {
    let terminal = std::io::stderr().is_terminal();
    init_logs(flags.log_format, terminal);
    let out = Out {
        json: flags.log_format == LogFormat::Json,
        ..out
    };
    let report = Report {
        out,
        quiet: flags.quiet,
    };
    let (resolved, label) = match read_config(out, registry, sources) {
        Ok(read) => read,
        Err(code) => return code,
    };
    for warning in &resolved.warnings {
        tracing::warn!("{label}:{warning}");
    }
    if let Err(message) = flags.check() {
        out.error(format_args!("{message}"));
        return ExitCode::FAILURE;
    }
    let admin = admin_config(flags.admin_listen, &resolved);
    let admin_token = resolved.admin_authorizer().is_some();
    let engine = Engine::new(
        resolved,
        RunOptions {
            cores: flags.cores,
            shutdown_timeout: Duration::from_secs_f64(flags.shutdown_timeout),
            ..RunOptions::default()
        },
    );
    let telemetry = engine.telemetry();
    let reloader =
        crate::reload::reloader(registry.clone(), sources.clone(), engine.reload_handle());
    let reload = match crate::reload::Reloads::start(reloader) {
        Ok(reload) => reload,
        Err(error) => {
            out.error(format_args!("cannot start the reload thread: {error}"));
            return ExitCode::FAILURE;
        }
    };
    // Up before the engine starts, down after it ended: it reports the whole run.
    let _admin = match admin.map(|config| start_admin(&config, &engine, &reload, admin_token)) {
        None => None,
        Some(Ok(admin)) => Some(admin),
        Some(Err(message)) => {
            out.error(format_args!("{message}"));
            return ExitCode::FAILURE;
        }
    };
    watch_signals(engine.shutdown_handle(), telemetry.clone(), report, reload);
    let progress = (!flags.quiet && (flags.progress || terminal)).then(|| {
        let every = Duration::from_secs_f64(flags.progress_interval.max(0.1));
        Progress::start(telemetry.clone(), report, every)
    });
    let result = engine.run();
    drop(progress);
    report.summary("final", &telemetry.summary());
    exit_code(out, result, &telemetry, flags.fail_on_loss)
}

impl RunFlags {
    /// Why the flags cannot run, if they cannot.
    fn check(&self) -> Result<(), String> {
        let max_cores = crate::core::config::MAX_CORES;
        if self
            .cores
            .is_some_and(|cores| !(1..=max_cores).contains(&cores))
        {
            return Err(format!("--cores must be between 1 and {max_cores}"));
        }
        let timeout = self.shutdown_timeout;
        if !(timeout.is_finite() && (0.5..=3600.0).contains(&timeout)) {
            return Err("--shutdown-timeout must be between 0.5 and 3600 seconds".to_owned());
        }
        Ok(())
    }
}

/// Log lines to standard error, filtered by `RUST_LOG` or [`DEFAULT_LOG_FILTER`]; colours
/// only on a `terminal`, never with `NO_COLOR` set.
fn init_logs(format: LogFormat, terminal: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// The admin endpoint's settings: the configuration's (or the defaults), listening where
/// `--admin-listen` says when given; `None` when neither asks for the endpoint.
fn admin_config(
    listen: Option<std::net::SocketAddr>,
    resolved: &ResolvedConfig,
) -> Option<AdminConfig> {
    if listen.is_none() && resolved.engine.admin.is_none() {
        return None;
    }
    let mut config = resolved.engine.admin.clone().unwrap_or_default();
    if let Some(listen) = listen {
        if !listen.ip().is_loopback() && config.capabilities.is_empty() {
            tracing::warn!(
                "the admin endpoint listens on {listen}, beyond this machine, without a \
                 token: anyone who reaches it can read its status and metrics and reload \
                 the configuration"
            );
        }
        config.listen = listen;
    }
    Some(config)
}

/// The admin endpoint of `engine`, serving; why it cannot, otherwise.
fn start_admin(
    config: &AdminConfig,
    engine: &Engine,
    reload: &crate::reload::Reloads,
    token: bool,
) -> Result<crate::admin::Admin, String> {
    let admin = crate::admin::Admin::start(
        config,
        engine.telemetry(),
        engine.resolved(),
        Some(reload.clone()),
        token.then(|| engine.admin_authorizer()),
    )
    .map_err(|error| {
        format!(
            "cannot serve the admin endpoint on {}: {error}",
            config.listen
        )
    })?;
    tracing::info!(
        "admin endpoint on http://{} (/livez /readyz /status /metrics, POST /reload)",
        admin.local_addr()
    );
    Ok(admin)
}

/// The thread that writes a progress line every interval until dropped.
struct Progress {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(telemetry: Arc<Telemetry>, report: Report, every: Duration) -> Self {
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(every)
            {
                report.summary("progress", &telemetry.summary());
            }
        });
        Self {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The exit code of a run that ended with `result`: [`EXIT_LOST`] when records were lost
/// (or, with `fail_on_loss`, not delivered), each said.
fn exit_code(
    out: Out,
    result: Result<(), EngineError>,
    telemetry: &Telemetry,
    fail_on_loss: bool,
) -> ExitCode {
    let lost = telemetry.records_lost();
    if lost > 0 {
        out.error(format_args!(
            "{lost} records were lost: accepted, then neither delivered nor \
             dead-lettered (see the `lost=` counters; set `dead_letter_file` to keep them)"
        ));
    }
    let undelivered: u64 = telemetry
        .node_totals()
        .iter()
        .map(|total| total.counts.records_failed)
        .sum();
    if fail_on_loss && lost == 0 && undelivered > 0 {
        out.error(format_args!(
            "{undelivered} records were not delivered (dead-lettered or failed; see the \
             `failed=` counters), and --fail-on-loss was given"
        ));
    }
    match result {
        Err(error) => {
            out.error(format_args!("the run failed:\n{error}"));
            ExitCode::FAILURE
        }
        Ok(()) if lost > 0 || (fail_on_loss && undelivered > 0) => ExitCode::from(EXIT_LOST),
        Ok(()) => ExitCode::SUCCESS,
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once, with the final line of
/// what was counted so far. SIGHUP: reload the configuration (see [`crate::reload`]), off
/// the signal loop so that a signal during a reload is still handled.
fn watch_signals(
    shutdown: ShutdownHandle,
    telemetry: Arc<Telemetry>,
    report: Report,
    reload: crate::reload::Reloads,
) {
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else {
            tracing::error!("cannot watch signals: no runtime");
            return;
        };
        runtime.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            let mut count = 0;
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        reload.ask();
                        continue;
                    }
                }
                count += 1;
                if count == 1 {
                    tracing::info!("shutting down: receivers stop, in-flight data drains (signal again to exit at once)");
                    shutdown.request();
                } else {
                    tracing::warn!("second signal: exiting at once");
                    report.summary(
                        "final",
                        &format!(
                            "{} | exited at a second signal: data still in the pipeline was abandoned",
                            telemetry.summary()
                        ),
                    );
                    std::process::exit(130);
                }
            }
        });
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot watch signals");
    }
}

#[cfg(test)]
mod tests {
    use otap_df_tests::logs::Captured;

    use crate::cli::DEFAULT_LOG_FILTER;

    #[test]
    fn the_default_filter_keeps_our_info_lines_and_drops_the_azure_sdks() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "otap_df::cli", "ours");
            tracing::info!(target: "azure_identity::managed_identity_credential", "sdk chatter");
            tracing::warn!(target: "azure_identity::managed_identity_credential", "sdk warning");
        });
        let text = captured.text();
        assert!(text.contains("ours"), "{text}");
        assert!(!text.contains("sdk chatter"), "{text}");
        assert!(text.contains("sdk warning"), "{text}");
    }
}
