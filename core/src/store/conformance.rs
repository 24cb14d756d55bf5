//! Every backend keeps the promises of `kv` alike: the same checks run on the redb file and
//! on memory, so a third backend is tested by adding it to [`backends`].

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::kv::{Backend, Changes, Durability, KvRead};
use super::memory::MemoryBackend;
use super::redb::{RedbBackend, RedbOptions};
use super::tables::{Table, AUDIT, META};

/// Backends by name.
type Named = Vec<(&'static str, Box<dyn Backend>)>;

/// A fresh, empty instance of each backend, with its name; the folder keeps the file.
fn backends() -> (tempfile::TempDir, Named) {
    let dir = tempfile::tempdir().expect("temp dir");
    let redb =
        RedbBackend::create(&dir.path().join("kv.redb"), RedbOptions { cache_bytes: 1 << 20, quick_repair: true })
            .expect("create redb file");
    (dir, vec![("redb", Box::new(redb)), ("memory", Box::new(MemoryBackend::new()))])
}

/// Runs `check` on each backend; a failure names the backend.
fn on_each(check: impl Fn(&dyn Backend) -> Result<(), String>) {
    let (_dir, backends) = backends();
    for (name, backend) in backends {
        if let Err(m) = check(backend.as_ref()) {
            panic!("{name} backend: {m}");
        }
    }
}

fn commit(b: &dyn Backend, f: impl FnOnce(&mut Changes)) {
    let w = b.write().expect("writer");
    let mut c = Changes::new();
    f(&mut c);
    w.commit(c, Durability::Immediate).expect("commit");
}

fn put(c: &mut Changes, t: Table, k: &str, v: &str) {
    c.put(t, k.as_bytes().to_vec(), v.as_bytes().to_vec());
}

fn get(r: &dyn KvRead, t: Table, k: &str) -> Option<String> {
    r.get(t, k.as_bytes()).expect("get").map(|v| String::from_utf8(v).expect("utf-8"))
}

fn keys(r: &dyn KvRead, t: Table, from: Bound<&str>, to: Bound<&str>, reverse: bool) -> Vec<String> {
    let mut out = Vec::new();
    let (from, to) = (from.map(str::as_bytes), to.map(str::as_bytes));
    r.scan(t, from, to, reverse, &mut |k, _| {
        out.push(String::from_utf8(k.to_vec()).expect("utf-8"));
        true
    })
    .expect("scan");
    out
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

#[test]
fn tables_are_ordered_maps() {
    use Bound::{Excluded as Ex, Included as In, Unbounded as Un};
    on_each(|b| {
        let empty = b.read().map_err(|e| e.to_string())?;
        same("an empty table's length", empty.len(AUDIT).map_err(|e| e.to_string())?, 0)?;
        same("an empty table's keys", keys(empty.as_ref(), AUDIT, Un, Un, false), vec![])?;
        commit(b, |c| {
            for k in ["b", "d", "a", "c", "e"] {
                put(c, AUDIT, k, &k.to_uppercase());
            }
            put(c, META, "c", "meta");
        });
        commit(b, |c| {
            c.delete(AUDIT, b"e".to_vec());
            c.delete(AUDIT, b"nothing".to_vec());
            put(c, AUDIT, "a", "A2");
        });
        let r = b.read().map_err(|e| e.to_string())?;
        let r = r.as_ref();
        same("a value", get(r, AUDIT, "a"), Some("A2".into()))?;
        same("a deleted key", get(r, AUDIT, "e"), None)?;
        same("the same key in another table", get(r, META, "c"), Some("meta".into()))?;
        same("contains", r.contains(AUDIT, b"b").map_err(|e| e.to_string())?, true)?;
        same("length", r.len(AUDIT).map_err(|e| e.to_string())?, 4)?;
        same("all keys", keys(r, AUDIT, Un, Un, false), list(&["a", "b", "c", "d"]))?;
        same("all keys backwards", keys(r, AUDIT, Un, Un, true), list(&["d", "c", "b", "a"]))?;
        same("[b, d)", keys(r, AUDIT, In("b"), Ex("d"), false), list(&["b", "c"]))?;
        same("(b, d] backwards", keys(r, AUDIT, Ex("b"), In("d"), true), list(&["d", "c"]))?;
        same("from bb", keys(r, AUDIT, In("bb"), Un, false), list(&["c", "d"]))?;
        same("[c, c]", keys(r, AUDIT, In("c"), In("c"), false), list(&["c"]))?;
        same("[c, c)", keys(r, AUDIT, In("c"), Ex("c"), false), Vec::<String>::new())?;
        let mut first = Vec::new();
        r.scan(AUDIT, Un, Un, false, &mut |k, _| {
            first.push(k.to_vec());
            false
        })
        .map_err(|e| e.to_string())?;
        same("a scan stopped at once", first, vec![b"a".to_vec()])
    });
}

#[test]
fn snapshots_never_see_later_commits() {
    on_each(|b| {
        commit(b, |c| put(c, AUDIT, "k", "1"));
        let before = b.read().map_err(|e| e.to_string())?;
        commit(b, |c| {
            put(c, AUDIT, "k", "2");
            put(c, AUDIT, "new", "x");
        });
        let after = b.read().map_err(|e| e.to_string())?;
        commit(b, |c| c.delete(AUDIT, b"k".to_vec()));
        same("the old snapshot", get(before.as_ref(), AUDIT, "k"), Some("1".into()))?;
        same(
            "the old snapshot's keys",
            keys(before.as_ref(), AUDIT, Bound::Unbounded, Bound::Unbounded, false),
            vec!["k".into()],
        )?;
        same("the middle snapshot", get(after.as_ref(), AUDIT, "k"), Some("2".into()))?;
        same("a fresh snapshot", get(b.read().map_err(|e| e.to_string())?.as_ref(), AUDIT, "k"), None)
    });
}

#[test]
fn a_dropped_write_writes_nothing_and_frees_the_writer() {
    on_each(|b| {
        commit(b, |c| put(c, AUDIT, "k", "1"));
        let w = b.write().map_err(|e| e.to_string())?;
        same("the writer's base", get(w.base(), AUDIT, "k"), Some("1".into()))?;
        drop(w);
        let w = b.write().map_err(|e| e.to_string())?;
        drop(w);
        same(
            "after two dropped writes",
            get(b.read().map_err(|e| e.to_string())?.as_ref(), AUDIT, "k"),
            Some("1".into()),
        )
    });
}

#[test]
fn taking_back_a_savepoint_leaves_the_writes_before_it() {
    on_each(|b| {
        let w = b.write().map_err(|e| e.to_string())?;
        let mut c = Changes::new();
        put(&mut c, AUDIT, "kept", "1");
        put(&mut c, AUDIT, "changed", "before");
        let outer = c.mark();
        put(&mut c, AUDIT, "changed", "inside");
        c.delete(AUDIT, b"kept".to_vec());
        let inner = c.mark();
        put(&mut c, AUDIT, "inner", "x");
        c.rollback(inner);
        put(&mut c, AUDIT, "after inner", "y");
        c.rollback(outer);
        c.stop_recording();
        put(&mut c, AUDIT, "last", "z");
        w.commit(c, Durability::Immediate).map_err(|e| e.to_string())?;
        let r = b.read().map_err(|e| e.to_string())?;
        same(
            "keys",
            keys(r.as_ref(), AUDIT, Bound::Unbounded, Bound::Unbounded, false),
            vec!["changed".into(), "kept".into(), "last".into()],
        )?;
        same("a value changed in the savepoint", get(r.as_ref(), AUDIT, "changed"), Some("before".into()))
    });
}

#[test]
fn writers_take_turns_and_start_from_the_last_commit() {
    on_each(|b| {
        commit(b, |c| put(c, AUDIT, "n", "0"));
        let first = b.write().map_err(|e| e.to_string())?;
        let second_started = AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            let second = s.spawn(|| {
                let w = b.write().expect("second writer");
                second_started.store(true, Ordering::SeqCst);
                get(w.base(), AUDIT, "n")
            });
            std::thread::sleep(Duration::from_millis(100));
            let waited = !second_started.load(Ordering::SeqCst);
            let mut c = Changes::new();
            put(&mut c, AUDIT, "n", "1");
            first.commit(c, Durability::Immediate).expect("first commit");
            (waited, second.join().expect("second writer"))
        });
        same("the second writer waited for the first", seen.0, true)?;
        same("the second writer's base", seen.1, Some("1".into()))
    });
}

#[test]
fn a_commit_is_seen_whole_or_not_at_all() {
    // Two keys always change together; readers on other threads must never see them differ.
    on_each(|b| {
        commit(b, |c| {
            put(c, AUDIT, "a", "0");
            put(c, AUDIT, "b", "0");
        });
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut last = 0u32;
                        while !done.load(Ordering::SeqCst) {
                            let r = b.read().expect("snapshot");
                            let (a, bb) = (get(r.as_ref(), AUDIT, "a"), get(r.as_ref(), AUDIT, "b"));
                            if a != bb {
                                return Err(format!("a snapshot saw a = {a:?}, b = {bb:?}"));
                            }
                            let n: u32 = a.expect("a").parse().expect("number");
                            if n < last {
                                return Err(format!("a later snapshot saw {n} after {last}"));
                            }
                            last = n;
                        }
                        Ok(())
                    })
                })
                .collect();
            for i in 1..=200u32 {
                commit(b, |c| {
                    put(c, AUDIT, "a", &i.to_string());
                    put(c, AUDIT, "b", &i.to_string());
                });
            }
            done.store(true, Ordering::SeqCst);
            readers.into_iter().try_for_each(|r| r.join().expect("reader"))
        })
    });
}
