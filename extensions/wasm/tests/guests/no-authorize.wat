;; Speaks the ABI but exports no `otap_authorize`.
(module
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024)))
