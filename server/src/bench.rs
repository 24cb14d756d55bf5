//! `crmkit bench`: figures for the store, printed as medians from one run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Subcommand;
use crmkit_core::id::DealId;
use crmkit_core::model::Deal;
use crmkit_core::store::Reader;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

#[derive(Subcommand)]
pub enum What {
    /// Bulk load of the demo, database open time, point reads of deals.
    Store {
        /// Deals in the demo that is loaded.
        #[arg(long, default_value_t = 1_000_000)]
        deals: usize,
        /// Where to build it (a temporary folder, removed afterwards, by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Point reads to time.
        #[arg(long, default_value_t = 200_000)]
        reads: usize,
        /// Page cache of the installation built, in MiB.
        #[arg(long, default_value_t = 4096)]
        cache_mb: u64,
        /// Record cache of the installation built, in MiB.
        #[arg(long, default_value_t = 1024)]
        record_cache_mb: u64,
        /// Measure an installation DIR already holds instead of building one.
        #[arg(long, requires = "dir")]
        reuse: bool,
    },
}

pub fn run(what: What) -> Result<()> {
    match what {
        What::Store { deals, dir, reads, reuse, cache_mb, record_cache_mb } => {
            store(deals, dir, reads, reuse, cache_mb, record_cache_mb)
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn store(
    deals: usize,
    dir: Option<PathBuf>,
    reads: usize,
    reuse: bool,
    cache_mb: u64,
    record_cache_mb: u64,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().join("bench"));
    if reuse {
        say!("crmkit bench store: the installation in {}", dir.display());
    } else {
        say!("crmkit bench store: demo with {deals} deals in {}", dir.display());
        let started = Instant::now();
        let summary = crate::make_demo(&dir, deals, 42, true, true, Some((cache_mb, record_cache_mb)))?;
        let load = started.elapsed();
        let entities = summary.entities();
        say!(
            "bulk load: {entities} entities in {:.2} s = {:.0} entities/s (with {} audit entries of updates)",
            load.as_secs_f64(),
            entities as f64 / load.as_secs_f64(),
            summary.audit_entries
        );
    }

    // Open time: each open is a fresh process-level open of the file.
    let mut opens = Vec::new();
    let mut inst_opens = Vec::new();
    let db = crmkit_core::config::Settings::load_installation(&dir)?;
    for _ in 0..7 {
        let t = Instant::now();
        let s = crmkit_core::store::Store::open(&db.database, Arc::new(db.clone()), Arc::new(SystemClock))?;
        opens.push(t.elapsed());
        drop(s);
        let t = Instant::now();
        let i = Installation::open(&dir, Arc::new(SystemClock))?;
        inst_opens.push(t.elapsed());
        drop(i);
    }
    let inst = Installation::open(&dir, Arc::new(SystemClock))?;
    let stats = inst.store().stats()?;
    say!("file size: {} ({} bytes)", crate::human_bytes(stats.file_bytes), stats.file_bytes);
    say!(
        "open database: median {:.2} ms (installation with config and user sync: {:.2} ms), 7 runs",
        median(opens).as_secs_f64() * 1e3,
        median(inst_opens).as_secs_f64() * 1e3
    );

    // Point reads by id, over ids spread across the whole table.
    let snap = inst.store().read()?;
    let mut ids: Vec<DealId> = Vec::with_capacity(deals);
    snap.for_each::<Deal>(|d| {
        ids.push(d.id);
        true
    })?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut pick = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ids[(state % ids.len() as u64) as usize]
    };
    // Warm: every deal read once, so pages and records are in memory as they are on a
    // server that has run a while.
    for id in &ids {
        std::hint::black_box(snap.get::<Deal>(*id)?);
    }
    let mut shared = Vec::with_capacity(reads);
    for _ in 0..reads {
        let id = pick();
        let t = Instant::now();
        let d = snap.get::<Deal>(id)?;
        shared.push(t.elapsed());
        std::hint::black_box(d);
    }
    // The parts of a read: the key-value lookup alone, and decoding alone.
    let table = crmkit_core::store::tables::entity_table(crmkit_core::model::EntityKind::Deal);
    let mut raw = Vec::with_capacity(reads / 4);
    let mut decode = Vec::with_capacity(reads / 4);
    for _ in 0..reads / 4 {
        let id = pick();
        let t = Instant::now();
        let bytes = snap.kv_get(table, &id.0.to_bytes())?.expect("listed id");
        raw.push(t.elapsed());
        let t = Instant::now();
        let d: Deal = crmkit_core::store::decode_record(&bytes)?;
        decode.push(t.elapsed());
        std::hint::black_box(d);
    }
    say!(
        "without the record cache: key-value lookup median {:.2} µs, decoding the record median {:.2} µs ({} bytes for this deal)",
        median(raw).as_secs_f64() * 1e6,
        median(decode).as_secs_f64() * 1e6,
        snap.kv_get(table, &ids[0].0.to_bytes())?.map_or(0, |b| b.len())
    );
    let mut shared_reads = Vec::with_capacity(reads);
    for _ in 0..reads {
        let id = pick();
        let t = Instant::now();
        let d = snap.get_shared::<Deal>(id)?;
        shared_reads.push(t.elapsed());
        std::hint::black_box(d);
    }
    let mut fresh = Vec::with_capacity(reads / 4);
    for _ in 0..reads / 4 {
        let id = pick();
        let t = Instant::now();
        let s = inst.store().read()?;
        let d = s.get::<Deal>(id)?;
        fresh.push(t.elapsed());
        std::hint::black_box(d);
    }
    say!(
        "point read of a deal by id (warm, {reads} random ids): shared record median {:.2} µs, p99 {:.2} µs; \
         owned copy median {:.2} µs, p99 {:.2} µs; owned, with a new snapshot per read: median {:.2} µs",
        median(shared_reads.clone()).as_secs_f64() * 1e6,
        percentile(&mut shared_reads, 0.99).as_secs_f64() * 1e6,
        median(shared.clone()).as_secs_f64() * 1e6,
        percentile(&mut shared, 0.99).as_secs_f64() * 1e6,
        median(fresh).as_secs_f64() * 1e6
    );
    Ok(())
}
