#![doc = include_str!("../README.md")]
//! Behaviour suites that every implementation of a capability must pass, and fixtures shared
//! by otap-df's own tests.
//!
//! A third-party `key_value_store` runs the same suite as the built-in ones with one call:
//!
//! ```no_run
//! # use std::rc::Rc;
//! # use otap_df_core::capability::local;
//! # fn my_store() -> Rc<dyn local::KeyValueStore> { unimplemented!() }
//! otap_df_tests::key_value_suite::run_local("my_store", my_store);
//! ```

pub mod bearer_suite;
pub mod config;
pub mod engine;
pub mod fixtures;
pub mod http;
pub mod key_value_suite;
pub mod logs;
pub mod oidc_server;
pub mod ports;
pub mod recording;
pub mod redis_server;
pub mod task;
pub mod temp;
pub mod tls;
pub mod token;
