#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod abi;
mod config;
mod error;
mod extension;
mod guest;
mod module;
pub mod wasi;

pub use config::{Limits, MAX_MEMORY_BYTES, MIN_FUEL_PER_CALL, PROVIDABLE, WasmConfig};
pub use error::WasmError;
pub use extension::{WASM, Wasm};

use otap_df_core::registry::Registry;

/// The type name a configuration uses: `type: extension:wasm`.
pub const TYPE: &str = "extension:wasm";

/// Registers `extension:wasm`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&WASM);
}

// Self-registration: a binary that names this crate (`use otap_df_extension_wasm as _;`)
// finds the extension through `Registry::register_linked` without calling `register`.
otap_df_core::submit_extension!(extension::WASM);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constant_names_the_registered_factory() {
        assert_eq!(
            super::TYPE,
            format!("extension:{}", super::extension::WASM.name())
        );
    }
}
