;; A bearer_token_provider guest: always the token `wat-token`, without expiry.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "wat-token")
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  ;; The token's bytes, packed: (16 << 32) | 9.
  (func (export "otap_token") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 9)))
  ;; No expiry.
  (func (export "otap_token_valid_ms") (result i64) (i64.const 0)))
