//! The built-in win-probability model: its rates and probabilities on a small history worked
//! out by hand, the factors summing to the score, the native `deal.score` handler bound in
//! config scoring deals on write (and a Rhai script replacing it for one kind), the
//! calibration report on synthetic deals whose true win probabilities are known,
//! `[analytics.win_probability]`'s mistakes named, and both reports through the CLI and the API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crmkit_core::analytics::model::{self, Model, HANDLER};
use crmkit_core::analytics::{Analytics, AnalyticsWithHooks};
use crmkit_core::config::{ScoringMethod, Settings, DEFAULT_CONFIG};
use crmkit_core::hooks::{Answer, HookInput, HookPoint, Hooks, Reply, Score, Subject};
use crmkit_core::id::{PartnerId, UserId};
use crmkit_core::model::{Deal, DealStatus, How, Partner, PartnerRole, Role, ScoreFactor, User};
use crmkit_core::process::{Engine, ImportStep, Outcome};
use crmkit_core::report::{cell_text, Reports};
use crmkit_core::store::{Reader, Store};
use crmkit_core::time::Timestamp;
use serde_json::{json, Value};

use crate::common::{new_deal, Backend, Fixture, T0};

const DAY: i64 = 86_400_000;

/// The settings of the hand-worked history: α = 1, m = 2, at least 2 closed deals.
const MODEL: &str = r#"
[analytics.win_probability]
method = "stages"
fields = ["stage", "manager", "source"]
smoothing = 1
prior_weight = 2
min_deals = 2
refit_minutes = 60
"#;

