//! Where the command line's error lines and summaries go, and how a command reads its
//! configuration.

use std::process::ExitCode;

use crate::Registry;
use crate::core::resolve::ResolvedConfig;
use crate::sources::{Read, Sources};

/// Where error lines go: standard error, prefixed with the command's name; or, once `run`
/// writes JSON logs, as error events.
#[derive(Debug, Clone, Copy)]
pub(super) struct Out {
    pub(super) name: &'static str,
    pub(super) json: bool,
}

impl Out {
    pub(super) fn error(self, message: std::fmt::Arguments<'_>) {
        if self.json {
            tracing::error!("{message}");
        } else {
            eprintln!("{}: {message}", self.name);
        }
    }

    /// Prints `text` on standard output: success; or says why there is none: failure.
    pub(super) fn print(self, text: Result<String, String>) -> ExitCode {
        match text {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                self.error(format_args!("{message}"));
                ExitCode::FAILURE
            }
        }
    }

    pub(super) fn config_errors(self, errors: &crate::ConfigErrors) {
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
pub(super) struct Report {
    pub(super) out: Out,
    pub(super) quiet: bool,
}

impl Report {
    pub(super) fn summary(self, kind: &'static str, summary: &str) {
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

/// Reads `sources` and loads the configuration they make; its label for messages.
pub(super) fn read_config(
    out: Out,
    registry: &Registry,
    sources: &Sources,
) -> Result<(ResolvedConfig, String), ExitCode> {
    let read = read_sources(out, sources)?;
    Ok((load(out, registry, &read)?, read.label()))
}

pub(super) fn read_sources(out: Out, sources: &Sources) -> Result<Read, ExitCode> {
    sources.read().map_err(|message| {
        out.error(format_args!("{message}"));
        ExitCode::FAILURE
    })
}

pub(super) fn load(out: Out, registry: &Registry, read: &Read) -> Result<ResolvedConfig, ExitCode> {
    crate::core::resolve::load_layers(&read.layers(), registry, &|name| std::env::var(name).ok())
        .map_err(|errors| {
            out.config_errors(&errors);
            ExitCode::FAILURE
        })
}
