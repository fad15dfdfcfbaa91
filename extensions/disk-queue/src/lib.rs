#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod error;
mod extension;
mod log;
mod store;

pub use config::{
    DiskQueueConfig, MAX_BYTES, MAX_COMMIT_INTERVAL, MAX_SEGMENT_BYTES, MIN_BYTES,
    MIN_SEGMENT_BYTES,
};
pub use error::DiskQueueError;
pub use extension::DISK_QUEUE;
pub use store::DiskQueue;

use otap_df_core::registry::Registry;

/// The type name a configuration uses: `type: extension:disk_queue`.
pub const TYPE: &str = "extension:disk_queue";

/// Registers `extension:disk_queue`.
pub fn register(registry: &mut Registry) {
    registry.register_extension(&DISK_QUEUE);
}

// Self-registration: a binary that names this crate finds it through
// `Registry::register_linked`.
otap_df_core::submit_extension!(extension::DISK_QUEUE);

#[cfg(test)]
mod tests {
    #[test]
    fn the_type_constant_names_the_registered_factory() {
        assert_eq!(
            super::TYPE,
            format!("extension:{}", super::extension::DISK_QUEUE.name())
        );
    }
}
