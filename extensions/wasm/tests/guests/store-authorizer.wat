;; A bearer_token_authorizer guest, ABI version 1, in WebAssembly text, whose tokens live in
;; the key_value_store granted to it (the extension's `capabilities:`): a credential is
;; accepted when the store holds it as a key, as the identity stored there (an empty value:
;; the extension's id); absent, it is denied `invalid`; when the store cannot answer, the guest
;; cannot decide (-4) and the request is refused as unavailable, not as unauthorized.
(module
  (import "otap" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  ;; The identity read from the store: at 256, at most 256 bytes.
  (func (export "otap_abi_version") (result i32) (i32.const 1))

  ;; The input buffer: at 1024, the memory grown to hold `size` bytes.
  (func (export "otap_alloc") (param $size i32) (result i32)
    (local $needed i32)
    (local.set $needed
      (i32.div_u (i32.add (i32.add (i32.const 1024) (local.get $size)) (i32.const 65535))
                 (i32.const 65536)))
    (if (i32.gt_u (local.get $needed) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $needed) (memory.size))))))
    (i32.const 1024))

  (func (export "otap_authorize") (param $ptr i32) (param $len i32) (result i64)
    (local $n i64)
    (local.set $n (call $kv_get (local.get $ptr) (local.get $len) (i32.const 256) (i32.const 256)))
    ;; Absent: denied invalid.
    (if (i64.eq (local.get $n) (i64.const -1)) (then (return (i64.const -2))))
    ;; The store could not answer (or a call it cannot make here): no decision.
    (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i64.const -4))))
    ;; An identity longer than the buffer: no decision either.
    (if (i64.gt_s (local.get $n) (i64.const 256)) (then (return (i64.const -4))))
    (i64.or (i64.shl (i64.const 256) (i64.const 32)) (local.get $n))))
