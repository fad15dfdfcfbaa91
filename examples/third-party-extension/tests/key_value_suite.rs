//! `extension:acme_kv` passes the `key_value_store` behaviour suite of `otap-df-tests`.

use std::rc::Rc;

use acme_otap_kv::{AcmeKv, AcmeKvConfig};

#[test]
fn acme_kv_passes_the_key_value_store_suite() {
    otap_df_tests::key_value_suite::run_local("acme_kv", || {
        Rc::new(AcmeKv::new(AcmeKvConfig::default()))
    });
}
