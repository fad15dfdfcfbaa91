//! `acme-collector`: the `otap-df` command with `extension:acme_kv` added.

// Naming the crate links it, and with it its `linkme` registration entry; nothing else is
// needed: `otap_df::registry()` collects every linked entry.
use acme_otap_kv as _;

fn main() -> std::process::ExitCode {
    otap_df::cli::main()
}
