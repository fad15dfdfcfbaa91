//! Third-party nodes written against the `otap-df` facade alone, one per capability (the
//! node author's guide, `otap_df::node`, walks through them):
//!
//! - `processor:acme_sample` binds a `key_value_store`;
//! - `exporter:acme_stamp` binds a `bearer_token_provider`;
//! - `receiver:acme_gate` binds a `bearer_token_authorizer`.
//!
//! Each self-registers (`submit_node!`): a binary that names this crate has them in
//! `otap_df::registry()`. [`register`] is the explicit path.

// The guide's compiled example is this crate's processor: one file, shown in the facade's
// docs and run in this crate's pipelines (this crate is never packaged).
#[path = "../../../otap-df/docs/examples/sample.rs"]
pub mod sample;

pub mod gate;
pub mod stamp;

use otap_df::node::Registry;

/// Registers the three node types.
pub fn register(registry: &mut Registry) {
    registry.register_node(&sample::SAMPLE);
    registry.register_node(&stamp::STAMP);
    registry.register_node(&gate::GATE);
}
