//! The funnel totals kept at write time: after random operations through the process
//! engine on a redb file they — the lines of each manager and each kind's rollup lines over
//! every manager — equal a recomputation written out here from the deal records and their
//! stage histories, a refused operation leaves them as they were, and the funnel read from
//! them is the funnel the history scan gives (the deal rows, and the rows of the tasks the
//! stages open, say what their records say after every operation); a write transaction sees its own writes in
//! them; `crmkit check` names a damaged line, of a manager or a rollup line; the funnel of
//! every manager reads the rollup lines, a manager's funnel that manager's lines; a head of
//! department's funnel over the API adds up their managers' lines only; a deleted deal takes
//! its lines away; lines of a stage config no longer lists send the funnel back to the
//! history.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::process::Command;
use std::sync::Arc;

use crmkit_core::analytics::Analytics;
use crmkit_core::hooks::Hooks;
use crmkit_core::id::{DealId, UserId};
use crmkit_core::model::{Deal, DealStatus, How};
use crmkit_core::process::{Engine, Outcome};
use crmkit_core::report::Reports;
use crmkit_core::store::kv::Changes;
use crmkit_core::store::tables::FUNNEL_TOTALS;
use crmkit_core::store::{Durability, FunnelKey, FunnelLine, FunnelRollupKey, FunnelTotals, Reader, Store};
use crmkit_core::time::SystemClock;
use crmkit_core::values::{Currency, Money};
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::common::{free_moving_settings as settings, new_deal, Backend, Fixture};

const DAY: i64 = 86_400_000;

/// Kinds with stages in the built-in config: a manual one, a managed one (its deals move
/// only along the route), another manual one.
const KINDS: [&str; 3] = ["b2b_sale", "tender", "repeat_sale"];

