//! `validate` (a summary of what would run, or every error) and `print-config` (the
//! configuration as it would run, secrets redacted).

use std::fmt::Write as _;
use std::process::ExitCode;

use super::output::{Out, load, read_config, read_sources};
use crate::Registry;
use crate::core::extension::ExecutionModel;
use crate::core::resolve::{ExtensionPlan, ResolvedConfig, Scope, ScopeKey};
use crate::sources::Sources;

pub(super) fn validate(out: Out, registry: &Registry, sources: &Sources) -> ExitCode {
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
    for index in 0..resolved.pipelines.len() {
        pipeline_summary(&mut out, resolved, index);
    }
    for warning in &resolved.warnings {
        let _ = writeln!(out, "warning: {name}:{warning}");
    }
    out
}

/// Pipeline `index`'s part of the summary: its extensions, nodes with their bindings (and
/// the scope of each that is not the pipeline's), connections.
fn pipeline_summary(out: &mut String, resolved: &ResolvedConfig, index: usize) {
    let pipeline = &resolved.pipelines[index];
    let cores = resolved.engine.cores;
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

/// The nodes and extensions that bind `extension`, each once: `node` (`extension id` for an
/// extension), or `group/pipeline.node` when `qualified` (an outer scope's consumers come from
/// several pipelines).
fn consumers(extension: &ExtensionPlan, qualified: bool) -> String {
    let mut names: Vec<String> = Vec::new();
    for consumer in &extension.consumers {
        let name = match (qualified, consumer.extension) {
            (true, false) => format!("{}.{}", consumer.pipeline, consumer.node),
            (true, true) => format!("extension {}.{}", consumer.pipeline, consumer.node),
            (false, false) => consumer.node.clone(),
            (false, true) => format!("extension {}", consumer.node),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

pub(super) fn print_config(out: Out, registry: &Registry, sources: &Sources) -> ExitCode {
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
    out.print(shown)
}