fn settings(extra: &str) -> Settings {
    let text = format!("{DEFAULT_CONFIG}\n{extra}");
    Settings::parse(&text, Path::new("config/crmkit.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// What the history is made with.
struct Shop {
    fx: Fixture,
    ann: UserId,
    bob: UserId,
    client: PartnerId,
}

impl Shop {
    fn new(settings: Settings) -> Shop {
        let fx = Fixture::on_with(Backend::Redb, settings);
        let user = |login: &str| {
            fx.store.transact(None, |tx| Ok(tx.create(User::new(login, login.to_uppercase(), Role::Manager))?.id))
        };
        let (ann, bob) = (user("ann").unwrap(), user("bob").unwrap());
        let client =
            fx.store.transact(None, |tx| Ok(tx.create(Partner::new("Ромашка", PartnerRole::Client))?.id)).unwrap();
        Shop { fx, ann, bob, client }
    }

    fn run(
        &self,
        who: UserId,
        f: &mut dyn FnMut(&mut crmkit_core::store::WriteTxn<'_>) -> crmkit_core::Result<Deal>,
    ) -> Deal {
        self.fx.store.transact(Some(who), |tx| f(tx)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A repeat sale of `amount` from `source`, moved through `stages` after its first,
    /// then won, lost or left open; one day per step.
    fn deal(&self, e: &Engine, manager: UserId, source: &str, amount: i64, stages: &[&str], end: Option<bool>) -> Deal {
        let mut d = new_deal(self.client, manager, amount);
        d.kind = "repeat_sale".into();
        d.stage = None;
        d.source = Some(source.into());
        let mut d = self.run(manager, &mut |tx| e.create_deal(tx, d.clone()));
        for s in stages {
            self.fx.clock.advance(DAY);
            d = self.run(manager, &mut |tx| e.move_deal(tx, d.id, d.version, s, None));
        }
        self.fx.clock.advance(DAY);
        match end {
            Some(true) => {
                self.run(manager, &mut |tx| e.close(tx, d.id, d.version, Outcome::Won { comment: String::new() }))
            }
            Some(false) => self.run(manager, &mut |tx| {
                e.close(
                    tx,
                    d.id,
                    d.version,
                    Outcome::Lost { reason: "price".into(), competitor: None, comment: String::new() },
                )
            }),
            None => d,
        }
    }

    /// The history, each deal a repeat sale of the one client (stages request → quote → order):
    ///
    /// | deal | manager | source   | reached                | end  |
    /// |------|---------|----------|------------------------|------|
    /// | D1   | ann     | referral | request, quote, order  | won  |
    /// | D2   | ann     | referral | request, quote         | won  |
    /// | D3   | ann     | website  | request                | lost |
    /// | D4   | bob     | website  | request, quote         | lost |
    /// | D5   | bob     | referral | request                | lost |
    /// | D6   | ann     | website  | request, quote, order  | won  |
    /// | D7   | ann     | website  | request, quote         | open, 100000 |
    /// | D8   | bob     | cold_call| request                | open, 50000  |
    ///
    /// Closed: 6, won 3. Reached then closed: request 6 (3 won), quote 4 (3 won: D1, D2, D6;
    /// D4 lost), order 2 (2 won). ann 4 closed, 3 won; bob 2 closed, 0 won. referral 3
    /// closed, 2 won; website 3 closed, 1 won; cold_call none.
    fn history(&self, e: &Engine) -> (Deal, Deal) {
        let (ann, bob) = (self.ann, self.bob);
        self.deal(e, ann, "referral", 10_000, &["quote", "order"], Some(true));
        self.deal(e, ann, "referral", 10_000, &["quote"], Some(true));
        self.deal(e, ann, "website", 10_000, &[], Some(false));
        self.deal(e, bob, "website", 10_000, &["quote"], Some(false));
        self.deal(e, bob, "referral", 10_000, &[], Some(false));
        self.deal(e, ann, "website", 10_000, &["quote", "order"], Some(true));
        self.fx.clock.advance(DAY);
        let d7 = self.deal(e, ann, "website", 100_000, &["quote"], None);
        let d8 = self.deal(e, bob, "cold_call", 50_000, &[], None);
        (d7, d8)
    }

    fn model(&self) -> Model {
        let r = self.fx.store.read().unwrap();
        let s = &r.settings().win_probability;
        Model::fit(&r, s, Timestamp(i64::MAX), T0, &|_, _| true).unwrap()
    }

    fn score(&self, m: &Model, method: ScoringMethod, d: &Deal) -> model::Scored {
        let r = self.fx.store.read().unwrap();
        let d: Deal = r.load(d.id).unwrap();
        m.score(method, &d.kind, d.stage.as_deref(), &m.attributes(&model::Facts::of_deal(&d), &model::LookUp(&r)))
    }
}

/// ln 2 to four decimals, as contributions are rounded.
fn ln2() -> f64 {
    (std::f64::consts::LN_2 * 10_000.0).round() / 10_000.0
}

fn factor(name: &str, value: Value, contribution: f64) -> ScoreFactor {
    ScoreFactor { name: name.into(), value, contribution }
}

/// 100 / (1 + e^-(Σ contributions)): the probability the factors make, in percent.
fn from_factors(factors: &[ScoreFactor]) -> f64 {
    let sum: f64 = factors.iter().map(|f| f.contribution).sum();
    100.0 / (1.0 + (-sum).exp())
}

/// Runs a report through `reports` and prints it one row a line, cells joined with " | ".
fn table(reports: &Reports, store: &Store, name: &str, params: &[(&str, &str)]) -> Result<String, String> {
    let params: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let r = store.read().unwrap();
    let t = reports.run(name, &params, &r).map_err(|e| e.to_string())?;
    let mut out = vec![t.columns().iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(" | ")];
    for row in t.rows() {
        out.push(row.iter().map(cell_text).collect::<Vec<_>>().join(" | "));
    }
    Ok(out.join("\n"))
}

/// A printed table's lines without their empty cells.
fn compact(table: &str) -> impl Iterator<Item = String> + '_ {
    table.lines().map(|l| l.split(" | ").map(str::trim).filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" | "))
}

fn builtins() -> Reports {
    let mut reports = Reports::new();
    reports.add(Arc::new(Analytics));
    reports
}

#[test]
fn the_rates_and_probabilities_of_a_small_history_are_the_ones_worked_out_by_hand() {
    let shop = Shop::new(settings(MODEL));
    let (d7, d8) = shop.history(&Engine::without_hooks());
    let m = shop.model();
    let fit = &m.kinds["repeat_sale"];
    assert_eq!((fit.total.won, fit.total.lost), (3, 3));
    let stage = |s: &str| (fit.stages[s].won, fit.stages[s].lost);
    assert_eq!([stage("request"), stage("quote"), stage("order")], [(3, 3), (3, 1), (2, 0)]);
    let value = |f: &str, v: &str| {
        let c = fit.fields[f][v];
        (c.won, c.lost)
    };
    assert_eq!([value("source", "referral"), value("source", "website")], [(2, 1), (1, 2)]);
    assert!(!fit.fields["source"].contains_key("cold_call"));

    // The stages method. The kind's rate r = (3 + 1) / (6 + 2) = 0.5: logit 0.
    // D7 in quote: (3 + 2·0.5) / (4 + 2) = 2/3, logit ln 2 = 0.6931 over the kind's;
    // ann: 3 won of 4, the same 0.6931; the client: 3 of 6, (3 + 1) / (6 + 2) = 0.5: 0.
    // Σ = 1.3862 → 100 / (1 + e^-1.3862) = 80.00 (odds 4).
    let s = shop.score(&m, ScoringMethod::Stages, &d7);
    assert_eq!(
        s.factors,
        [
            factor("kind", json!("repeat_sale"), 0.0),
            factor("stage", json!("quote"), ln2()),
            factor("manager", json!("ann"), ln2()),
            factor("partner", json!("Ромашка"), 0.0),
        ]
    );
    assert_eq!(s.probability, 80.0);
    // D8 in request: (3 + 1) / 8 = 0.5: 0; bob: (0 + 2·0.5) / (2 + 2) = 0.25, ln(1/3) =
    // -1.0986 → 25.00.
    let s = shop.score(&m, ScoringMethod::Stages, &d8);
    assert_eq!(s.factors[1..3], [factor("stage", json!("request"), 0.0), factor("manager", json!("bob"), -1.0986)]);
    assert_eq!(s.probability, 25.0);

    // Naive Bayes over stage, manager, source. Prior ln((3+1)/(3+1)) = 0. Stage quote (3
    // stages seen, V = 4): ln((3+1)/(3+4)) - ln((1+1)/(3+4)) = ln 2 = 0.6931; ann (V = 3):
    // ln(4/6) - ln(2/6) = 0.6931; website (V = 3): ln((1+1)/6) - ln((2+1)/6) = ln(2/3) =
    // -0.4055. Σ = 0.9807 → 72.72 (odds 8/3 unrounded: 72.73; the sum of the rounded
    // contributions is what the probability is made from).
    let s = shop.score(&m, ScoringMethod::Bayes, &d7);
    assert_eq!(
        s.factors,
        [
            factor("prior", Value::Null, 0.0),
            factor("stage", json!("quote"), ln2()),
            factor("manager", json!("ann"), ln2()),
            factor("source", json!("website"), -0.4055),
        ]
    );
    assert_eq!(s.probability, 72.72);
    // D8: request 3 won and 3 lost: 0; bob ln(1/6) - ln(3/6) = -1.0986; cold_call was never
    // seen (fewer than min_deals = 2 closed deals): 0 → 25.00.
    let s = shop.score(&m, ScoringMethod::Bayes, &d8);
    assert_eq!(
        s.factors[1..],
        [
            factor("stage", json!("request"), 0.0),
            factor("manager", json!("bob"), -1.0986),
            factor("source", json!("cold_call"), 0.0),
        ]
    );
    assert_eq!(s.probability, 25.0);

    // The report: the kind, its stages (win rate onward = won ÷ closed; the model's
    // probability with the other factors neutral: order (2 + 2·0.5) / (2 + 2) = 0.75), then
    // the open deals by weighted amount: 100000 × 80% and 50000 × 25%.
    let got = table(&builtins(), &shop.fx.store, "win-probability", &[("kind", "repeat_sale")]).unwrap();
    let rows: Vec<String> =
        compact(&got).map(|l| l.replace(&d7.id.to_string(), "D7").replace(&d8.id.to_string(), "D8")).collect();
    assert_eq!(
        rows[1..],
        [
            "kind | repeat_sale | 6 | 3 | 50 | 50",
            "stage | repeat_sale | request | 6 | 3 | 50 | 50",
            "stage | repeat_sale | quote | 4 | 3 | 75 | 66.67",
            "stage | repeat_sale | order | 2 | 2 | 100 | 75",
            "deal | repeat_sale | quote | D7 | Поставка оборудования | ann | 80 | 100000 | RUB | 80000 | stage=quote +0.69; manager=ann +0.69",
            "deal | repeat_sale | request | D8 | Поставка оборудования | bob | 25 | 50000 | RUB | 12500 | manager=bob -1.10",
        ],
        "{got}"
    );
    // A manager narrows the deals listed, not the fit.
    let got =
        table(&builtins(), &shop.fx.store, "win-probability", &[("kind", "repeat_sale"), ("manager", "bob")]).unwrap();
    let rows: Vec<String> = compact(&got).collect();
    assert_eq!(rows.iter().filter(|l| l.starts_with("deal")).count(), 1, "{got}");
    assert!(rows.contains(&"stage | repeat_sale | quote | 4 | 3 | 75 | 66.67".to_string()), "{got}");
}

/// The hooks of an installation whose scripts are the shipped ones (in a temporary folder):
/// Rhai, and the built-in model registered as the server registers it.
fn hooks_with_scripts(settings: &Settings) -> (tempfile::TempDir, Hooks) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in crmkit_core::installation::SHIPPED_SCRIPTS {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let host = Arc::new(crmkit_rhai::ScriptHost::new(
        dir.path(),
        &crmkit_rhai::RhaiSettings::from_settings(settings).unwrap(),
    ));
    assert!(host.load_all().is_empty());
    let mut hooks = Hooks::new();
    hooks.provider(Arc::new(crmkit_rhai::RhaiProvider::new(host)));
    model::register(&mut hooks);
    (dir, hooks)
}

/// The built-in model bound for every kind after the shipped logistic script bound for
/// b2b_sale: the first score wins, so the script replaces the model there.
const BOUND: &str = r#"
[[hooks]]
point = "deal.score"
handler = "scoring/logistic.rhai::win_probability"
kinds = ["b2b_sale"]

[[hooks]]
point = "deal.score"
handler = "win_probability"
runtime = "native"
"#;

#[test]
fn bound_in_config_the_model_scores_deals_on_write_and_a_script_replaces_it_for_one_kind() {
    let settings = settings(&format!("{MODEL}\n{BOUND}"));
    let (_scripts, hooks) = hooks_with_scripts(&settings);
    let engine = Engine::new(&settings, hooks).unwrap();
    let shop = Shop::new(settings);
    let (d7, d8) = shop.history(&engine);
    let read = |d: &Deal| -> Deal { shop.fx.store.read().unwrap().load(d.id).unwrap() };

    // Scored as the writes went, by a model refitted when the last was an hour old: each of
    // D7's and D8's steps came a day after the one before.
    let d7 = read(&d7);
    let s = d7.score.clone().expect("D7 is scored");
    assert_eq!((s.handler.as_str(), s.model.as_deref()), (HANDLER, Some("win_probability/stages")));
    assert_eq!((s.probability, d7.probability), (80.0, Some(80)));
    assert!((from_factors(&s.factors) - s.probability).abs() < 0.005, "{s:?}");
    let d8 = read(&d8);
    assert_eq!(d8.score.as_ref().map(|s| s.probability), Some(25.0));
    // Closed deals keep no score: their outcome is their probability.
    let closed: Vec<Deal> = shop.fx.store.read().unwrap().list::<Deal>(None, 100).unwrap();
    for d in closed.iter().filter(|d| d.status.is_closed()) {
        assert_eq!((d.score.as_ref(), d.probability), (None, Some(if d.status == DealStatus::Won { 100 } else { 0 })));
    }

    // Within refit_minutes the fitted model is kept: a loss of ann's written after D7's
    // model was fitted does not move D7's next score half an hour later; an hour later it does.
    let other = shop.deal(&engine, shop.ann, "website", 10_000, &["quote"], None);
    let touch = |note: &str| {
        let mut d = read(&d7);
        d.comment = note.into();
        shop.run(shop.ann, &mut |tx| engine.update(tx, d.clone()))
    };
    assert_eq!(touch("called").score.map(|s| s.probability), Some(80.0), "fitted now");
    let lost = shop.run(shop.ann, &mut |tx| {
        engine.close(
            tx,
            other.id,
            other.version,
            Outcome::Lost { reason: "price".into(), competitor: None, comment: String::new() },
        )
    });
    assert_eq!((lost.status, lost.score), (DealStatus::Lost, None));
    shop.fx.clock.advance(30 * 60_000);
    assert_eq!(touch("called twice").score.map(|s| s.probability), Some(80.0), "the model fitted 30 minutes ago");
    shop.fx.clock.advance(31 * 60_000);
    let d = touch("called again");
    // Refitted: 7 closed, 3 won: r = 4/9; quote 5 closed 3 won: (3 + 2·4/9)/(5 + 2) =
    // 35/63 = 5/9; ann 5 closed 3 won: the same. logit(4/9) = ln(0.8) = -0.2231, each delta
    // ln(1.25) - ln(0.8) = 0.4463; the client 7 closed 3 won: (3 + 8/9)/(7 + 2) = 35/81,
    // ln(35/46) - ln(0.8) = ln(175/184) = -0.0501. Σ = -0.2231 + 0.4463 + 0.4463 - 0.0501 =
    // 0.6194 → 65.01.
    let s = d.score.clone().unwrap();
    assert_eq!(s.factors.iter().map(|f| f.contribution).collect::<Vec<_>>(), [-0.2231, 0.4463, 0.4463, -0.0501]);
    assert_eq!(s.probability, 65.01);

    // A b2b_sale deal is scored by the script bound for its kind.
    let mut b = new_deal(shop.client, shop.ann, 500_000);
    b.source = Some("website".into());
    let b = shop.run(shop.ann, &mut |tx| engine.create_deal(tx, b.clone()));
    let s = b.score.expect("scored by the script");
    assert_eq!(
        (s.handler.as_str(), s.model.as_deref()),
        ("scoring/logistic.rhai::win_probability", Some("logistic-v2"))
    );
}

/// Imports a repeat sale with its history: created in request at `created` (days from T0),
/// moved a day at a time through `stages`, then won or lost on the day `end` says (open
/// without it).
fn import(
    store: &Store,
    e: &Engine,
    manager: UserId,
    client: PartnerId,
    created: i64,
    stages: &[&str],
    end: Option<(bool, i64)>,
) -> Deal {
    let mut d = new_deal(client, manager, 1000);
    d.kind = "repeat_sale".into();
    d.source = Some("website".into());
    let last = stages.last().copied().unwrap_or("request");
    d.stage = Some(last.into());
    d.status = match end {
        Some((true, _)) => DealStatus::Won,
        Some((false, _)) => DealStatus::Lost,
        None => DealStatus::InProgress,
    };
    if d.status == DealStatus::Lost {
        d.loss_reason = Some("price".into());
    }
    let step = |day: i64, how: How, stage: &str, status: DealStatus| ImportStep {
        at: T0.plus_millis(day * DAY),
        how,
        to_stage: Some(stage.into()),
        to_status: status,
        actor: None,
        note: (how == How::Lost).then(|| "price".to_string()),
    };
    let mut steps = vec![step(created, How::Create, "request", DealStatus::InProgress)];
    for (i, s) in stages.iter().enumerate() {
        steps.push(step(created + 1 + i as i64, How::Manual, s, DealStatus::InProgress));
    }
    if let Some((won, day)) = end {
        steps.push(step(day, if won { How::Won } else { How::Lost }, last, d.status));
    }
    store.transact(Some(manager), |tx| e.import_deal(tx, d.clone(), steps.clone())).unwrap_or_else(|e| panic!("{e}"))
}

/// Deals imported alike: the stages after request, the end (won?, on which day), how many.
type Batch<'a> = (&'a [&'a str], Option<(bool, i64)>, usize);

/// A history whose true win probabilities are known: from request 20%, from quote 50%,
/// from order 80%. Before the cutoff (2026-01-21, T0 - 40 days) 1000 deals closed: 600 lost
/// in request, 150 lost in quote, 50 lost in order, 200 won from order — onward from request
/// 200/1000, from quote 200/400, from order 200/250. Open at the cutoff and closed after it
/// (day -10): 50 in request (10 won), 40 in quote (20 won), 50 in order (40 won): each stage's
/// deals won in exactly its true proportion.
fn synthetic(store: &Store, manager: UserId, client: PartnerId) {
    let e = Engine::without_hooks();
    let mut plan: Vec<Batch<'_>> = vec![
        (&[], Some((false, -70)), 600),
        (&["quote"], Some((false, -70)), 150),
        (&["quote", "order"], Some((false, -70)), 50),
        (&["quote", "order"], Some((true, -70)), 200),
        (&[], Some((true, -10)), 10),
        (&[], Some((false, -10)), 40),
        (&["quote"], Some((true, -10)), 20),
        (&["quote"], Some((false, -10)), 20),
        (&["quote", "order"], Some((true, -10)), 40),
        (&["quote", "order"], Some((false, -10)), 10),
    ];
    // Interleaved, so that no stretch of the history is all wins or all losses.
    while plan.iter().any(|p| p.2 > 0) {
        for p in plan.iter_mut().filter(|p| p.2 > 0) {
            let created = if p.1.is_some_and(|(_, day)| day == -70) { -80 } else { -50 };
            import(store, &e, manager, client, created, p.0, p.1);

            p.2 -= 1;
        }
    }
}

/// A native handler that knows the true probabilities, and says nothing in request.
fn oracle(input: &HookInput<'_>) -> Result<Reply, crmkit_core::hooks::Fault> {
    let Some(Subject::Deal(d)) = &input.after else { return Ok(Answer::Score(None).into()) };
    let p = match d.stage.as_deref() {
        Some("quote") => 50.0,
        Some("order") => 80.0,
        _ => return Ok(Answer::Score(None).into()),
    };
    assert_eq!(input.now.to_string(), "2026-01-21T23:59:59.999Z", "asked as of the cutoff");
    assert_eq!(d.status, DealStatus::InProgress, "the deal as it stood at the cutoff");
    Ok(Answer::Score(Some(Score { probability: p, factors: vec![], model: None })).into())
}

#[test]
fn calibration_on_synthetic_deals_with_known_probabilities_is_near_the_truth() {
    let shop = Shop::new(settings(""));
    synthetic(&shop.fx.store, shop.ann, shop.client);
    let mut hooks = Hooks::new();
    hooks.register("oracle", oracle);
    model::register(&mut hooks);
    hooks.bind(HookPoint::DealScore, "oracle", &[]).unwrap();
    hooks.bind(HookPoint::DealScore, HANDLER, &[]).unwrap();
    let mut reports = Reports::new();
    reports.add(Arc::new(AnalyticsWithHooks(hooks)));
    let got = table(&reports, &shop.fx.store, "calibration", &[("as_of", "2026-01-21")]).unwrap();
    let rows: Vec<Vec<&str>> = got.lines().skip(1).map(|l| l.split(" | ").collect()).collect();
    let all =
        |model: &str| rows.iter().find(|r| r[0] == model && r[1] == "all").unwrap_or_else(|| panic!("{model}: {got}"));
    let num = |s: &str| s.parse::<f64>().unwrap_or_else(|_| panic!("{s:?} in {got}"));
    // The true probabilities' Brier score: Σ n·p(1-p) / N = (50·0.16 + 40·0.25 + 50·0.16) /
    // 140 = 0.1857; their log loss: -(10 ln 0.2 + 40 ln 0.8 + 40 ln 0.5 + 40 ln 0.8 + 10 ln
    // 0.2) / 140 = 0.5555.
    for model in ["stages", "bayes"] {
        let r = all(model);
        assert_eq!((r[2], r[3], r[5]), ("140", "0", "50"), "{got}");
        assert!((num(r[6]) - 0.1857).abs() < 0.005, "{model} Brier {}: {got}", r[6]);
        assert!((num(r[7]) - 0.5555).abs() < 0.02, "{model} log loss {}: {got}", r[7]);
        // The reliability table: every bin with deals predicts within 5 points of what
        // happened — 20, 50 and 80%.
        let bins: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == model && r[1] != "all" && r[2] != "0").collect();
        assert_eq!(bins.len(), 3, "{got}");
        for b in bins {
            assert!((num(b[4]) - num(b[5])).abs() <= 5.0, "{model} bin {}: {got}", b[1]);
        }
    }
    // The base rate (the kind's 200/1000 for every deal) scores far worse.
    let base = all("base_rate");
    assert!(num(base[6]) > 0.3, "{got}");
    // The oracle, asked through the hook registry: exact on the 90 deals it scored.
    // Brier (40·0.25 + 40·0.04 + 10·0.64) / 90 = 0.2; 50 in request unscored.
    let o = all("oracle");
    assert_eq!((o[2], o[3], o[4], o[6]), ("90", "50", "66.7", "0.2"), "{got}");
    assert!(rows.iter().any(|r| r[0] == "oracle" && r[1] == "50-60%" && r[2] == "40" && r[5] == "50"), "{got}");
    assert!(rows.iter().any(|r| r[0] == "oracle" && r[1] == "80-90%" && r[2] == "50" && r[5] == "80"), "{got}");
    // The built-in handler's own row is not there: the built-in methods are fitted at the
    // cutoff above.
    assert!(!rows.iter().any(|r| r[0] == HANDLER), "{got}");

    // Without the cutoff, or judged before it: refused, naming the parameter.
    let err = table(&builtins(), &shop.fx.store, "calibration", &[]).unwrap_err();
    assert!(err.contains("parameter as_of: the calibration report needs the cutoff day"), "{err}");
    let err = table(&builtins(), &shop.fx.store, "calibration", &[("as_of", "2026-01-21"), ("to", "2026-01-01")])
        .unwrap_err();
    assert!(err.contains("parameter to: the outcomes are read after the cutoff (2026-01-21)"), "{err}");
    // Judged at the end of 2026-02-01, before they closed: no deal is judged.
    let got =
        table(&builtins(), &shop.fx.store, "calibration", &[("as_of", "2026-01-21"), ("to", "2026-02-01")]).unwrap();
    assert!(got.lines().nth(1).unwrap().starts_with("base_rate | all | 0 | 0"), "{got}");
}

#[test]
fn mistakes_in_win_probability_are_named_with_their_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("method = \"magic\"", "analytics.win_probability.method: \"magic\" is not a method (stages, bayes)"),
        ("fields = [\"stage\", \"colour\"]", "analytics.win_probability.fields: \"colour\" is not a field (stage, manager, partner, segment, source, amount_band, custom.tender_number, custom.delivery_region, custom.equipment)"),
        ("fields = [\"custom.nope\"]", "analytics.win_probability.fields: \"custom.nope\" is not a field"),
        ("fields = [\"stage\", \"stage\"]", "analytics.win_probability.fields: \"stage\" is listed twice"),
        ("fields = []", "analytics.win_probability.fields is empty: naive Bayes needs a field"),
        ("fields = [\"amount_band\"]", "analytics.win_probability.fields: amount_band needs analytics.win_probability.amount_bands"),
        ("amount_bands = [1000, 100]", "analytics.win_probability.amount_bands must ascend: 100 comes after 1000"),
        ("amount_bands = [\"lots\"]", "analytics.win_probability.amount_bands: \"lots\" is not an amount"),
        ("amount_bands = [-5]", "analytics.win_probability.amount_bands: -5 is not above zero"),
        ("smoothing = 0", "analytics.win_probability.smoothing must be above zero, got 0"),
        ("prior_weight = -1.5", "analytics.win_probability.prior_weight must be above zero, got -1.5"),
        ("min_deals = 0", "analytics.win_probability.min_deals must be above zero, got 0"),
        ("refit_minutes = 0", "analytics.win_probability.refit_minutes must be above zero, got 0"),
        ("smothing = 1", "unknown key \"smothing\" in [analytics.win_probability]"),
    ];
    let line = DEFAULT_CONFIG.lines().count() + 3;
    for (key, message) in cases {
        let text = format!("{DEFAULT_CONFIG}\n[analytics.win_probability]\n{key}\n");
        let err = Settings::parse(&text, Path::new("config/crmkit.toml")).unwrap_err().to_string();
        assert!(err.starts_with(&format!("config/crmkit.toml:{line}:")), "{key}: {err}");
        assert!(err.contains(message), "{key}: {err}");
    }
    // Written right, every key is taken.
    let s = settings(
        "[analytics.win_probability]\nmethod = \"bayes\"\nfields = [\"stage\", \"amount_band\", \"segment\", \"custom.delivery_region\"]\namount_bands = [100000, \"1000000.50\"]\nsmoothing = 0.5\nprior_weight = 4\nmin_deals = 1\nrefit_minutes = 5\n",
    );
    let w = &s.win_probability;
    assert_eq!(w.method, ScoringMethod::Bayes);
    assert_eq!(w.fields, ["stage", "amount_band", "segment", "custom.delivery_region"]);
    assert_eq!(w.amount_bands.iter().map(ToString::to_string).collect::<Vec<_>>(), ["100000", "1000000.50"]);
    assert_eq!(
        (w.smoothing.to_string().as_str(), w.prior_weight.to_string().as_str(), w.min_deals, w.refit_minutes),
        ("0.5", "4", 1, 5)
    );
    // Left out, the defaults.
    let d = Settings::builtin().win_probability;
    assert_eq!((d.method, d.min_deals, d.refit_minutes), (ScoringMethod::Stages, 3, 60));
    assert_eq!(d.fields, ["stage", "manager", "partner", "source"]);
}

#[test]
fn both_reports_through_the_command_line_and_the_api() {
    use crate::api::{Office, Served};
    use crate::cli::{fails, json, ok};
    let office = Office::with_config(|c| format!("{c}\n{BOUND}"));
    let site = &office.site;
    let client = site.partner("Ромашка", PartnerRole::Client);
    site.with(|inst| synthetic(inst.store(), office.north, client));
    // Two tenders of b2b_sale, open at the cutoff and won after it: the script scores them.
    site.with(|inst| {
        let e = Engine::without_hooks();
        for _ in 0..2 {
            let mut d = new_deal(client, office.north, 1000);
            d.source = Some("website".into());
            d.status = DealStatus::Won;
            let step = |day: i64, how: How, status: DealStatus| ImportStep {
                at: T0.plus_millis(day * DAY),
                how,
                to_stage: Some("qualification".into()),
                to_status: status,
                actor: None,
                note: None,
            };
            let steps = vec![step(-50, How::Create, DealStatus::InProgress), step(-10, How::Won, DealStatus::Won)];
            inst.store().transact(Some(office.north), |tx| e.import_deal(tx, d.clone(), steps.clone())).unwrap();
        }
    });
    // One deal still open, in quote, brought in unscored (by an engine without bindings).
    let open =
        site.with(|inst| import(inst.store(), &Engine::without_hooks(), office.north, client, -5, &["quote"], None));
    assert_eq!(open.score, None);
    let dir = site.dir();

    // `crmkit score` fits the model at its start and scores the open deal through the
    // binding of config.
    let said = ok(&["score", dir]);
    assert!(said.starts_with("scored 1 open deals: 1 changed"), "{said}");
    // The reports write nothing, refused or not.
    let before = site.dump();

    let w = json(&["analytics", "win-probability", dir, "--kind", "repeat_sale"]);
    let names: Vec<&str> = w["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names[..3], ["row", "kind", "stage"]);
    assert_eq!(
        w["rows"][0],
        json!(["kind", "repeat_sale", null, null, null, null, 1140, 270, "23.7", "23.73", null, null, null, null])
    );
    // Order: reached then closed 250 + 50, won 200 + 40. The kind's rate (270 + 1) / (1140 + 2)
    // = 0.2373, logit -1.1675; order (240 + 10·0.2373) / (300 + 10) = 0.7818, 2.4440 over the
    // kind's; Σ = 1.2765 → 78.19.
    assert_eq!(
        w["rows"][3].as_array().unwrap()[..10],
        json!(["stage", "repeat_sale", "order", null, null, null, 300, 240, "80", "78.19"]).as_array().unwrap()[..]
    );

    let c = json(&["analytics", "calibration", dir, "--as-of", "2026-01-21"]);
    let models: Vec<&str> =
        c["rows"].as_array().unwrap().iter().filter(|r| r[1] == "all").map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(models, ["base_rate", "stages", "bayes", "scoring/logistic.rhai::win_probability"]);
    let script =
        c["rows"].as_array().unwrap().iter().find(|r| r[0] == "scoring/logistic.rhai::win_probability").unwrap();
    assert_eq!((script[2].as_u64(), script[5].as_str()), (Some(2), Some("100")));
    let said = fails(&["analytics", "calibration", dir]);
    assert!(said.contains("parameter as_of"), "{said}");

    assert_eq!(site.dump(), before, "a report changed the database");
    let server = Served::start(site);
    let (status, deal) = server.request("GET", &format!("/api/v1/deals/{}", open.id), Some(office.token("boss")));
    assert_eq!(status, 200, "{deal}");
    let score = &deal["score"];
    assert_eq!((score["handler"].as_str(), score["model"].as_str()), (Some(HANDLER), Some("win_probability/stages")));
    let factors: Vec<ScoreFactor> = serde_json::from_value(score["factors"].clone()).unwrap();
    assert_eq!(factors.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["kind", "stage", "manager", "partner"]);
    let p = score["probability"].as_f64().unwrap();
    assert!((from_factors(&factors) - p).abs() < 0.005 && (45.0..60.0).contains(&p), "{score}");
    let (status, body) =
        server.request("GET", "/api/v1/analytics/calibration?as_of=2026-01-21", Some(office.token("boss")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], c["rows"], "the API answers what the command line prints");
    let (status, body) =
        server.request("GET", "/api/v1/analytics/win-probability?kind=repeat_sale", Some(office.token("watcher")));
    assert_eq!((status, &body["rows"]), (200, &w["rows"]));
    let (status, body) = server.request("GET", "/api/v1/analytics/calibration", Some(office.token("boss")));
    assert_eq!((status, body["code"].as_str()), (422, Some("report_failed")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("parameter as_of"), "{body}");
    server.stop();
}
