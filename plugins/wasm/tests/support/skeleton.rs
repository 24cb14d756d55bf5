//! The part every test module of a plugin has (plugins/ABI.md): memory, a bump allocator,
//! `$pack` and the version marker, written once for the host's tests, the integration tests
//! and the benchmarks, which include this file by path.
#![allow(dead_code)] // each includer uses what it needs

/// Memory, a bump allocator from 4096 growing the memory as needed, and `$pack (ptr, len) -> i64`.
pub const BASE: &str = r#"
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "crmkit_alloc") (param $len i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $len) (i32.const 65536)) (i32.const 1))))))
    (local.get $at))
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))
"#;

/// The ABI version 1 marker, apart from [`BASE`] so that a test can leave it out.
pub const MARKER: &str = r#"(func (export "crmkit_abi_v1"))"#;
