//! What can go wrong when `extension:wasm` starts: its kind, and what to change.

use otap_df_core::extension::{ClassifiedError, ErrorKind};

/// Why a `wasm` instance could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    /// The module is unreadable, not valid WebAssembly, imports what the host does not offer
    /// or lacks exports its capabilities need.
    #[error("{0}")]
    Module(String),
    /// The guest did not start: it traps or runs out of fuel while starting, speaks another
    /// ABI version, or refuses its `config:`.
    #[error("the guest did not start: {0}")]
    Start(String),
}

impl ClassifiedError for WasmError {
    /// Both are the configuration's to fix (the module is part of it): misconfigured.
    fn kind(&self) -> ErrorKind {
        ErrorKind::Misconfigured
    }
}
