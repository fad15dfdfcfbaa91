#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod error;
mod extension;
mod store;

pub use config::{DiskKvConfig, MAX_BYTES, MIN_BYTES};
pub use error::DiskKvError;
pub use extension::DISK_KV;
pub use store::DiskKv;

use otap_df_core::registry::Registry;

/// The type name a configuration uses: `type: extension:disk_kv`.
pub const TYPE: &str = "extension:disk_kv";

/// Registers `extension:disk_kv`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&DISK_KV);
}

// Self-registration: a binary that names this crate finds it through
// `Registry::register_linked`.
otap_df_core::submit_extension!(extension::DISK_KV);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constant_names_the_registered_factory() {
        assert_eq!(
            super::TYPE,
            format!("extension:{}", super::extension::DISK_KV.name())
        );
    }
}
