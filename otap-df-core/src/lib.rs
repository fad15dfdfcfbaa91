#![doc = include_str!("../README.md")]

pub mod capability;
pub mod secret;

pub use async_trait::async_trait;
#[doc(hidden)]
pub use linkme;
pub mod binding;
pub mod config;
pub mod extension;
pub mod node;
pub mod registry;
