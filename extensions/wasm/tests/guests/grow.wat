;; Grows its memory a page at a time until the host's limit stops it (a trap).
(module
  (memory (export "memory") 1)
  (func (export "otap_abi_version") (result i32) (i32.const 1))
  (func (export "otap_alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "otap_authorize") (param i32 i32) (result i64)
    (loop $more
      (drop (memory.grow (i32.const 16)))
      (br $more))
    (i64.const 0)))
