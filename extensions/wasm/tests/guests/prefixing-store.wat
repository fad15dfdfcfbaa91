;; A key_value_store guest, ABI version 1, in WebAssembly text, over the key_value_store
;; granted to it (the extension's `capabilities:`): every key is stored in the granted store
;; under `wasm:<key>`. Its `otap_start` shows what a granted store's call answers where the
;; engine does not wait: it writes `started`, and refuses to start unless that answered -4.
(module
  (import "otap" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i64)))
  (import "otap" "kv_value" (func $kv_value (param i32 i32) (result i64)))
  (import "otap" "kv_set" (func $kv_set (param i32 i32 i32 i32 i64) (result i32)))
  (import "otap" "kv_set_if_absent" (func $kv_set_if_absent (param i32 i32 i32 i32 i64) (result i32)))
  (import "otap" "kv_delete" (func $kv_delete (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "wasm:")
  (data (i32.const 32) "started")
  ;; The size of the host's input buffer (at 1024).
  (global $input (mut i32) (i32.const 0))

  (func (export "otap_abi_version") (result i32) (i32.const 1))

  ;; Memory grown to hold `end` bytes.
  (func $reach (param $end i32)
    (local $needed i32)
    (local.set $needed
      (i32.div_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 65536)))
    (if (i32.gt_u (local.get $needed) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $needed) (memory.size)))))))

  ;; The input buffer: at 1024.
  (func (export "otap_alloc") (param $size i32) (result i32)
    (global.set $input (local.get $size))
    (call $reach (i32.add (i32.const 1024) (local.get $size)))
    (i32.const 1024))

  ;; Where the guest's own bytes go: past the input buffer.
  (func $scratch (result i32)
    (i32.and (i32.add (i32.add (i32.const 1024) (global.get $input)) (i32.const 7))
             (i32.const -8)))

  ;; `wasm:<key>` written at the scratch area; its length.
  (func $prefixed (param $key i32) (param $len i32) (result i32)
    (local $at i32)
    (local.set $at (call $scratch))
    (call $reach (i32.add (i32.add (local.get $at) (local.get $len)) (i32.const 5)))
    (memory.copy (local.get $at) (i32.const 16) (i32.const 5))
    (memory.copy (i32.add (local.get $at) (i32.const 5)) (local.get $key) (local.get $len))
    (i32.add (local.get $len) (i32.const 5)))

  ;; The value packed as (pointer << 32 | length), -1 absent, or the store's negative status.
  (func (export "otap_kv_get") (param $key i32) (param $len i32) (result i64)
    (local $at i32) (local $klen i32) (local $out i32) (local $cap i32) (local $n i64)
    (local.set $at (call $scratch))
    (local.set $klen (call $prefixed (local.get $key) (local.get $len)))
    (local.set $out (i32.and (i32.add (i32.add (local.get $at) (local.get $klen)) (i32.const 7))
                             (i32.const -8)))
    (local.set $cap (i32.sub (i32.mul (memory.size) (i32.const 65536)) (local.get $out)))
    (local.set $n (call $kv_get (local.get $at) (local.get $klen) (local.get $out) (local.get $cap)))
    (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (local.get $n))))
    ;; Too big for the memory there was: grown, and the held value taken.
    (if (i64.gt_u (local.get $n) (i64.extend_i32_u (local.get $cap)))
      (then
        (call $reach (i32.add (local.get $out) (i32.wrap_i64 (local.get $n))))
        (local.set $n (call $kv_value (local.get $out) (i32.wrap_i64 (local.get $n))))
        (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (local.get $n))))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (local.get $n)))

  (func (export "otap_kv_set")
        (param $key i32) (param $klen i32) (param $value i32) (param $vlen i32) (param $ttl i64)
        (result i32)
    (local $at i32)
    (local.set $at (call $scratch))
    (call $kv_set (local.get $at) (call $prefixed (local.get $key) (local.get $klen))
                  (local.get $value) (local.get $vlen) (local.get $ttl)))

  (func (export "otap_kv_set_if_absent")
        (param $key i32) (param $klen i32) (param $value i32) (param $vlen i32) (param $ttl i64)
        (result i32)
    (local $at i32)
    (local.set $at (call $scratch))
    (call $kv_set_if_absent (local.get $at) (call $prefixed (local.get $key) (local.get $klen))
                            (local.get $value) (local.get $vlen) (local.get $ttl)))

  (func (export "otap_kv_delete") (param $key i32) (param $len i32) (result i32)
    (local $at i32)
    (local.set $at (call $scratch))
    (call $kv_delete (local.get $at) (call $prefixed (local.get $key) (local.get $len))))

  ;; Starts only when the store's call answered -4 (the engine does not wait here).
  (func (export "otap_start") (param $ptr i32) (param $len i32) (result i32)
    (if (i32.eq (call $kv_set (i32.const 32) (i32.const 7) (i32.const 32) (i32.const 7) (i64.const -1))
                (i32.const -4))
      (then (return (i32.const 0))))
    (i32.const 1)))
