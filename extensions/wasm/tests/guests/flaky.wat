;; Allows every credential, but traps on its second call: the instance that follows starts
;; from scratch (its counter back at zero).
(module
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (global $calls (mut i32) (i32.const 0))
  (func (export "otap_authorize") (param i32 i32) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (i32.eq (global.get $calls) (i32.const 2)) (then unreachable))
    (i64.const 0)))
