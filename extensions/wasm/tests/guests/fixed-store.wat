;; A key_value_store guest that does no work of its own: every get finds the same value and
;; every write succeeds. What a call through the host costs besides the guest's own work (the
;; `wasm_fixed` rows of the benchmark, tests/integration/benches/wasm.rs).
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "value-0123456789abcdef")
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "otap_kv_get") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 22)))
  (func (export "otap_kv_set") (param i32 i32 i32 i32 i64) (result i32) (i32.const 0))
  (func (export "otap_kv_set_if_absent") (param i32 i32 i32 i32 i64) (result i32) (i32.const 1))
  (func (export "otap_kv_delete") (param i32 i32) (result i32) (i32.const 0)))
