//! The `otap-df` command: see [`otap_df::cli`].

fn main() -> std::process::ExitCode {
    otap_df::cli::main()
}
