//! `components`: every extension and node type this build knows, with the crate each comes
//! from and what is not compiled in.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::output::Out;
use crate::Registry;
use crate::core::config::ComponentKind;

/// How `components` writes its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Output {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// Writes the list as `output` says.
pub(super) fn print(out: Out, registry: &Registry, output: Output) -> ExitCode {
    let text = match output {
        Output::Text => Ok(text(registry)),
        Output::Json => serde_json::to_string_pretty(&value(registry))
            .map(|text| text + "\n")
            .map_err(|error| format!("cannot write JSON: {error}")),
        Output::Yaml => serde_yaml_ng::to_string(&value(registry))
            .map_err(|error| format!("cannot write YAML: {error}")),
    };
    out.print(text)
}

/// What `components --output json|yaml` writes.
fn value(registry: &Registry) -> serde_json::Value {
    use serde_json::json;
    let extensions: Vec<serde_json::Value> = registry
        .extensions()
        .map(|factory| {
            json!({
                "type": format!("extension:{}", factory.name()),
                "description": factory.description_text(),
                "crate": factory.registrant(),
                "provides": factory.provided().iter().map(|c| c.name()).collect::<Vec<_>>(),
                "binds": factory.consumed().iter().map(|c| c.name()).collect::<Vec<_>>(),
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

/// What `components` writes for people.
fn text(registry: &Registry) -> String {
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
            } else if factory.provides_by_config() {
                format!("{} (those its config names)", provides.join(", "))
            } else {
                provides.join(", ")
            },
            models.join(", ")
        );
        let binds: Vec<&str> = factory.consumed().iter().map(|c| c.name()).collect();
        if !binds.is_empty() {
            let _ = writeln!(
                out,
                "      binds: {}  (optional, from other extensions)",
                binds.join(", ")
            );
        }
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
