//! The `otap-df` command line, as a library: the `otap-df` binary is one call to [`main`], and
//! a distribution that adds its own extension crates owns its command line with [`Cli`] — its
//! name in `--help`, `--version` and every error line:
//!
//! ```no_run
//! // use my_extension as _; // links the crate, so its linkme entry is found
//! fn main() -> std::process::ExitCode {
//!     otap_df::cli::Cli::new("acme-collector", env!("CARGO_PKG_VERSION"))
//!         .about("Acme's telemetry collector")
//!         .run()
//! }
//! ```

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use crate::Registry;
use crate::sources::Sources;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::time::Duration;

use crate::core::config::ComponentKind;
use crate::core::extension::ExecutionModel;
use crate::core::resolve::{ExtensionPlan, ResolvedConfig, Scope, ScopeKey};
use crate::core::runtime::{Engine, RunOptions, ShutdownHandle, Telemetry};

/// A command line built on otap-df: `validate`, `components` and `run`, under a
/// distribution's name and version.
#[derive(Debug, Clone)]
pub struct Cli {
    name: &'static str,
    version: &'static str,
    about: &'static str,
}

impl Cli {
    /// A command line named `name` (as `--help` shows it and every error line starts) at
    /// `version` (what `--version` prints after the name; pass your crate's
    /// `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: &'static str, version: &'static str) -> Self {
        Self {
            name,
            version,
            about: "A telemetry dataflow engine built around extensions",
        }
    }

    /// The one-line description `--help` prints.
    #[must_use]
    pub fn about(mut self, about: &'static str) -> Self {
        self.about = about;
        self
    }

    /// Parses the process arguments and runs the command with
    /// [`registry()`](crate::registry) (this build's features and every linked crate's
    /// self-registered extensions and nodes).
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// [`run`](Self::run) with the given arguments, the program name first.
    pub fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Args::command()
            .name(self.name)
            .bin_name(self.name)
            .version(self.version)
            .about(self.about);
        let matches = command.get_matches_from(args);
        let args = match Args::from_arg_matches(&matches) {
            Ok(args) => args,
            Err(error) => error.exit(),
        };
        let out = Out {
            name: self.name,
            json: false,
        };
        let registry = match crate::registry() {
            Ok(registry) => registry,
            Err(error) => {
                out.error(format_args!(
                    "this build's registry is inconsistent:\n{error}"
                ));
                return ExitCode::FAILURE;
            }
        };
        match args.command {
            Command::Validate { sources } => validate(out, &registry, &sources),
            Command::PrintConfig { sources } => print_config(out, &registry, &sources),
            Command::Components { output } => {
                match output {
                    Output::Text => print!("{}", components(&registry)),
                    Output::Json => {
                        let value = components_value(&registry);
                        match serde_json::to_string_pretty(&value) {
                            Ok(text) => println!("{text}"),
                            Err(error) => {
                                out.error(format_args!("cannot write JSON: {error}"));
                                return ExitCode::FAILURE;
                            }
                        }
                    }
                    Output::Yaml => {
                        let value = components_value(&registry);
                        match serde_yaml_ng::to_string(&value) {
                            Ok(text) => print!("{text}"),
                            Err(error) => {
                                out.error(format_args!("cannot write YAML: {error}"));
                                return ExitCode::FAILURE;
                            }
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            Command::Run { sources, flags } => run(out, &registry, &sources, flags),
        }
    }
}

/// The `otap-df` binary: [`Cli`] named `otap-df` at this crate's version.
pub fn main() -> ExitCode {
    Cli::new("otap-df", env!("CARGO_PKG_VERSION")).run()
}

/// Where error lines go: standard error, prefixed with the command's name; or, once `run`
/// writes JSON logs, as error events.
#[derive(Debug, Clone, Copy)]
struct Out {
    name: &'static str,
    json: bool,
}

impl Out {
    fn error(self, message: std::fmt::Arguments<'_>) {
        if self.json {
            tracing::error!("{message}");
        } else {
            eprintln!("{}: {message}", self.name);
        }
    }

    fn config_errors(self, errors: &crate::ConfigErrors) {
        if self.json {
            for error in &errors.errors {
                tracing::error!(file = %errors.source, "{error}");
            }
        } else {
            eprintln!("{errors}");
        }
    }
}

/// How `run` writes its progress and final summaries: `progress: …` / `final: …` lines, or
/// INFO events with the summary as a field when the logs are JSON.
#[derive(Debug, Clone, Copy)]
struct Report {
    out: Out,
    quiet: bool,
}

impl Report {
    fn summary(self, kind: &'static str, summary: &str) {
        if self.quiet {
            return;
        }
        if self.out.json {
            tracing::info!(target: "otap_df::summary", kind, summary, "{kind}");
        } else {
            eprintln!("{kind}: {summary}");
        }
    }
}

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a configuration without starting anything: prints a summary, or every error.
    Validate {
        #[command(flatten)]
        sources: Sources,
    },
    /// Prints the configuration as it would run — every file merged, every override and
    /// `${env:…}` / `${file:…}` applied — with secrets redacted; checks it first.
    PrintConfig {
        #[command(flatten)]
        sources: Sources,
    },
    /// Lists every extension and node type this build knows, with the crate each comes from.
    Components {
        /// `text` for people, `json` or `yaml` for tools (the same facts: each type with its
        /// description, crate, what it provides or accepts, and what is not compiled in).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Runs a configuration until every receiver has finished, or until SIGINT/SIGTERM
    /// (a second signal exits at once).
    Run {
        #[command(flatten)]
        sources: Sources,
        #[command(flatten)]
        flags: RunFlags,
    },
}

/// What `run` logs when `RUST_LOG` is not set: otap-df's own INFO lines, and only warnings
/// and errors of the Azure SDK, which logs each credential it builds at INFO (one line per
/// token renewal).
pub const DEFAULT_LOG_FILTER: &str = "info,azure_identity=warn,azure_core=warn";

/// `run`'s exit code when the run ended cleanly but records were lost (or, with
/// `--fail-on-loss`, not delivered).
pub const EXIT_LOST: u8 = 3;

/// Reads `sources` and loads the configuration they make; its label for messages.
fn read_config(
    out: Out,
    registry: &Registry,
    sources: &Sources,
) -> Result<(ResolvedConfig, String), ExitCode> {
    let read = read_sources(out, sources)?;
    Ok((load(out, registry, &read)?, read.label()))
}

fn read_sources(out: Out, sources: &Sources) -> Result<crate::sources::Read, ExitCode> {
    sources.read().map_err(|message| {
        out.error(format_args!("{message}"));
        ExitCode::FAILURE
    })
}

fn load(
    out: Out,
    registry: &Registry,
    read: &crate::sources::Read,
) -> Result<ResolvedConfig, ExitCode> {
    crate::core::resolve::load_layers(&read.layers(), registry, &|name| std::env::var(name).ok())
        .map_err(|errors| {
            out.config_errors(&errors);
            ExitCode::FAILURE
        })
}

fn print_config(out: Out, registry: &Registry, sources: &Sources) -> ExitCode {
    let read = match read_sources(out, sources) {
        Ok(read) => read,
        Err(code) => return code,
    };
    // Only a configuration that would run is shown.
    if let Err(code) = load(out, registry, &read) {
        return code;
    }
    let shown = crate::core::config::effective(&read.layers(), &|name| std::env::var(name).ok())
        .map_err(|errors| errors.to_string())
        .and_then(|value| {
            serde_yaml_ng::to_string(&crate::sources::redacted(value)).map_err(|e| e.to_string())
        });
    match shown {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            out.error(format_args!("{message}"));
            ExitCode::FAILURE
        }
    }
}

/// How `components` writes its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

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
struct RunFlags {
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

fn run(out: Out, registry: &Registry, sources: &Sources, flags: RunFlags) -> ExitCode {
    let RunFlags {
        cores,
        quiet,
        progress_interval: interval,
        shutdown_timeout,
        admin_listen,
        log_format,
        progress,
        fail_on_loss,
    } = flags;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let terminal = std::io::stderr().is_terminal();
    match log_format {
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
    let out = Out {
        json: log_format == LogFormat::Json,
        ..out
    };
    let report = Report { out, quiet };
    let (resolved, label) = match read_config(out, registry, sources) {
        Ok(read) => read,
        Err(code) => return code,
    };
    for warning in &resolved.warnings {
        tracing::warn!("{label}:{warning}");
    }
    if cores.is_some_and(|cores| !(1..=crate::core::config::MAX_CORES).contains(&cores)) {
        out.error(format_args!(
            "--cores must be between 1 and {}",
            crate::core::config::MAX_CORES
        ));
        return ExitCode::FAILURE;
    }
    if !(shutdown_timeout.is_finite() && (0.5..=3600.0).contains(&shutdown_timeout)) {
        out.error(format_args!(
            "--shutdown-timeout must be between 0.5 and 3600 seconds"
        ));
        return ExitCode::FAILURE;
    }
    // `--admin-listen` overrides where the endpoint listens; its other settings are the
    // configuration's, or the defaults.
    let admin = match (admin_listen, resolved.engine.admin.clone()) {
        (None, None) => None,
        (listen, config) => {
            let mut config = config.unwrap_or_default();
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
    };
    let admin_token = resolved.admin_authorizer().is_some();
    let engine = Engine::new(
        resolved,
        RunOptions {
            cores,
            shutdown_timeout: Duration::from_secs_f64(shutdown_timeout),
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
    let _admin = match admin {
        Some(config) => {
            let listen = config.listen;
            let admin = crate::admin::Admin::start(
                &config,
                telemetry.clone(),
                engine.resolved(),
                Some(reload.clone()),
                admin_token.then(|| engine.admin_authorizer()),
            );
            match admin {
                Ok(admin) => {
                    tracing::info!(
                        "admin endpoint on http://{} (/livez /readyz /status /metrics, POST /reload)",
                        admin.local_addr()
                    );
                    Some(admin)
                }
                Err(error) => {
                    out.error(format_args!(
                        "cannot serve the admin endpoint on {listen}: {error}"
                    ));
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    watch_signals(engine.shutdown_handle(), telemetry.clone(), report, reload);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let progress = (!quiet && (progress || terminal)).then(|| {
        let telemetry = telemetry.clone();
        let every = Duration::from_secs_f64(interval.max(0.1));
        std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(every)
            {
                report.summary("progress", &telemetry.summary());
            }
        })
    });
    let result = engine.run();
    drop(done_tx);
    if let Some(progress) = progress {
        let _ = progress.join();
    }
    report.summary("final", &telemetry.summary());
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
    telemetry: std::sync::Arc<Telemetry>,
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

fn validate(out: Out, registry: &Registry, sources: &Sources) -> ExitCode {
    match read_config(out, registry, sources) {
        Ok((resolved, label)) => {
            print!("{}", summary(&label, &resolved));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn summary(name: &str, resolved: &ResolvedConfig) -> String {
    let mut out = String::new();
    let cores = resolved.engine.cores;
    let _ = writeln!(
        out,
        "{name}: valid ({cores} core{})",
        if cores == 1 { "" } else { "s" }
    );
    for scope in resolved.scopes.iter().filter(|s| !s.extensions.is_empty()) {
        let _ = match &scope.scope {
            Scope::Group(group) => writeln!(out, "group {group}"),
            _ => writeln!(out, "engine"),
        };
        let _ = writeln!(out, "  extensions:");
        let id_width = scope.extensions.iter().map(|e| e.id.len()).max();
        for extension in &scope.extensions {
            let _ = writeln!(
                out,
                "    {:width$}  extension:{}  [shared, one for every pipeline and core]  bound by {}",
                extension.id,
                extension.factory.name(),
                consumers(extension, true),
                width = id_width.unwrap_or(0),
            );
        }
    }
    for (index, pipeline) in resolved.pipelines.iter().enumerate() {
        let _ = writeln!(out, "pipeline {}/{}", pipeline.group, pipeline.name);
        let id_width = pipeline
            .extensions
            .iter()
            .map(|e| e.id.len())
            .chain(pipeline.nodes.iter().map(|n| n.id.len()))
            .max()
            .unwrap_or(0);
        if !pipeline.extensions.is_empty() {
            let _ = writeln!(out, "  extensions:");
        }
        for extension in &pipeline.extensions {
            let instances = match extension.execution {
                ExecutionModel::Local => format!("local, one per core ({cores})"),
                ExecutionModel::Shared => "shared, one for all cores".to_owned(),
            };
            let _ = writeln!(
                out,
                "    {:id_width$}  extension:{}  [{instances}]  bound by {}",
                extension.id,
                extension.factory.name(),
                consumers(extension, false),
            );
        }
        let _ = writeln!(out, "  nodes:");
        for node in &pipeline.nodes {
            let bindings: Vec<String> = node
                .bindings
                .iter()
                .map(|binding| {
                    let outer = match resolved.binding_scope(index, &binding.extension) {
                        Some(ScopeKey::Outer(scope)) => match &resolved.scopes[scope].scope {
                            Scope::Group(group) => format!(" (group {group})"),
                            _ => " (engine)".to_owned(),
                        },
                        _ => String::new(),
                    };
                    format!("{} <- {}{outer}", binding.capability, binding.extension)
                })
                .collect();
            let _ = writeln!(
                out,
                "    {:id_width$}  {}:{}{}",
                node.id,
                node.factory.kind(),
                node.factory.name(),
                if bindings.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", bindings.join(", "))
                }
            );
        }
        if !pipeline.edges.is_empty() {
            let _ = writeln!(out, "  connections:");
            for (from, to) in &pipeline.edges {
                let _ = writeln!(out, "    {from} -> {to}");
            }
        }
    }
    for warning in &resolved.warnings {
        let _ = writeln!(out, "warning: {name}:{warning}");
    }
    out
}

/// The nodes that bind `extension`, each once: `node`, or `group/pipeline.node` when
/// `qualified` (an outer scope's consumers come from several pipelines).
fn consumers(extension: &ExtensionPlan, qualified: bool) -> String {
    let mut names: Vec<String> = Vec::new();
    for consumer in &extension.consumers {
        let name = if qualified {
            format!("{}.{}", consumer.pipeline, consumer.node)
        } else {
            consumer.node.clone()
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

/// What `components --output json|yaml` writes.
fn components_value(registry: &Registry) -> serde_json::Value {
    use serde_json::json;
    let extensions: Vec<serde_json::Value> = registry
        .extensions()
        .map(|factory| {
            json!({
                "type": format!("extension:{}", factory.name()),
                "description": factory.description_text(),
                "crate": factory.registrant(),
                "provides": factory.provided().iter().map(|c| c.name()).collect::<Vec<_>>(),
                "execution": factory.execution_models().iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let nodes = |kind: ComponentKind| -> Vec<serde_json::Value> {
        registry
            .nodes()
            .filter(|f| f.kind() == kind)
            .map(|factory| {
                json!({
                    "type": format!("{kind}:{}", factory.name()),
                    "description": factory.description_text(),
                    "crate": factory.registrant(),
                    "accepts": factory.accepted().iter().map(|r| json!({
                        "capability": r.capability.name(),
                        "required": r.required,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    let missing: Vec<serde_json::Value> = registry
        .not_compiled_in()
        .map(
            |(kind, name, feature)| json!({ "type": format!("{kind}:{name}"), "feature": feature }),
        )
        .collect();
    json!({
        "extensions": extensions,
        "receivers": nodes(ComponentKind::Receiver),
        "processors": nodes(ComponentKind::Processor),
        "exporters": nodes(ComponentKind::Exporter),
        "not_compiled_in": missing,
    })
}

fn components(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "extensions:");
    for factory in registry.extensions() {
        let provides: Vec<&str> = factory.provided().iter().map(|c| c.name()).collect();
        let models: Vec<&str> = factory
            .execution_models()
            .iter()
            .map(|m| m.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  extension:{}  {}",
            factory.name(),
            factory.description_text()
        );
        let _ = writeln!(
            out,
            "      provides: {}  ({})",
            if provides.is_empty() {
                "nothing (background)".to_owned()
            } else {
                provides.join(", ")
            },
            models.join(", ")
        );
        let _ = writeln!(out, "      from: {}", factory.registrant());
    }
    for kind in [
        ComponentKind::Receiver,
        ComponentKind::Processor,
        ComponentKind::Exporter,
    ] {
        let _ = writeln!(out, "{kind}s:");
        for factory in registry.nodes().filter(|f| f.kind() == kind) {
            let _ = writeln!(
                out,
                "  {}:{}  {}",
                kind,
                factory.name(),
                factory.description_text()
            );
            let accepts: Vec<String> = factory
                .accepted()
                .iter()
                .map(|r| {
                    format!(
                        "{} ({})",
                        r.capability,
                        if r.required { "required" } else { "optional" }
                    )
                })
                .collect();
            if !accepts.is_empty() {
                let _ = writeln!(out, "      accepts: {}", accepts.join(", "));
            }
            let _ = writeln!(out, "      from: {}", factory.registrant());
        }
    }
    let missing: Vec<_> = registry.not_compiled_in().collect();
    if !missing.is_empty() {
        let _ = writeln!(out, "not compiled in:");
        for (kind, name, feature) in missing {
            let _ = writeln!(out, "  {kind}:{name}  enable cargo feature `{feature}`");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use otap_df_tests::logs::Captured;

    use super::DEFAULT_LOG_FILTER;

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
