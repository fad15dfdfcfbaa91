#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod error;
mod extension;
mod key_value;

pub use config::{RedisKvConfig, TlsConfig};
pub use error::RedisKvError;
pub use extension::{REDIS_KV, connect, default_prefix};
pub use key_value::RedisKv;

use otap_df_core::registry::Registry;

/// The type name a configuration uses: `type: extension:redis_kv`.
pub const TYPE: &str = "extension:redis_kv";

/// Registers `extension:redis_kv`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&REDIS_KV);
}

// Self-registration: a binary that names this crate finds it through
// `Registry::register_linked`.
otap_df_core::submit_extension!(extension::REDIS_KV);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constant_names_the_registered_factory() {
        assert_eq!(
            super::TYPE,
            format!("extension:{}", super::extension::REDIS_KV.name())
        );
    }
}
