;; Accepts the one credential its `config:` holds (the JSON text `otap_start` is handed: a
;; number, `config: 12345`, accepts `12345`); refuses to start without one.
(module
  (import "otap" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (global $len (mut i32) (i32.const 0))
  (data (i32.const 200) "configured")
  ;; The config is copied to 256.. (at most 512 bytes).
  (func (export "otap_start") (param $ptr i32) (param $len i32) (result i32)
    (if (i32.or (i32.gt_u (local.get $len) (i32.const 512))
                (i32.and (i32.eq (local.get $len) (i32.const 4))
                         (i32.eq (i32.load (local.get $ptr)) (i32.const 0x6c6c756e))))
      (then (return (i32.const 7))))
    (memory.copy (i32.const 256) (local.get $ptr) (local.get $len))
    (global.set $len (local.get $len))
    (call $log (i32.const 2) (i32.const 200) (i32.const 10))
    (i32.const 0))
  (func (export "otap_authorize") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)
    (if (i32.ne (local.get $len) (global.get $len)) (then (return (i64.const -2))))
    (block $done
      (loop $next
        (br_if $done (i32.eq (local.get $i) (local.get $len)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $ptr) (local.get $i)))
                    (i32.load8_u (i32.add (i32.const 256) (local.get $i))))
          (then (return (i64.const -2))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i64.const 0)))