#[derive(Clone, Debug)]
enum Op {
    Create {
        kind: usize,
        manager: usize,
        cents: i64,
        usd: bool,
    },
    /// To the stage at this position of the kind's route (forward, back or where it is).
    Move {
        deal: usize,
        stage: usize,
    },
    Advance {
        deal: usize,
    },
    Won {
        deal: usize,
    },
    Lost {
        deal: usize,
    },
    Reopen {
        deal: usize,
    },
    Hold {
        deal: usize,
    },
    Resume {
        deal: usize,
    },
    Amount {
        deal: usize,
        cents: i64,
        usd: bool,
    },
    /// Above 100 is refused by validation.
    Probability {
        deal: usize,
        p: u8,
    },
    Reassign {
        deal: usize,
        manager: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let deal = 0usize..6;
    prop_oneof![
        2 => (0usize..3, 0usize..3, 0i64..500_000, any::<bool>())
            .prop_map(|(kind, manager, cents, usd)| Op::Create { kind, manager, cents, usd }),
        3 => (deal.clone(), 0usize..6).prop_map(|(deal, stage)| Op::Move { deal, stage }),
        3 => deal.clone().prop_map(|deal| Op::Advance { deal }),
        1 => deal.clone().prop_map(|deal| Op::Won { deal }),
        1 => deal.clone().prop_map(|deal| Op::Lost { deal }),
        1 => deal.clone().prop_map(|deal| Op::Reopen { deal }),
        1 => deal.clone().prop_map(|deal| Op::Hold { deal }),
        1 => deal.clone().prop_map(|deal| Op::Resume { deal }),
        1 => (deal.clone(), 0i64..500_000, any::<bool>()).prop_map(|(deal, cents, usd)| Op::Amount { deal, cents, usd }),
        1 => (deal.clone(), 0u8..130).prop_map(|(deal, p)| Op::Probability { deal, p }),
        1 => (deal, 0usize..3).prop_map(|(deal, manager)| Op::Reassign { deal, manager }),
    ]
}

fn money(cents: i64, usd: bool) -> Money {
    Money::new(Decimal::new(cents, 2), if usd { Currency::USD } else { Currency::RUB })
}

/// Runs one operation in a transaction that commits whatever it answers.
fn apply(
    fx: &Fixture,
    engine: &Engine,
    deals: &mut Vec<DealId>,
    managers: &[UserId],
    partner: crmkit_core::id::PartnerId,
    op: &Op,
) -> crmkit_core::Result<()> {
    let r = fx.store.read().unwrap();
    let current =
        |i: usize| -> Option<Deal> { deals.get(i % deals.len().max(1)).map(|id| r.get::<Deal>(*id).unwrap().unwrap()) };
    let target = match op {
        Op::Create { .. } => None,
        Op::Move { deal, .. }
        | Op::Advance { deal }
        | Op::Won { deal }
        | Op::Lost { deal }
        | Op::Reopen { deal }
        | Op::Hold { deal }
        | Op::Resume { deal }
        | Op::Amount { deal, .. }
        | Op::Probability { deal, .. }
        | Op::Reassign { deal, .. } => match current(*deal) {
            Some(d) => Some(d),
            None => return Ok(()),
        },
    };
    drop(r);
    let mut result = Ok(());
    let mut created = None;
    fx.store
        .transact(None, |tx| {
            result = (|| -> crmkit_core::Result<()> {
                let settings = tx.settings_arc();
                match op {
                    Op::Create { kind, manager, cents, usd } => {
                        let spec = settings.process_kind(KINDS[*kind]).unwrap();
                        let mut d = new_deal(partner, managers[*manager], 0);
                        d.kind = spec.id.clone();
                        d.stage = Some(spec.stages[0].id.clone());
                        d.amount = money(*cents, *usd);
                        created = Some(engine.create_deal(tx, d)?.id);
                    }
                    _ => {
                        let d = target.clone().expect("a deal");
                        let spec = settings.process_kind(&d.kind).unwrap();
                        match op {
                            Op::Move { stage, .. } => {
                                let to = spec.stages[*stage % spec.stages.len()].id.clone();
                                engine.move_deal(tx, d.id, d.version, &to, Some("by hand"))?;
                            }
                            Op::Advance { .. } => {
                                engine.advance(tx, d.id, d.version)?;
                            }
                            Op::Won { .. } => {
                                engine.close(tx, d.id, d.version, Outcome::Won { comment: String::new() })?;
                            }
                            Op::Lost { .. } => {
                                let reason = spec.loss_reasons[0].clone();
                                engine.close(
                                    tx,
                                    d.id,
                                    d.version,
                                    Outcome::Lost { reason, competitor: None, comment: String::new() },
                                )?;
                            }
                            Op::Reopen { .. } => {
                                engine.reopen(tx, d.id, d.version, None, "back")?;
                            }
                            Op::Hold { .. } => {
                                engine.hold(tx, d.id, d.version, "waits")?;
                            }
                            Op::Resume { .. } => {
                                engine.resume(tx, d.id, d.version, "")?;
                            }
                            Op::Amount { cents, usd, .. } => {
                                let mut d = d;
                                d.amount = money(*cents, *usd);
                                engine.update(tx, d)?;
                            }
                            Op::Probability { p, .. } => {
                                let mut d = d;
                                d.probability = Some(*p);
                                engine.update(tx, d)?;
                            }
                            Op::Reassign { manager, .. } => {
                                let mut d = d;
                                d.manager = managers[*manager];
                                engine.update(tx, d)?;
                            }
                            Op::Create { .. } => unreachable!(),
                        }
                    }
                }
                Ok(())
            })();
            Ok(())
        })
        .unwrap();
    deals.extend(created);
    result
}

/// The totals as this test works them out from the records and histories: per deal, the
/// stages some step entered (a creation, a reopening, or a step to another stage), whether
/// a step won it, and where it stands now.
fn naive(r: &impl Reader) -> BTreeMap<FunnelKey, FunnelTotals> {
    let mut out: BTreeMap<FunnelKey, FunnelTotals> = BTreeMap::new();
    for d in r.list::<Deal>(None, usize::MAX).unwrap() {
        let history = r.stage_history(d.id).unwrap();
        let (c, a) = (d.amount.currency, d.amount.amount);
        let key = |line| FunnelKey { kind: d.kind.clone(), manager: d.manager, line };
        let count = |t: &mut FunnelTotals| {
            t.deals += 1;
            *t.amount.entry(c).or_default() += a;
            t.won += (d.status == DealStatus::Won) as i64;
            t.lost += (d.status == DealStatus::Lost) as i64;
        };
        let all = out.entry(key(FunnelLine::Deals)).or_default();
        count(all);
        *all.currencies.entry(c).or_default() += 1;
        let spec = r.settings().process_kind(&d.kind).unwrap();
        let mut any = false;
        for s in &spec.stages {
            let entered = history.iter().any(|step| {
                step.to_stage.as_deref() == Some(s.id.as_str())
                    && (matches!(step.how, How::Create | How::Reopen) || step.from_stage != step.to_stage)
            });
            if entered {
                any = true;
                count(out.entry(key(FunnelLine::Stage(s.id.clone()))).or_default());
            }
            if d.stage.as_deref() == Some(s.id.as_str()) && !d.status.is_closed() {
                let t = out.entry(key(FunnelLine::Stage(s.id.clone()))).or_default();
                t.open += 1;
                *t.open_amount.entry(c).or_default() += a;
                if let Some(p) = d.probability {
                    *t.weighted.entry(c).or_default() += a * Decimal::from(p) / Decimal::from(100);
                    t.expected_wins += Decimal::from(p) / Decimal::from(100);
                }
            }
        }
        if any {
            count(out.entry(key(FunnelLine::Reached)).or_default());
        }
        if history.iter().any(|s| s.how == How::Won) {
            count(out.entry(key(FunnelLine::Won)).or_default());
        }
    }
    // What sums to nothing is not kept.
    for t in out.values_mut() {
        for m in [&mut t.amount, &mut t.open_amount, &mut t.weighted] {
            m.retain(|_, v| !v.is_zero());
        }
    }
    out.retain(|_, t| *t != FunnelTotals::default());
    out
}

/// The rollup lines as this test works them out: the lines of `naive`, summed per kind and
/// line over the managers.
fn naive_rollup(lines: &BTreeMap<FunnelKey, FunnelTotals>) -> BTreeMap<FunnelRollupKey, FunnelTotals> {
    let mut out: BTreeMap<FunnelRollupKey, FunnelTotals> = BTreeMap::new();
    for (k, t) in lines {
        let sum = out.entry(FunnelRollupKey { kind: k.kind.clone(), line: k.line.clone() }).or_default();
        sum.deals += t.deals;
        sum.won += t.won;
        sum.lost += t.lost;
        sum.open += t.open;
        sum.expected_wins += t.expected_wins;
        for (into, from) in
            [(&mut sum.amount, &t.amount), (&mut sum.open_amount, &t.open_amount), (&mut sum.weighted, &t.weighted)]
        {
            for (c, a) in from {
                *into.entry(*c).or_default() += *a;
            }
        }
        for (c, n) in &t.currencies {
            *sum.currencies.entry(*c).or_default() += n;
        }
    }
    for t in out.values_mut() {
        for m in [&mut t.amount, &mut t.open_amount, &mut t.weighted] {
            m.retain(|_, v| !v.is_zero());
        }
    }
    out.retain(|_, t| *t != FunnelTotals::default());
    out
}

/// The funnel of `store` with `params`, as CSV.
fn funnel(store: &Store, params: &[(&str, &str)]) -> String {
    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let table = reports.run("funnel", &params, &store.read().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(table.to_csv()).unwrap()
}

/// The stored rows of the totals table, raw.
fn stored_rows(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rows = Vec::new();
    store
        .read()
        .unwrap()
        .kv_scan(FUNNEL_TOTALS, Bound::Unbounded, Bound::Unbounded, false, &mut |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    rows
}

fn run_random(ops: Vec<Op>) {
    let fx = Fixture::on_with(Backend::Redb, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, first) = fx.client("Альфа");
    let managers = [first, fx.user("petrov"), fx.user("sidorova")];
    let mut deals = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for op in &ops {
        fx.clock.advance(DAY / 3);
        let before = stored_rows(&fx.store);
        match apply(&fx, &engine, &mut deals, &managers, partner.id, op) {
            Ok(()) => accepted += 1,
            Err(e) => {
                refused += 1;
                assert_eq!(stored_rows(&fx.store), before, "{op:?} was refused ({e}) but changed the totals");
            }
        }
        let r = fx.store.read().unwrap();
        let lines = naive(&r);
        assert_eq!(r.funnel_totals(None).unwrap(), lines, "after {op:?}");
        assert_eq!(r.funnel_rollup(None).unwrap(), naive_rollup(&lines), "rollup lines after {op:?}");
        crate::scan_rows::assert_rows_match(&r);
        // The stage tasks the engine opens, finishes and cancels keep their rows too.
        crate::interaction_rows::assert_rows_match(&r);
    }
    let r = fx.store.read().unwrap();
    let rollup = naive_rollup(&naive(&r));
    for kind in KINDS {
        let of_kind: BTreeMap<_, _> =
            rollup.iter().filter(|(k, _)| k.kind == kind).map(|(k, t)| (k.clone(), t.clone())).collect();
        assert_eq!(r.funnel_rollup(Some(kind)).unwrap(), of_kind, "{kind}");
    }
    drop(r);
    assert_eq!(fx.store.verify_funnel_totals().unwrap(), Vec::<String>::new());
    // The funnel read from the totals is the funnel the scan gives (a period from long ago
    // takes the scan and counts the same steps).
    let login = fx.store.read().unwrap().get::<crmkit_core::model::User>(managers[1]).unwrap().unwrap().login;
    for params in [vec![], vec![("kind", "b2b_sale")], vec![("kind", "tender")], vec![("manager", login.as_str())]] {
        let mut scanned = params.clone();
        scanned.push(("from", "1900-01-01"));
        assert_eq!(funnel(&fx.store, &params), funnel(&fx.store, &scanned), "{params:?}");
    }
    // Not every operation may be refused: the sequence must have written something.
    assert!(accepted > 0 || ops.iter().all(|o| !matches!(o, Op::Create { .. })), "{refused} refused, none accepted");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn after_any_operations_the_totals_equal_a_recomputation_from_the_history(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        run_random(ops);
    }
}

#[test]
fn refusals_of_every_sort_leave_the_totals_as_they_were() {
    let fx = Fixture::on_with(Backend::Redb, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, manager) = fx.client("Альфа");
    let managers = [manager, manager, manager];
    let mut deals = Vec::new();
    let create = |kind| Op::Create { kind, manager: 0, cents: 100_000, usd: false };
    apply(&fx, &engine, &mut deals, &managers, partner.id, &create(0)).unwrap();
    apply(&fx, &engine, &mut deals, &managers, partner.id, &create(1)).unwrap();
    let before = fx.dump();
    for (op, says) in [
        // Validation: a probability above 100.
        (Op::Probability { deal: 0, p: 120 }, "probability"),
        // The engine: a tender moves along its route only.
        (Op::Move { deal: 1, stage: 3 }, "cannot move from stage \"announcement\" to \"bid\""),
        // The engine: a deal in progress is not reopened.
        (Op::Reopen { deal: 0 }, ""),
    ] {
        let err = apply(&fx, &engine, &mut deals, &managers, partner.id, &op).expect_err("refused");
        assert!(err.to_string().contains(says), "{op:?}: {err}");
        assert!(fx.dump() == before, "{op:?} was refused ({err}) but changed the database");
    }
    assert_eq!(fx.store.verify_funnel_totals().unwrap(), Vec::<String>::new());
}

#[test]
fn a_write_transaction_reads_the_totals_with_its_own_writes() {
    let fx = Fixture::on_with(Backend::Memory, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, manager) = fx.client("Альфа");
    let before = fx.store.read().unwrap().funnel_totals(None).unwrap();
    assert!(before.is_empty());
    let mut tx = fx.store.write(Some(manager)).unwrap();
    let qualification = FunnelKey { kind: "b2b_sale".into(), manager, line: FunnelLine::Stage("qualification".into()) };
    let d = engine.create_deal(&mut tx, new_deal(partner.id, manager, 700)).unwrap();
    engine.move_deal(&mut tx, d.id, d.version, "needs_analysis", None).unwrap();
    let seen = tx.funnel_totals(Some("b2b_sale")).unwrap();
    assert_eq!(seen, naive(&tx));
    let seen_rollup = tx.funnel_rollup(Some("b2b_sale")).unwrap();
    assert_eq!(seen_rollup, naive_rollup(&seen));
    assert_eq!(tx.funnel_rollup(None).unwrap(), seen_rollup);
    let needs_analysis =
        FunnelKey { kind: "b2b_sale".into(), manager, line: FunnelLine::Stage("needs_analysis".into()) };
    assert_eq!((seen[&needs_analysis].deals, seen[&needs_analysis].open), (1, 1));
    assert_eq!((seen[&qualification].deals, seen[&qualification].open), (1, 0));
    // Other readers see nothing of it until it commits, and everything after.
    assert!(fx.store.read().unwrap().funnel_totals(None).unwrap().is_empty());
    assert!(fx.store.read().unwrap().funnel_rollup(None).unwrap().is_empty());
    tx.commit().unwrap();
    assert_eq!(fx.store.read().unwrap().funnel_totals(Some("b2b_sale")).unwrap(), seen);
    assert_eq!(fx.store.read().unwrap().funnel_rollup(Some("b2b_sale")).unwrap(), seen_rollup);
}

#[test]
fn check_names_a_damaged_line_with_both_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    crmkit::make_demo(&dir, 200, 7, false, false, Some((16, 16)), false).unwrap();
    let ok = Command::new(crate::cli::binary()).args(["check", dir.to_str().unwrap()]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("funnel totals, scan rows and heads match the deals"));
    // The funnel of the demo, read from the totals and scanned, is the same.
    let analytics = |extra: &[&str]| {
        let mut args = vec!["analytics", "funnel", dir.to_str().unwrap(), "--format", "csv"];
        args.extend(extra);
        let o = Command::new(crate::cli::binary()).args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert_eq!(analytics(&[]), analytics(&["--from", "1900-01-01"]));

    // Damage one line behind the store's back: the first stage's line of one manager gets
    // the value of another line.
    let path = dir.join("data/crmkit.redb");
    let store = Store::open(&path, Arc::new(settings()), Arc::new(SystemClock)).unwrap();
    let lines = store.read().unwrap().funnel_totals(Some("b2b_sale")).unwrap();
    let (key, line) = lines
        .iter()
        .find(|(k, t)| k.line == FunnelLine::Stage("qualification".into()) && t.deals > 1)
        .expect("a manager with deals in qualification");
    let mut rows = stored_rows(&store);
    let at = rows
        .iter()
        .position(|(k, v)| {
            k.starts_with(b"b2b_sale\0")
                && k.ends_with(b"qualification")
                && crmkit_core::store::decode_record::<FunnelTotals>(v).unwrap() == *line
        })
        .expect("the stored line");
    let (raw_key, _) = rows.remove(at);
    let (_, other) = rows.iter().find(|(k, _)| k.starts_with(b"b2b_sale\0")).expect("another line").clone();
    let damaged: FunnelTotals = crmkit_core::store::decode_record(&other).unwrap();
    assert_ne!(damaged, *line);
    let kv = store.into_backend();
    let mut changes = Changes::new();
    changes.put(FUNNEL_TOTALS, raw_key, other);
    kv.write().unwrap().commit(changes, Durability::Immediate).unwrap();
    drop(kv);

    let o = Command::new(crate::cli::binary()).args(["check", dir.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    let want = format!("funnel totals problem: funnel totals of {key}: stored {damaged}; the records say {line}");
    assert!(said.contains(&want), "{said}\nwanted: {want}");
    assert!(said.contains("1 funnel totals problem(s)"), "{said}");
}

#[test]
fn the_funnel_of_every_manager_reads_the_rollup_lines_and_check_names_a_damaged_one() {
    let fx = Fixture::on_with(Backend::Memory, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, first) = fx.client("Альфа");
    let second = fx.user("petrov");
    for (manager, amount) in [(first, 100), (second, 200), (second, 300)] {
        fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, amount))).unwrap();
    }
    let r = fx.store.read().unwrap();
    let rollup = r.funnel_rollup(Some("b2b_sale")).unwrap();
    let qualification = FunnelRollupKey { kind: "b2b_sale".into(), line: FunnelLine::Stage("qualification".into()) };
    let line = rollup[&qualification].clone();
    assert_eq!((line.deals, line.open), (3, 3));
    let login = r.get::<crmkit_core::model::User>(second).unwrap().unwrap().login;
    drop(r);
    let every = funnel(&fx.store, &[]);
    let of_second = funnel(&fx.store, &[("manager", login.as_str())]);
    assert_ne!(every, of_second);

    // The rollup line of the first stage, under its documented key (0, kind, 0, tag 3,
    // stage), gets the value of the kind's rollup line of all deals.
    let rows = stored_rows(&fx.store);
    let raw_key = [&[0u8][..], b"b2b_sale\0", &[3], b"qualification"].concat();
    let all_deals = [&[0u8][..], b"b2b_sale\0", &[0]].concat();
    assert!(rows.iter().any(|(k, _)| *k == raw_key), "{rows:02x?}");
    let (_, other) = rows.iter().find(|(k, _)| *k == all_deals).expect("the rollup line of all deals").clone();
    let damaged: FunnelTotals = crmkit_core::store::decode_record(&other).unwrap();
    assert_ne!(damaged, line);
    let clock = fx.clock.clone();
    let kv = fx.store.into_backend();
    let mut changes = Changes::new();
    changes.put(FUNNEL_TOTALS, raw_key, other);
    kv.write().unwrap().commit(changes, Durability::Immediate).unwrap();
    let store = Store::with_backend(kv, Arc::new(settings()), clock).unwrap();

    assert_eq!(
        store.verify_funnel_totals().unwrap(),
        vec![format!(
            "funnel totals of kind \"b2b_sale\", every manager, stage \"qualification\": stored {damaged}; the records say {line}"
        )]
    );
    // The funnel of every manager (of every kind or one) is read from the rollup lines: it
    // shows the damage, the scan does not; a manager's funnel reads that manager's lines.
    assert_ne!(funnel(&store, &[]), every);
    assert_ne!(
        funnel(&store, &[("kind", "b2b_sale")]),
        funnel(&store, &[("kind", "b2b_sale"), ("from", "1900-01-01")])
    );
    assert_eq!(funnel(&store, &[("from", "1900-01-01")]), every);
    assert_eq!(funnel(&store, &[("manager", login.as_str())]), of_second);
}

#[test]
fn a_heads_funnel_from_the_totals_is_the_scanned_funnel_of_their_department() {
    let office = crate::api::Office::new();
    crate::api::two_of_everything(&office);
    let server = crate::api::Served::start(&office.site);
    for login in ["head", "boss"] {
        let (status, totals) = server.request("GET", "/api/v1/analytics/funnel", Some(office.token(login)));
        assert_eq!(status, 200, "{totals}");
        let (_, scanned) = server.request("GET", "/api/v1/analytics/funnel?from=1900-01-01", Some(office.token(login)));
        assert_eq!(totals, scanned, "{login}");
    }
    let (_, head) = server.request("GET", "/api/v1/analytics/funnel?kind=b2b_sale", Some(office.token("head")));
    let (_, boss) = server.request("GET", "/api/v1/analytics/funnel?kind=b2b_sale", Some(office.token("boss")));
    assert_eq!((head["rows"][0][4].clone(), boss["rows"][0][4].clone()), (1.into(), 2.into()));
}

#[test]
fn a_deleted_deal_takes_its_lines_away() {
    let fx = Fixture::on_with(Backend::Memory, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, manager) = fx.client("Альфа");
    let kept =
        fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, 300))).unwrap();
    let before = fx.store.read().unwrap().funnel_totals(None).unwrap();
    let gone =
        fx.store.transact(Some(manager), |tx| engine.create_deal(tx, new_deal(partner.id, manager, 500))).unwrap();
    assert_ne!(fx.store.read().unwrap().funnel_totals(None).unwrap(), before);
    fx.store.transact(Some(manager), |tx| tx.delete::<Deal>(gone.id, gone.version)).unwrap();
    assert_eq!(fx.store.read().unwrap().funnel_totals(None).unwrap(), before);
    assert_eq!(naive(&fx.store.read().unwrap()), before);
    assert_eq!(fx.store.read().unwrap().funnel_rollup(None).unwrap(), naive_rollup(&before));
    let _ = kept;
}

