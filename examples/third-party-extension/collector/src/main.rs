//! `acme-collector`: the `otap-df` command with `extension:acme_kv` added, under its own name.

// Naming the crate links it, and with it its `linkme` registration entry; nothing else is
// needed: `otap_df::registry()` collects every linked entry.
use acme_otap_kv as _;

fn main() -> std::process::ExitCode {
    otap_df::cli::Cli::new("acme-collector", env!("CARGO_PKG_VERSION"))
        .about("Acme's telemetry collector: otap-df with extension:acme_kv")
        .run()
}
