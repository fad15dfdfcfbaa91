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
//!
//! By job: this file parses the command line and dispatches; `output` is where error lines
//! and summaries go and how a configuration is read; `run` is `otap-df run` (logs, the admin
//! endpoint, signals, the exit code); `inspect` is `validate` and `print-config`;
//! `components` lists this build's types; `new_extension` writes an extension crate.

mod components;
mod inspect;
mod new_extension;
mod output;
mod run;

pub use new_extension::FIRST_PARTY_PREFIX;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::sources::Sources;
use components::Output;
use output::Out;
use run::RunFlags;

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
            Command::Validate { sources } => inspect::validate(out, &registry, &sources),
            Command::PrintConfig { sources } => inspect::print_config(out, &registry, &sources),
            Command::Components { output } => components::print(out, &registry, output),
            Command::Run { sources, flags } => run::run(out, &registry, &sources, flags),
            Command::NewExtension(args) => match new_extension::run(&args) {
                Ok(said) => {
                    eprintln!("{said}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    out.error(format_args!("{error}"));
                    ExitCode::FAILURE
                }
            },
        }
    }
}

/// The `otap-df` binary: [`Cli`] named `otap-df` at this crate's version.
pub fn main() -> ExitCode {
    Cli::new("otap-df", env!("CARGO_PKG_VERSION")).run()
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
    /// Writes a new extension crate (for extension authors): the files every extension crate
    /// has and a working `key_value_store` to replace with yours; it builds and passes its
    /// tests as generated.
    NewExtension(new_extension::NewExtension),
}

/// What `run` logs when `RUST_LOG` is not set: otap-df's own INFO lines, and only warnings
/// and errors of the Azure SDK, which logs each credential it builds at INFO (one line per
/// token renewal).
pub const DEFAULT_LOG_FILTER: &str = "info,azure_identity=warn,azure_core=warn";

/// `run`'s exit code when the run ended cleanly but records were lost (or, with
/// `--fail-on-loss`, not delivered).
pub const EXIT_LOST: u8 = 3;
