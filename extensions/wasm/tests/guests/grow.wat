;; Grows its memory by 2 MiB, then allows: under a lower memory limit the growth traps (and
;; the request is denied); under a higher one it allows.
(module
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "otap_authorize") (param i32 i32) (result i64)
    (drop (memory.grow (i32.const 32)))
    (i64.const 0)))
