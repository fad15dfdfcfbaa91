//! The `otap-df` command.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otap_df::Registry;
use otap_df::core::binding::ResolvedConfig;
use otap_df::core::config::ComponentKind;
use otap_df::core::extension::ExecutionModel;

#[derive(Parser)]
#[command(
    name = "otap-df",
    version,
    about = "A telemetry dataflow engine built around extensions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a configuration without starting anything: prints a summary, or every error.
    Validate {
        /// The YAML configuration file.
        config: PathBuf,
    },
    /// Lists every extension and node type this build knows.
    Components,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let registry = match otap_df::registry() {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("otap-df: this build's registry is inconsistent:\n{error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Validate { config } => validate(&registry, &config),
        Command::Components => {
            print!("{}", components(&registry));
            ExitCode::SUCCESS
        }
    }
}

fn validate(registry: &Registry, path: &PathBuf) -> ExitCode {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("otap-df: cannot read `{name}`: {error}");
            return ExitCode::FAILURE;
        }
    };
    match otap_df::load(&text, &name, registry) {
        Ok(resolved) => {
            print!("{}", summary(&name, &resolved));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
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
    for pipeline in &resolved.pipelines {
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
                "    {:id_width$}  extension:{}  [{instances}]",
                extension.id,
                extension.factory.name()
            );
        }
        let _ = writeln!(out, "  nodes:");
        for node in &pipeline.nodes {
            let bindings: Vec<String> = node
                .bindings
                .iter()
                .map(|(capability, extension)| format!("{capability} <- {extension}"))
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
