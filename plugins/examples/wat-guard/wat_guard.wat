;; A crmkit guard in WebAssembly text (plugin ABI version 1, plugins/ABI.md): refuses to put
;; a deal on hold (its input's transition has "how":"hold"), allows every other change.
;; wat2wasm wat_guard.wat -o wat_guard.wasm
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "crmkit_abi_v1"))
  ;; A bump allocator from 4096 up: each call runs in a fresh instance.
  (func (export "crmkit_alloc") (param $len i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.lt_s
              (memory.grow (i32.add (i32.div_u (local.get $len) (i32.const 65536)) (i32.const 1)))
              (i32.const 0))
          (then (return (i32.const 0))))))
    (local.get $at))
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
  ;; The needle, 12 bytes; the two answers.
  (data (i32.const 64) "\"how\":\"hold\"")
  (data (i32.const 128) "{\"reject\":\"deals are not put on hold here: move them on or close them\",\"field\":\"status\"}")
  (data (i32.const 256) "null")
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $j i32) (local $end i32)
    (local.set $end (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 12)))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (local.get $i) (local.get $end)))
        (local.set $j (i32.const 0))
        (block $miss
          (loop $cmp
            (br_if $miss (i32.ne (i32.load8_u (i32.add (local.get $i) (local.get $j)))
                                 (i32.load8_u (i32.add (i32.const 64) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (if (i32.eq (local.get $j) (i32.const 12))
              (then (return (call $pack (i32.const 128) (i32.const 88)))))
            (br $cmp)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (call $pack (i32.const 256) (i32.const 4))))
