;; Allows nothing: loops for ever (a call runs out of fuel).
(module
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "otap_authorize") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))
