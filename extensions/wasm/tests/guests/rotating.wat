;; A bearer_token_provider guest whose token changes at each ask (`tok-1`, `tok-2`, ...
;; up to `tok-9`, then `tok-1` again), each valid for a minute.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "tok-0")
  (global $asked (mut i32) (i32.const 0))
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "otap_token") (result i64)
    (global.set $asked (i32.add (i32.rem_u (global.get $asked) (i32.const 9)) (i32.const 1)))
    ;; The digit after `tok-`.
    (i32.store8 (i32.const 20) (i32.add (i32.const 48) (global.get $asked)))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 5)))
  (func (export "otap_token_valid_ms") (result i64) (i64.const 60000)))