#[test]
fn a_stage_config_no_longer_lists_sends_the_funnel_to_the_history() {
    let fx = Fixture::on_with(Backend::Memory, settings());
    let engine = Engine::new(fx.store.settings(), Hooks::new()).unwrap();
    let (partner, manager) = fx.client("Альфа");
    for amount in [100, 200] {
        fx.store
            .transact(Some(manager), |tx| {
                let d = engine.create_deal(tx, new_deal(partner.id, manager, amount))?;
                engine.move_deal(tx, d.id, d.version, "needs_analysis", None)
            })
            .unwrap();
    }
    // The same data under a config whose b2b sale has no stage "needs_analysis" any more.
    let mut narrower = settings();
    let sale = narrower.process_kinds.iter_mut().find(|k| k.id == "b2b_sale").unwrap();
    sale.stages.retain(|s| s.id != "needs_analysis");
    let clock = fx.clock.clone();
    let store = Store::with_backend(fx.store.into_backend(), Arc::new(narrower), clock).unwrap();
    let lines = store.read().unwrap().funnel_totals(Some("b2b_sale")).unwrap();
    assert!(lines.keys().any(|k| k.line == FunnelLine::Stage("needs_analysis".into())));
    let now = funnel(&store, &[("kind", "b2b_sale")]);
    assert_eq!(now, funnel(&store, &[("kind", "b2b_sale"), ("from", "1900-01-01")]));
    // The scan leaves the steps into the stage it does not know out: the deals reached the
    // first stage and are open in none of the stages listed.
    let first = now.lines().nth(1).unwrap();
    assert!(first.starts_with("b2b_sale,stage,qualification,Qualification,2,,100.00,0,"), "{now}");
}
