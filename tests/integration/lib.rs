//! otap-df's integration tests (`tests/`) and cross-extension benchmarks (`benches/`): the
//! built-in nodes with every first-party extension, in running engines. Not published; the
//! published test kit is `otap-df-tests` (`tests/kit`).
