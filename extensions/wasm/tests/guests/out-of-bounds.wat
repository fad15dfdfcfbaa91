;; Allows every credential with an identity outside its memory: an answer the ABI does not
;; allow.
(module
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "otap_authorize") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 0x7fff0000) (i64.const 32)) (i64.const 8))))
