;; A bearer_token_authorizer guest, ABI version 1, in WebAssembly text.
;; Accepts `alpha-token` (identity `guest:alpha`) and `beta-token` (no identity: the
;; extension's id); `old-token` is denied expired, an empty credential missing, any other
;; invalid.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "alpha-token")
  (data (i32.const 32) "beta-token")
  (data (i32.const 48) "old-token")
  (data (i32.const 64) "guest:alpha")

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

  ;; Whether `len` bytes at `a` are the `blen` bytes at `b`.
  (func $eq (param $a i32) (param $len i32) (param $b i32) (param $blen i32) (result i32)
    (if (i32.ne (local.get $len) (local.get $blen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (if (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b)))
          (then (return (i32.const 0))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; >= 0: allowed, the identity at (result >> 32, result & 0xffffffff); -1 missing,
  ;; -2 invalid, -3 expired.
  (func (export "otap_authorize") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.eqz (local.get $len)) (then (return (i64.const -1))))
    (if (call $eq (local.get $ptr) (local.get $len) (i32.const 16) (i32.const 11))
      (then (return (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 11)))))
    (if (call $eq (local.get $ptr) (local.get $len) (i32.const 32) (i32.const 10))
      (then (return (i64.const 0))))
    (if (call $eq (local.get $ptr) (local.get $len) (i32.const 48) (i32.const 9))
      (then (return (i64.const -3))))
    (i64.const -2)))
