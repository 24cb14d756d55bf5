//! The demo company: a realistic, deterministic synthetic sales department, in a crate of
//! its own so that programs embedding `crmkit-core` do not compile it.
//!
//! `populate` fills a fresh store with managers in three departments, client partners (some
//! of them holdings with subsidiaries) with their counterparties — valid INN, KPP, OGRN and
//! bank accounts — contact persons and links, competitors, and deals of every process kind
//! and status spread over two years, each with its environment, interactions and documents.
//! Deals live their histories through the process engine: created, moved stage by stage (by
//! hand, or along a managed route as their tasks get done), put on hold, stepped back, lost
//! or won, now and then reopened, so the stage history is the one a real department would
//! leave. The same seed always gives the same company. The store's clock is a
//! [`ManualClock`] the generator moves, so every record carries the time it "happened".

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use crmkit_core::id::{ContactId, CounterpartyId, LoyaltyCardId, PartnerId, UserId};
use crmkit_core::model::{
    Address, AddressKind, Attitude, BankAccount, Claim, ContactLink, ContactPerson, Counterparty, CounterpartyKind,
    CustomValue, Deal, DealStatus, Decision, Direction, Document, DocumentKind, DocumentLine, DocumentState,
    EntityKind, Influence, Interaction, InteractionKind, LoyaltyCard, LoyaltyProgram, Participant, ParticipantLink,
    Partner, PartnerLink, PartnerRole, Plan, Role, TaskStatus, User,
};
use crmkit_core::process::condition::field_is_set;
use crmkit_core::process::{Engine, Mode, Outcome, ProcessKindSpec, StageSpec};
use crmkit_core::store::{Durability, Reader, Store, WriteTxn};
use crmkit_core::time::{ManualClock, Timestamp};
use crmkit_core::values::{ru, Currency, Money};
use crmkit_core::Result;

/// The config of demo installations (the default one under the demo's name).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub deals: usize,
    pub seed: u64,
    /// Client partners (default: one per ten deals, at least 20).
    pub partners: usize,
    /// Sales managers (default: one per 800 deals, between 8 and 400).
    pub managers: usize,
    /// The start of the company's history.
    pub start: Timestamp,
    /// The end of its history: "today" for the demo.
    pub end: Timestamp,
    /// Entities per committed batch.
    pub batch: usize,
}

impl DemoOptions {
    /// Defaults for `deals` deals and a seed: two years of history ending 2026-11-01.
    pub fn new(deals: usize, seed: u64) -> DemoOptions {
        let end = Timestamp::from_chrono(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid date"));
        DemoOptions {
            deals,
            seed,
            partners: (deals / 10).max(20),
            managers: (deals / 800).clamp(8, 400),
            start: end.plus_millis(-730 * DAY),
            end,
            batch: 100_000,
        }
    }

    /// Roughly how many entities will be written (for progress bars).
    pub fn estimated_entities(&self) -> u64 {
        (self.managers + self.partners * 7 + self.deals * 9) as u64
    }
}

/// Where generation is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub phase: &'static str,
    /// Entities written so far.
    pub written: u64,
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub counts: BTreeMap<EntityKind, u64>,
    pub audit_entries: u64,
    pub deals_by_status: BTreeMap<&'static str, u64>,
    pub pipeline: BTreeMap<Currency, Decimal>,
}

impl Summary {
    /// All entities written.
    pub fn entities(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "demo company generated: {} entities", self.entities())?;
        for (k, n) in &self.counts {
            writeln!(f, "  {:<18} {:>10}", k.name(), n)?;
        }
        let statuses: Vec<String> = self.deals_by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
        writeln!(f, "deals: {}", statuses.join(", "))?;
        let open: Vec<String> = self.pipeline.iter().map(|(c, a)| format!("{} {c}", grouped(*a))).collect();
        writeln!(f, "open pipeline: {}", open.join(" + "))
    }
}

/// A whole amount with thin spaces between thousands: `59 454 804 000`.
fn grouped(amount: Decimal) -> String {
    let digits = amount.round_dp(0).abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if amount.is_sign_negative() {
        out.insert(0, '-');
    }
    out
}

/// A small deterministic generator (SplitMix64): the demo must not change when a
/// dependency's random algorithm does. Public for the benchmarks' generated data.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo).max(1) as u64)) as i64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// A factor around 1, skewed right: most between 0.4 and 1.6, one in ten two to five
    /// times longer. Only multiplications: the same on every platform.
    fn spread(&mut self) -> f64 {
        let f = 0.35 + 1.3 * (self.unit() + self.unit() + self.unit()) / 3.0;
        if self.chance(0.1) {
            f * (2.0 + 3.0 * self.unit())
        } else {
            f
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut r = (self.next() % total as u64) as u32;
        for (item, w) in items {
            if r < *w {
                return item;
            }
            r -= w;
        }
        &items[items.len() - 1].0
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
    /// An amount between `lo` and `hi`, most of them small (the cube of a uniform draw),
    /// rounded to a thousand. Only multiplications: the same on every platform.
    fn amount(&mut self, lo: f64, hi: f64) -> Decimal {
        let u = self.unit();
        let v = lo + (hi - lo) * u * u * u;
        Decimal::from((v / 1000.0).round() as i64 * 1000)
    }
}

const ROOTS: &[&str] = &[
    "Север",
    "Техно",
    "Агро",
    "Строй",
    "Энерго",
    "Металл",
    "Транс",
    "Урал",
    "Сибирь",
    "Волга",
    "Балт",
    "Альфа",
    "Вектор",
    "Гранит",
    "Меридиан",
    "Прогресс",
    "Профи",
    "Старт",
    "Лидер",
    "Импульс",
    "Кедр",
    "Орион",
    "Атлант",
    "Полюс",
    "Зенит",
    "Дельта",
    "Спектр",
    "Мега",
    "Гефест",
    "Ока",
    "Кама",
    "Амур",
    "Байкал",
    "Нева",
    "Исеть",
    "Дон",
];
const ROOTS_LAT: &[&str] = &[
    "sever", "techno", "agro", "stroy", "energo", "metall", "trans", "ural", "sibir", "volga", "balt", "alfa",
    "vektor", "granit", "meridian", "progress", "profi", "start", "lider", "impuls", "kedr", "orion", "atlant",
    "polus", "zenit", "delta", "spektr", "mega", "gefest", "oka", "kama", "amur", "baikal", "neva", "iset", "don",
];
const SUFFIXES: &[(&str, &str)] = &[
    ("снаб", "snab"),
    ("торг", "torg"),
    ("сервис", "service"),
    ("пром", "prom"),
    ("трейд", "trade"),
    ("групп", "group"),
    ("маш", "mash"),
    ("логистик", "logistic"),
    ("инвест", "invest"),
    ("систем", "system"),
    ("монтаж", "montazh"),
    ("ресурс", "resurs"),
];
const COMPETITORS: &[&str] = &[
    "ПромАвтоматика",
    "ТехСнабКомплект",
    "ИнжинирингСистемс",
    "Меркурий Дистрибуция",
    "ЕвроТехПоставка",
    "СтальКонструкция",
    "Главснаб",
    "АйТи Решения",
    "ПромЛидер",
    "Ростех Трейд",
    "Северный Альянс",
    "Дельта Инжиниринг",
];
/// Region code, city, a street, a BIK region code.
const CITIES: &[(&str, &str)] = &[
    ("77", "г. Москва"),
    ("78", "г. Санкт-Петербург"),
    ("66", "г. Екатеринбург"),
    ("54", "г. Новосибирск"),
    ("16", "г. Казань"),
    ("52", "г. Нижний Новгород"),
    ("63", "г. Самара"),
    ("74", "г. Челябинск"),
    ("61", "г. Ростов-на-Дону"),
    ("24", "г. Красноярск"),
    ("59", "г. Пермь"),
    ("36", "г. Воронеж"),
];
const STREETS: &[&str] = &[
    "ул. Ленина",
    "ул. Мира",
    "пр-т Победы",
    "ул. Промышленная",
    "ул. Советская",
    "ул. Заводская",
    "наб. Речная",
    "ул. Садовая",
    "ул. Гагарина",
    "ш. Энтузиастов",
];
/// Real banks: name, BIK, correspondent account.
const BANKS: &[(&str, &str, &str)] = &[
    ("ПАО Сбербанк", "044525225", "30101810400000000225"),
    ("Банк ВТБ (ПАО)", "044525187", "30101810700000000187"),
    ("АО «Альфа-Банк»", "044525593", "30101810200000000593"),
    ("АО «ТБанк»", "044525974", "30101810145250000974"),
];
const MALE: &[&str] =
    &["Александр", "Дмитрий", "Сергей", "Андрей", "Алексей", "Михаил", "Игорь", "Владимир", "Николай", "Павел"];
const FEMALE: &[&str] =
    &["Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Анна", "Мария", "Светлана", "Юлия", "Екатерина"];
const MALE_LAT: &[&str] = &["a", "d", "s", "a", "a", "m", "i", "v", "n", "p"];
const FEMALE_LAT: &[&str] = &["e", "o", "n", "t", "i", "a", "m", "s", "y", "e"];
const PATRONYMICS: &[&str] =
    &["Александров", "Сергеев", "Иванов", "Викторов", "Николаев", "Петров", "Андреев", "Юрьев"];
/// Surname stems with transliteration; female forms add "а".
const SURNAMES: &[(&str, &str)] = &[
    ("Иванов", "ivanov"),
    ("Петров", "petrov"),
    ("Смирнов", "smirnov"),
    ("Кузнецов", "kuznetsov"),
    ("Попов", "popov"),
    ("Соколов", "sokolov"),
    ("Лебедев", "lebedev"),
    ("Козлов", "kozlov"),
    ("Новиков", "novikov"),
    ("Морозов", "morozov"),
    ("Волков", "volkov"),
    ("Соловьёв", "solovyov"),
    ("Васильев", "vasilyev"),
    ("Зайцев", "zaytsev"),
    ("Павлов", "pavlov"),
    ("Семёнов", "semenov"),
    ("Голубев", "golubev"),
    ("Виноградов", "vinogradov"),
    ("Богданов", "bogdanov"),
    ("Воробьёв", "vorobyov"),
];
const POSITIONS: &[(&str, Option<&str>)] = &[
    ("Генеральный директор", Some("decision_maker")),
    ("Коммерческий директор", Some("decision_maker")),
    ("Финансовый директор", Some("influencer")),
    ("Главный инженер", Some("influencer")),
    ("Начальник отдела закупок", Some("influencer")),
    ("Менеджер по закупкам", Some("user")),
    ("ИТ-директор", Some("influencer")),
    ("Секретарь", Some("gatekeeper")),
    ("Ведущий специалист", None),
];
const INDUSTRIES: &[(&str, u32)] = &[
    ("manufacturing", 30),
    ("retail", 15),
    ("construction", 15),
    ("logistics", 10),
    ("it", 8),
    ("agriculture", 8),
    ("energy", 9),
    ("public", 5),
];
const PRODUCTS: &[(&str, &str, f64)] = &[
    ("Промышленный контроллер", "шт", 85_000.0),
    ("Частотный преобразователь", "шт", 42_000.0),
    ("Шкаф управления", "шт", 310_000.0),
    ("Кабель силовой", "м", 890.0),
    ("Насосная станция", "шт", 1_250_000.0),
    ("Пусконаладочные работы", "усл", 180_000.0),
    ("Техническое обслуживание", "мес", 95_000.0),
    ("Лицензия SCADA", "шт", 240_000.0),
    ("Датчик давления", "шт", 12_500.0),
    ("Монтажные работы", "усл", 420_000.0),
];
const DEPARTMENTS: &[&str] = &["Moscow sales", "Regional sales", "Key accounts"];
const SOURCES: &[(&str, u32)] = &[
    ("website", 25),
    ("referral", 15),
    ("cold_call", 15),
    ("exhibition", 10),
    ("tender", 10),
    ("existing_client", 25),
];
const REGIONS: &[&str] = &["central", "north_west", "volga", "urals", "siberia", "south", "far_east"];

/// How deals of a process kind of the demo config behave: their share of deals, amounts,
/// and per stage how long they stay and how they leave.
struct KindProfile {
    id: &'static str,
    weight: u32,
    amount: (f64, f64),
    /// Empty for a kind without stages.
    stages: &'static [StageProfile],
    /// Kinds without stages: how long a deal runs, in days, and how often it is won.
    cycle_days: (i64, i64),
    win_rate: f64,
}

/// How deals behave in one stage.
struct StageProfile {
    id: &'static str,
    /// The typical (median) stay in days, before the manager's pace and the client's size.
    days: f64,
    /// The chance that a deal is lost while in the stage.
    loss: f64,
    /// The chance that a deal steps back from here instead of going on.
    back: f64,
    /// Whether the quote goes to the client on entering the stage.
    quote: bool,
}

const fn stage(id: &'static str, days: f64, loss: f64, back: f64, quote: bool) -> StageProfile {
    StageProfile { id, days, loss, back, quote }
}

/// A stage the profile does not describe (the config was edited): an average one.
const ANY_STAGE: StageProfile = stage("", 5.0, 0.15, 0.0, false);

// stage(id, median days, chance of a loss there, chance of a step back, quote sent there)
const KINDS: &[KindProfile] = &[
    KindProfile {
        id: "b2b_sale",
        weight: 50,
        amount: (300e3, 15e6),
        stages: &[
            stage("qualification", 3.5, 0.28, 0.0, false),
            stage("needs_analysis", 8.0, 0.22, 0.03, false),
            stage("proposal", 6.5, 0.2, 0.05, true),
            stage("negotiation", 11.0, 0.16, 0.06, false),
            stage("contract", 4.5, 0.08, 0.08, false),
        ],
        cycle_days: (0, 0),
        win_rate: 0.0,
    },
    KindProfile {
        id: "tender",
        weight: 15,
        amount: (1e6, 60e6),
        stages: &[
            stage("announcement", 1.3, 0.3, 0.0, false),
            stage("documentation", 5.5, 0.15, 0.0, false),
            stage("approval", 1.8, 0.1, 0.18, false),
            stage("bid", 2.2, 0.12, 0.0, true),
            stage("award", 18.0, 0.45, 0.0, false),
        ],
        cycle_days: (0, 0),
        win_rate: 0.0,
    },
    KindProfile {
        id: "repeat_sale",
        weight: 30,
        amount: (50e3, 2e6),
        stages: &[
            stage("request", 1.3, 0.14, 0.0, false),
            stage("quote", 3.0, 0.2, 0.04, true),
            stage("order", 4.0, 0.07, 0.03, false),
        ],
        cycle_days: (0, 0),
        win_rate: 0.0,
    },
    KindProfile { id: "project", weight: 5, amount: (5e6, 120e6), stages: &[], cycle_days: (90, 300), win_rate: 0.45 },
];

impl KindProfile {
    fn stage(&self, id: &str) -> &StageProfile {
        self.stages.iter().find(|s| s.id == id).unwrap_or(&ANY_STAGE)
    }
}

/// Key accounts decide slowly and are lost less often; small clients are quick.
const TIER_PACE: [f64; 3] = [1.35, 1.0, 0.75];
const TIER_LOSS: [f64; 3] = [0.8, 1.0, 1.15];

/// Why deals are lost early in the route, and late.
const EARLY_LOSS: &[(&str, u32)] = &[
    ("no_budget", 22),
    ("lost_contact", 18),
    ("no_decision", 16),
    ("price", 14),
    ("requirements", 12),
    ("competitor_product", 10),
    ("terms", 8),
];
const LATE_LOSS: &[(&str, u32)] = &[
    ("price", 34),
    ("competitor_product", 22),
    ("terms", 14),
    ("no_decision", 12),
    ("no_budget", 8),
    ("lost_contact", 5),
    ("requirements", 5),
];
/// Why a deal on hold is finally given up.
const HOLD_LOSS: &[(&str, u32)] = &[("no_budget", 5), ("no_decision", 4), ("lost_contact", 2)];
const HOLD_COMMENTS: &[&str] = &[
    "Клиент заморозил бюджет до следующего квартала",
    "Ждём решения собственника",
    "Реорганизация у клиента",
    "Объект клиента отложен",
];
const BACK_NOTES: &[&str] = &["Клиент изменил требования", "Нужен пересчёт предложения", "Пересмотр условий"];

struct Person {
    name: String,
    email_local: String,
}

fn person(rng: &mut Rng) -> Person {
    let female = rng.chance(0.45);
    let (first, first_lat) = if female {
        let i = rng.below(FEMALE.len());
        (FEMALE[i], FEMALE_LAT[i])
    } else {
        let i = rng.below(MALE.len());
        (MALE[i], MALE_LAT[i])
    };
    let (sur, sur_lat) = *rng.pick(SURNAMES);
    let patr = rng.pick(PATRONYMICS);
    let (surname, patronymic) =
        if female { (format!("{sur}а"), format!("{patr}на")) } else { (sur.to_string(), format!("{patr}ич")) };
    let sur_lat = if female { format!("{sur_lat}a") } else { sur_lat.to_string() };
    Person { name: format!("{surname} {first} {patronymic}"), email_local: format!("{first_lat}.{sur_lat}") }
}

/// Everything generated so far that later phases refer to.
struct World {
    managers: Vec<Manager>,
    /// The head of each department.
    heads: Vec<UserId>,
    competitors: Vec<PartnerId>,
    clients: Vec<Client>,
}

/// A sales manager and how they work.
struct Manager {
    id: UserId,
    dept: usize,
    /// Stretches the time their deals spend in a stage (0.7 brisk … 1.6 slow).
    pace: f64,
    /// Lowers the chance of losing a deal (0.75 … 1.25).
    skill: f64,
}

struct Client {
    id: PartnerId,
    name: String,
    /// An index into `World::managers`.
    manager: usize,
    counterparties: Vec<CounterpartyId>,
    contacts: Vec<ContactId>,
    /// 0 = key account … 2 = small: drives amounts and how often they buy.
    tier: usize,
    since: Timestamp,
}

/// The generator's write side: batches, the clock, progress.
struct Writer<'a> {
    store: &'a Store,
    clock: &'a ManualClock,
    tx: Option<WriteTxn<'a>>,
    /// Who the transactions act as (`None`: the system).
    actor: Option<UserId>,
    in_batch: usize,
    batch: usize,
    summary: Summary,
    written: u64,
    phase: &'static str,
    progress: &'a mut dyn FnMut(Progress),
    engine: Engine,
    /// Documents numbered so far.
    documents: u64,
}

impl<'a> Writer<'a> {
    fn tx(&mut self) -> Result<&mut WriteTxn<'a>> {
        if self.tx.is_none() {
            let mut tx = self.store.write(self.actor)?;
            tx.set_durability(Durability::Deferred);
            self.tx = Some(tx);
        }
        Ok(self.tx.as_mut().expect("just set"))
    }

    fn create<E: crmkit_core::model::Entity>(&mut self, at: Timestamp, e: E) -> Result<E> {
        self.clock.set(at);
        let e = self.tx()?.create(e)?;
        self.written += 1;
        self.counted()?;
        Ok(e)
    }

    /// Saves a changed entity at `at` (not a deal's stage or status: see [`Writer::op`]).
    fn update<E: crmkit_core::model::Entity>(&mut self, at: Timestamp, e: E) -> Result<E> {
        self.clock.set(at);
        let e = self.tx()?.update(e)?;
        self.counted()?;
        Ok(e)
    }

    /// Runs a process engine operation at `at` in the current batch, acting as `actor` (or,
    /// when `None`, as the batch's actor), so the history records who took each step.
    fn op<R>(
        &mut self,
        at: Timestamp,
        actor: Option<UserId>,
        f: impl FnOnce(&Engine, &mut WriteTxn<'a>) -> Result<R>,
    ) -> Result<R> {
        self.clock.set(at);
        let batch_actor = self.actor;
        let tx = self.tx()?;
        tx.set_actor(actor.or(batch_actor));
        let r = f(&self.engine, self.tx.as_mut().expect("just opened"))?;
        self.counted()?;
        Ok(r)
    }

    /// Commits the batch; the next transactions act as `actor`.
    fn act_as(&mut self, actor: Option<UserId>) -> Result<()> {
        self.flush(Durability::Deferred)?;
        self.actor = actor;
        Ok(())
    }

    /// Counts a write into the batch, committing the batch when it is full.
    fn counted(&mut self) -> Result<()> {
        self.in_batch += 1;
        if self.in_batch >= self.batch {
            self.flush(Durability::Immediate)?;
        }
        Ok(())
    }

    fn flush(&mut self, durability: Durability) -> Result<()> {
        if let Some(mut tx) = self.tx.take() {
            tx.set_durability(durability);
            tx.commit()?;
        }
        self.in_batch = 0;
        (self.progress)(Progress { phase: self.phase, written: self.written });
        Ok(())
    }
}

/// Fills `store` (a fresh one, opened with `clock`) with the demo company.
pub fn populate(
    store: &Store,
    clock: &ManualClock,
    opts: &DemoOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let opts = &DemoOptions { managers: opts.managers.max(3), partners: opts.partners.max(1), ..opts.clone() };
    let mut rng = Rng(opts.seed ^ 0x5EED_C0DE);
    let mut w = Writer {
        store,
        clock,
        tx: None,
        actor: None,
        in_batch: 0,
        batch: opts.batch.max(1),
        summary: Summary::default(),
        written: 0,
        phase: "people",
        progress,
        engine: Engine::without_hooks(),
        documents: 0,
    };
    let before = store.stats()?;
    let mut world = World { managers: Vec::new(), heads: Vec::new(), competitors: Vec::new(), clients: Vec::new() };
    users(&mut w, &mut rng, opts, &mut world)?;
    w.phase = "partners";
    competitors(&mut w, &mut rng, opts, &mut world)?;
    clients(&mut w, &mut rng, opts, &mut world)?;
    // Deals pick among the clients that exist by their start: keep them in order of arrival.
    world.clients.sort_by_key(|c| c.since);
    w.phase = "deals";
    deals(&mut w, &mut rng, opts, &world)?;
    w.flush(Durability::Immediate)?;
    w.phase = "plans";
    plans(&mut w, opts, &world)?;
    w.flush(Durability::Immediate)?;
    w.phase = "claims";
    claims(&mut w, &mut rng, opts, &world)?;
    w.flush(Durability::Immediate)?;
    w.phase = "loyalty";
    loyalty(&mut w, &mut rng, opts, &world)?;
    w.flush(Durability::Immediate)?;
    // The engine writes tasks and updates of its own: count what the store holds.
    let after = store.stats()?;
    for (k, n) in &after.entities {
        let made = n - before.entities.get(k).copied().unwrap_or(0);
        if made > 0 {
            w.summary.counts.insert(*k, made);
        }
    }
    w.summary.audit_entries = after.audit_entries - before.audit_entries;
    Ok(w.summary)
}

fn users(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &mut World) -> Result<()> {
    let at = opts.start.plus_millis(-30 * DAY);
    for (d, dept) in DEPARTMENTS.iter().enumerate() {
        let p = person(rng);
        let mut head = User::new(format!("head{}.{}", d + 1, p.email_local.replace('.', "_")), p.name, Role::Head);
        head.department = Some(dept.to_string());
        head.email = Some(format!("{}@demo-company.ru", head.login));
        let head = w.create(at, head)?;
        world.heads.push(head.id);
    }
    for i in 0..opts.managers {
        let p = person(rng);
        let dept = i % DEPARTMENTS.len();
        let mut u = User::new(format!("m{:03}.{}", i + 1, p.email_local.replace('.', "_")), p.name, Role::Manager);
        u.department = Some(DEPARTMENTS[dept].to_string());
        u.email = Some(format!("{}@demo-company.ru", u.login));
        let u = w.create(at, u)?;
        let pace = 0.7 + 0.9 * rng.unit();
        let skill = 0.75 + 0.5 * rng.unit();
        world.managers.push(Manager { id: u.id, dept, pace, skill });
    }
    // An analyst who reads everything and writes nothing.
    let mut analyst = User::new("analyst", "Аналитик отдела продаж", Role::Viewer);
    analyst.email = Some("analyst@demo-company.ru".into());
    w.create(at, analyst)?;
    Ok(())
}

/// Each manager's monthly sales plans for the last year of the history: what they won a
/// month on average (in roubles), raised by a tenth as a stretch, in round 10,000s — set
/// by the head of their department on the first of the month.
fn plans(w: &mut Writer<'_>, opts: &DemoOptions, world: &World) -> Result<()> {
    let mut won: std::collections::HashMap<UserId, Decimal> = std::collections::HashMap::new();
    w.store.read()?.for_each::<Deal>(|d| {
        if d.status == DealStatus::Won && d.amount.currency == Currency::RUB {
            *won.entry(d.manager).or_default() += d.amount.amount;
        }
        true
    })?;
    let span = opts.start.date();
    let end = opts.end.date();
    let months = Decimal::from(((end.year() - span.year()) * 12 + end.month() as i32 - span.month() as i32).max(1));
    let step = Decimal::from(10_000);
    for m in &world.managers {
        let monthly = won.get(&m.id).copied().unwrap_or_default() / months * Decimal::new(11, 1);
        let amount = ((monthly / step).round() * step).max(step);
        let mut first = NaiveDate::from_ymd_opt(end.year() - 1, end.month(), 1).expect("a month");
        w.act_as(Some(world.heads[m.dept]))?;
        while first <= end {
            let next = first.checked_add_months(chrono::Months::new(1)).expect("a month");
            let last = next.pred_opt().expect("a day");
            let plan = Plan::new(m.id, first, last, Money::new(amount, Currency::RUB));
            w.create(Timestamp::start_of(first), plan)?;
            first = next;
        }
    }
    w.act_as(None)
}

/// The loyalty programs: a bonus program (2% of every payment in points worth a rouble
/// each, kept for a year) whose cards a third of the smaller clients hold from some weeks
/// after they arrive, and a 5% discount for key accounts. Payments earn on the cards in the
/// order they were made, points are now and then spent, a few cards are lost (blocked) or
/// reissued at the end, and the points older than a year expire as of "today".
fn loyalty(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &World) -> Result<()> {
    let from = opts.start.plus_millis(-30 * DAY);
    let mut bonus = LoyaltyProgram::bonus("Бонусная программа «Партнёр»", Currency::RUB, Decimal::ONE, ts_date(from));
    bonus.accrual_pct = Some(Decimal::from(2));
    bonus.points_expire_days = Some(365);
    bonus.comment = "2% of every payment back in points; a point pays a rouble".into();
    let bonus = w.create(from, bonus)?;
    let key = LoyaltyProgram::discount("Скидка ключевым клиентам", Currency::RUB, Decimal::from(5), ts_date(from));
    let key = w.create(from, key)?;
    let mut cards: BTreeMap<PartnerId, LoyaltyCardId> = BTreeMap::new();
    let mut issued = Vec::new();
    for c in &world.clients {
        let program = match c.tier {
            0 => key.id,
            _ if rng.chance(0.35) => bonus.id,
            _ => continue,
        };
        let at = c.since.plus_millis(rng.range(7, 120) * DAY);
        if at > opts.end {
            continue;
        }
        issued.push((at, c.id, program));
    }
    issued.sort_by_key(|(at, ..)| *at);
    for (n, (at, partner, program)) in issued.into_iter().enumerate() {
        let mut card = LoyaltyCard::new(format!("77{:08}", n + 1), program, partner, ts_date(at));
        card.barcode = Some(format!("299{:010}", n + 1));
        let card = w.create(at, card)?;
        cards.insert(partner, card.id);
    }
    // The completed payments of card holders, in the order they were made.
    let mut sales = Vec::new();
    w.store.read()?.for_each::<Document>(|d| {
        if d.kind == DocumentKind::Payment && d.state == DocumentState::Completed && cards.contains_key(&d.partner) {
            sales.push((d.date, d.id, d.partner));
        }
        true
    })?;
    sales.sort();
    // Redemptions come some days after the accrual that made them possible, in time order
    // with the sales: each is written when its day comes, for the balance then.
    let mut pending: std::collections::BinaryHeap<std::cmp::Reverse<(i64, LoyaltyCardId, i64)>> =
        std::collections::BinaryHeap::new();
    let spend = |w: &mut Writer<'_>, until: i64, pending: &mut std::collections::BinaryHeap<_>| -> Result<()> {
        while let Some(std::cmp::Reverse((at, card, share))) = pending.peek().copied() {
            if at > until {
                break;
            }
            pending.pop();
            w.op(Timestamp(at), None, |engine, tx| {
                let balance = tx.load::<LoyaltyCard>(card)?.balance;
                let points = (balance * Decimal::from(share) / Decimal::ONE_HUNDRED).floor();
                if points >= Decimal::ONE {
                    engine.redeem(tx, card, points, None, "оплата баллами")?;
                }
                Ok(())
            })?;
        }
        Ok(())
    };
    for (date, doc, partner) in sales {
        let at = Timestamp::start_of(date).plus_millis(12 * HOUR);
        spend(w, at.0, &mut pending)?;
        let card = cards[&partner];
        let earned = w.op(at, None, |engine, tx| engine.accrue(tx, doc))?;
        let Some(balance) = earned.last().map(|e| e.balance) else { continue };
        if balance >= Decimal::from(500) && rng.chance(0.2) {
            let later = at.plus_millis(rng.range(1, 20) * DAY).min(opts.end);
            pending.push(std::cmp::Reverse((later.0, card, rng.range(30, 100))));
        }
    }
    spend(w, i64::MAX, &mut pending)?;
    // At the end a few bonus cards are lost: blocked, or reissued with their points.
    let end = opts.end.plus_millis(-DAY);
    let mut n = cards.len();
    for (partner, card) in cards {
        let roll = rng.unit();
        if roll >= 0.02 {
            continue;
        }
        w.op(end, None, |engine, tx| {
            let c: LoyaltyCard = tx.load(card)?;
            if c.program != bonus.id {
                return Ok(());
            }
            if roll < 0.01 {
                engine.block(tx, card, c.version, "утеряна, клиент не просил перевыпуск").map(|_| ())
            } else {
                n += 1;
                let mut new = LoyaltyCard::new(format!("77{n:08}"), c.program, partner, ts_date(end));
                new.barcode = Some(format!("299{n:010}"));
                engine.reissue(tx, card, c.version, new).map(|_| ())
            }
        })?;
    }
    w.op(opts.end, None, |engine, tx| engine.expire(tx, ts_date(opts.end))).map(|_| ())
}

/// What clients claim about, per configured claim type (those the config has), with a
/// subject for each cause.
const CLAIM_SUBJECTS: &[(&str, &str)] = &[
    ("defect", "Брак: оборудование не включается"),
    ("damaged", "Повреждена упаковка и корпус при доставке"),
    ("wrong_spec", "Поставлено не по спецификации"),
    ("late", "Поставка пришла с опозданием"),
    ("short", "Недопоставка по накладной"),
    ("wrong_goods", "Привезли не тот товар"),
    ("overcharge", "Цена в счёте выше согласованной"),
    ("discount_missing", "Не применена согласованная скидка"),
    ("duplicate_invoice", "Счёт выставлен дважды"),
    ("response_time", "Долго не отвечают на обращения"),
    ("staff", "Жалоба на работу сотрудника"),
    ("support", "Техподдержка не решила проблему"),
];

/// Claims: about one completed shipment in thirty (one in six of the last quarter's, so
/// that the demo's today has claims in every state), the client claims some days later — a
/// quality, delivery or billing problem with part of the shipment's amount, now and then a
/// complaint about the service — through its counterparty. The manager takes it up, may put
/// the answer off, decides (about a third each satisfied, partly satisfied, rejected), and
/// closes it; a few are reopened and decided again. Claims of the last weeks are still open,
/// and some of them overdue. Every step is written when its day comes.
fn claims(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &World) -> Result<()> {
    let types = w.store.settings().claim_types.clone();
    if types.is_empty() {
        return Ok(());
    }
    let clients: std::collections::HashMap<PartnerId, &Client> = world.clients.iter().map(|c| (c.id, c)).collect();
    let mut shipments = Vec::new();
    w.store.read()?.for_each::<Document>(|d| {
        if d.kind == DocumentKind::Shipment && d.state == DocumentState::Completed && clients.contains_key(&d.partner) {
            shipments.push(d.clone());
        }
        true
    })?;
    shipments.sort_by_key(|d| (d.date, d.id));
    // Each claim's steps: (when, claim number, step), written in time order.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Step {
        Register,
        Review,
        Postpone(i64),
        Decide(u8),
        Close,
        Reopen,
    }
    let mut plans: Vec<(Claim, UserId)> = Vec::new();
    let mut steps: Vec<(Timestamp, usize, Step)> = Vec::new();
    let recent = ts_date(opts.end.plus_millis(-90 * DAY));
    for doc in shipments {
        if !rng.chance(if doc.date >= recent { 1.0 / 6.0 } else { 1.0 / 30.0 }) {
            continue;
        }
        let client = clients[&doc.partner];
        let at = Timestamp::start_of(doc.date).plus_millis(rng.range(2, 25) * DAY + rng.range(9, 18) * HOUR);
        if at >= opts.end {
            continue;
        }
        let ty = &types[*rng.weighted(&[(0usize, 40), (1, 35), (2, 15), (3, 10)]) % types.len()];
        let cause = &rng.pick(&ty.causes).id;
        let subject = CLAIM_SUBJECTS.iter().find(|(c, _)| c == cause).map_or("Претензия клиента", |(_, s)| s);
        let responsible = world.managers[client.manager].id;
        let mut claim = Claim::new(client.id, ty.id.clone(), cause.clone(), subject, responsible, None, None);
        claim.counterparty = doc.counterparty.filter(|c| client.counterparties.contains(c));
        claim.contact = client.contacts.first().copied();
        claim.deal = doc.deal;
        claim.document = Some(doc.id);
        claim.description = format!("По накладной {} от {}.", doc.number, doc.date);
        if ty.settled_amount_required {
            let share = Decimal::from(rng.range(3, 40)) / Decimal::ONE_HUNDRED;
            claim.claimed = Some(Money::new((doc.amount.amount * share).round_dp(0), doc.amount.currency));
        }
        let n = plans.len();
        plans.push((claim, responsible));
        steps.push((at, n, Step::Register));
        let mut t = at.plus_millis(rng.range(2, 10) * DAY + rng.range(1, 6) * HOUR);
        steps.push((t, n, Step::Review));
        if rng.chance(0.15) {
            t = t.plus_millis(rng.range(1, 5) * DAY);
            steps.push((t, n, Step::Postpone(rng.range(5, 20))));
        }
        let rounds = if rng.chance(0.05) { 2 } else { 1 };
        for round in 0..rounds {
            // Most are decided within their term; one in four drags on past it.
            let days = if rng.chance(0.25) { rng.range(12, 45) } else { rng.range(1, 10) };
            t = t.plus_millis(days * DAY);
            steps.push((t, n, Step::Decide(*rng.weighted(&[(0u8, 35), (1, 35), (2, 30)]))));
            // The settlement takes its time: the claim is closed when it is done.
            t = t.plus_millis(rng.range(2, 30) * DAY);
            steps.push((t, n, Step::Close));
            if round + 1 < rounds {
                t = t.plus_millis(rng.range(3, 20) * DAY);
                steps.push((t, n, Step::Reopen));
            }
        }
    }
    steps.retain(|(t, ..)| *t < opts.end);
    steps.sort_by_key(|(t, n, step)| (*t, *n, *step));
    let mut ids: Vec<Option<(crmkit_core::id::ClaimId, u64)>> = vec![None; plans.len()];
    for (at, n, step) in steps {
        let (plan, responsible) = &plans[n];
        if step == Step::Register {
            let c = w.op(at, Some(*responsible), |engine, tx| engine.create(tx, plan.clone()))?;
            ids[n] = Some((c.id, c.version));
            continue;
        }
        let Some((id, version)) = ids[n] else { continue };
        let c = w.op(at, Some(*responsible), |engine, tx| match step {
            Step::Register => unreachable!("written above"),
            Step::Review => engine.review_claim(tx, id, version, ""),
            Step::Postpone(days) => {
                let c: Claim = tx.load(id)?;
                let until = c.due_by() + chrono::Days::new(days as u64);
                engine.postpone_claim(tx, id, version, until, "ждём заключение экспертизы")
            }
            Step::Decide(d) => {
                let c: Claim = tx.load(id)?;
                let (decision, share, reply) = match d {
                    0 => (Decision::Satisfied, 100, "Претензия удовлетворена: возместим полностью."),
                    1 => (Decision::PartlySatisfied, 50, "Претензия удовлетворена частично, по акту проверки."),
                    _ => (Decision::Rejected, 0, "Претензия отклонена: нарушений с нашей стороны не выявлено."),
                };
                let settled = c.claimed.filter(|_| share > 0).map(|m| {
                    let amount = (m.amount * Decimal::from(share) / Decimal::ONE_HUNDRED).round_dp(0);
                    Money::new(amount, m.currency)
                });
                let settled = settled.filter(|m| !m.amount.is_zero());
                let decision = match (decision, settled) {
                    (Decision::PartlySatisfied, Some(m)) if Some(m) == c.claimed => Decision::Satisfied,
                    (Decision::PartlySatisfied | Decision::Satisfied, None) if c.claimed.is_some() => {
                        Decision::Rejected
                    }
                    (d, _) => d,
                };
                let settled = settled.filter(|_| decision != Decision::Rejected);
                engine.decide_claim(tx, id, version, decision, settled, reply)
            }
            Step::Close => engine.close_claim(tx, id, version, ""),
            Step::Reopen => engine.reopen_claim(tx, id, version, "клиент оспорил решение"),
        })?;
        ids[n] = Some((c.id, c.version));
    }
    Ok(())
}

fn company_name(rng: &mut Rng) -> (String, String) {
    let i = rng.below(ROOTS.len());
    let (suf, suf_lat) = *rng.pick(SUFFIXES);
    (format!("{}{suf}", ROOTS[i]), format!("{}{suf_lat}", ROOTS_LAT[i]))
}

fn legal_counterparty(rng: &mut Rng, name: &str, founded_year: i32) -> Counterparty {
    let (region, city) = *rng.pick(CITIES);
    let mut c = Counterparty::new(CounterpartyKind::LegalEntity, name);
    let form = *rng.weighted(&[("ООО", 80), ("АО", 15), ("ПАО", 5)]);
    let full_form = match form {
        "ООО" => "Общество с ограниченной ответственностью",
        "АО" => "Акционерное общество",
        _ => "Публичное акционерное общество",
    };
    c.name = format!("{form} «{name}»");
    c.full_name = format!("{full_form} «{name}»");
    let office = format!("{:02}", rng.range(1, 40));
    c.tax_id = Some(ru::complete_inn10(&format!("{region}{office}{}", rng.digits(5))));
    c.kpp = Some(format!("{region}{office}01001"));
    let year = format!("{:02}", founded_year.rem_euclid(100));
    c.reg_number = Some(ru::complete_ogrn(&format!("1{year}{region}{}", rng.digits(7))));
    let street = rng.pick(STREETS);
    let house = rng.range(1, 120);
    c.addresses.push(Address {
        kind: AddressKind::Legal,
        text: format!("{city}, {street}, д. {house}, офис {}", rng.range(1, 600)),
    });
    if rng.chance(0.4) {
        c.addresses.push(Address {
            kind: AddressKind::Delivery,
            text: format!("{city}, {}, д. {}, склад {}", rng.pick(STREETS), rng.range(1, 200), rng.range(1, 9)),
        });
    }
    let (bank, bik, corr) = *rng.pick(BANKS);
    let account = ru::complete_account(bik, &format!("40702810{}{}", 0, rng.digits(11)));
    c.bank_accounts.push(BankAccount {
        bank: bank.to_string(),
        bik: Some(bik.to_string()),
        swift: None,
        account,
        corr_account: Some(corr.to_string()),
        currency: Currency::RUB,
    });
    c
}

fn competitors(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &mut World) -> Result<()> {
    let at = opts.start.plus_millis(-20 * DAY);
    for name in COMPETITORS {
        let founded = 2005 + rng.range(0, 15) as i32;
        let cp = w.create(at, legal_counterparty(rng, name, founded))?;
        let mut p = Partner::new(*name, PartnerRole::Competitor);
        p.counterparties.push(cp.id);
        p.comment = "Competitor: tracked in lost deals and deal environments.".into();
        let p = w.create(at, p)?;
        world.competitors.push(p.id);
    }
    Ok(())
}

fn clients(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &mut World) -> Result<()> {
    let span = opts.end.0 - opts.start.0;
    let mut made = 0;
    while made < opts.partners {
        // Partners arrive over the first 80% of the history, older ones first.
        let since = opts.start.plus_millis((span as f64 * 0.8 * made as f64 / opts.partners as f64) as i64);
        let holding = rng.chance(0.06) && opts.partners - made > 6;
        let members = if holding { rng.range(2, 6) as usize } else { 0 };
        let parent = client(w, rng, world, since, None, holding)?;
        made += 1;
        for _ in 0..members {
            let joined = since.plus_millis(rng.range(0, 30) * DAY);
            client(w, rng, world, joined, Some(parent), false)?;
            made += 1;
        }
        // Referrals, affiliations and dealerships between existing clients.
        if world.clients.len() > 10 && rng.chance(0.12) {
            let a = world.clients[world.clients.len() - 1].id;
            let b = world.clients[rng.below(world.clients.len() - 1)].id;
            let kind = *rng.weighted(&[("recommended_by", 6), ("affiliated", 2), ("dealer_of", 2)]);
            w.create(since, PartnerLink::new(a, b, kind))?;
        }
    }
    Ok(())
}

fn client(
    w: &mut Writer<'_>,
    rng: &mut Rng,
    world: &mut World,
    since: Timestamp,
    parent: Option<PartnerId>,
    holding: bool,
) -> Result<PartnerId> {
    let (name, latin) = company_name(rng);
    let name = if holding { format!("Группа компаний «{name}»") } else { name };
    let tier = if holding || parent.is_some() { 0 } else { *rng.weighted(&[(0usize, 10), (1, 40), (2, 50)]) };
    // Key accounts belong to the key accounts department.
    let manager = if tier == 0 {
        let key: Vec<usize> = (0..world.managers.len()).filter(|&i| world.managers[i].dept == 2).collect();
        key.get(rng.below(world.managers.len() / 3)).copied().unwrap_or(0)
    } else {
        rng.below(world.managers.len())
    };
    let founded = 1995 + rng.range(0, 28) as i32;
    let mut cps = Vec::new();
    let n_cp = if holding { 1 } else { *rng.weighted(&[(1usize, 80), (2, 17), (3, 3)]) };
    for i in 0..n_cp {
        let cp_name = if i == 0 {
            name.trim_start_matches("Группа компаний ").replace(['«', '»'], "")
        } else {
            format!("{}-{}", name, i + 1)
        };
        let cp = legal_counterparty(rng, &cp_name, founded);
        cps.push(w.create(since, cp)?.id);
    }
    if !holding && rng.chance(0.05) {
        // A sole trader acting for the partner as well.
        let p = person(rng);
        let mut st = Counterparty::new(CounterpartyKind::SoleTrader, format!("ИП {}", p.name));
        st.tax_id = Some(ru::complete_inn12(&format!("{}{}", rng.pick(CITIES).0, rng.digits(8))));
        st.reg_number = Some(complete_ogrnip(&format!("3{:02}{}{}", founded % 100, rng.pick(CITIES).0, rng.digits(9))));
        cps.push(w.create(since, st)?.id);
    }
    let mut p = Partner::new(name.clone(), PartnerRole::Client);
    if rng.chance(0.08) {
        p.roles.push(PartnerRole::Supplier);
    }
    p.parent = parent;
    p.manager = Some(world.managers[manager].id);
    p.counterparties = cps.clone();
    p.segment = Some(["key", "regular", "small"][tier].to_string());
    p.source = Some(rng.weighted(SOURCES).to_string());
    p.custom.insert("industry".into(), CustomValue::Enum(rng.weighted(INDUSTRIES).to_string()));
    let employees = [(500, 20_000), (50, 800), (5, 120)][tier];
    p.custom.insert("employees".into(), CustomValue::Number(Decimal::from(rng.range(employees.0, employees.1))));
    let p = w.create(since, p)?;

    let domain = format!("{latin}.ru");
    let mut contacts = Vec::new();
    let n_contacts = [rng.range(3, 7), rng.range(2, 5), rng.range(1, 3)][tier] as usize;
    for i in 0..n_contacts {
        let who = person(rng);
        let (position, role) = if i == 0 { POSITIONS[0] } else { *rng.pick(&POSITIONS[1..]) };
        let mut c = ContactPerson::new(p.id, who.name);
        c.position = position.to_string();
        c.decision_role = role.map(str::to_string);
        c.phones.push(format!("+79{}", rng.digits(9)));
        if rng.chance(0.3) {
            c.phones.push(format!("+7 (495) {}-{}-{}", rng.digits(3), rng.digits(2), rng.digits(2)));
        }
        c.emails.push(format!("{}@{domain}", who.email_local));
        c.attitude = Some(*rng.weighted(&[(Attitude::Supporter, 3), (Attitude::Neutral, 6), (Attitude::Opponent, 1)]));
        contacts.push(w.create(since, c)?.id);
    }
    for pair in contacts.windows(2).skip(1) {
        if rng.chance(0.5) {
            w.create(since, ContactLink::new(pair[1], contacts[0], "reports_to"))?;
        }
    }
    if let Some(parent) = parent {
        w.create(since, PartnerLink::new(parent, p.id, "holding"))?;
    }
    world.clients.push(Client { id: p.id, name, manager, counterparties: cps, contacts, tier, since });
    Ok(p.id)
}

/// The deal field `equipment` (a multi-valued enum), when the config declares it so: the
/// values a deal holds are declared ones, each once, in the declared order.
struct Equipment {
    values: Vec<String>,
}

impl Equipment {
    const FIELD: &'static str = "equipment";

    fn declared(settings: &crmkit_core::config::Settings) -> Option<Equipment> {
        use crmkit_core::model::CustomFieldType;
        let def = settings.custom_fields_of(EntityKind::Deal).iter().find(|d| d.name == Self::FIELD)?;
        match &def.ty {
            CustomFieldType::Enum { values, multiple: true } if !values.is_empty() => {
                Some(Equipment { values: values.clone() })
            }
            _ => None,
        }
    }

    /// What a deal selling `product` supplies, as its manager records it: about three deals in
    /// four have it; the product's own kind of equipment where it has one, and projects and
    /// tenders often more kinds at once. `None` when not recorded.
    fn kit(&self, rng: &mut Rng, kind: &str, product: &str) -> Option<CustomValue> {
        if !rng.chance(0.75) {
            return None;
        }
        let main = match product {
            "Насосная станция" => "pumps",
            "Датчик давления" => "valves",
            "Промышленный контроллер" | "Частотный преобразователь" | "Шкаф управления" | "Лицензия SCADA" => {
                "automation"
            }
            _ => "",
        };
        let extra = match kind {
            "project" => 0.45,
            "tender" => 0.3,
            _ => 0.12,
        };
        let mut chosen: Vec<bool> = self.values.iter().map(|v| v == main).collect();
        if !chosen.contains(&true) {
            let i = rng.below(self.values.len());
            chosen[i] = true;
        }
        for c in chosen.iter_mut() {
            if rng.chance(extra) {
                *c = true;
            }
        }
        let set = self.values.iter().zip(chosen).filter(|(_, c)| *c).map(|(v, _)| v.clone()).collect();
        Some(CustomValue::EnumSet(set))
    }
}

/// Appends the check digit of a 15-digit OGRNIP: (first 14 digits mod 13) mod 10.
fn complete_ogrnip(first14: &str) -> String {
    let n: u64 = first14.parse().expect("14 digits");
    format!("{first14}{}", n % 13 % 10)
}

fn ts_date(t: Timestamp) -> NaiveDate {
    t.date()
}

/// The instant `f` of the way from `a` to `b`.
fn between(a: Timestamp, b: Timestamp, f: f64) -> Timestamp {
    a.plus_millis(((b.0 - a.0) as f64 * f) as i64)
}

/// `d` days in milliseconds.
fn days(d: f64) -> i64 {
    (d * DAY as f64) as i64
}

fn deals(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &World) -> Result<()> {
    let span = opts.end.0 - opts.start.0;
    let settings = w.store.settings().clone();
    let kinds: Vec<(usize, u32)> = KINDS.iter().enumerate().map(|(i, k)| (i, k.weight)).collect();
    let equipment = Equipment::declared(&settings);
    // Its own stream, so that the field does not change the rest of the company.
    let mut kit_rng = Rng(opts.seed ^ 0x0E91_95E4);
    let mut comebacks = Vec::new();
    for n in 0..opts.deals {
        // Deals start evenly over the history, with growth: more deals in the second year.
        let f = (n as f64 / opts.deals as f64).sqrt();
        let start = opts.start.plus_millis((span as f64 * f) as i64 + rng.range(0, 8 * HOUR));
        let eligible = world.clients.partition_point(|c| c.since <= start).max(1);
        // Key accounts buy more often.
        let client = loop {
            let c = &world.clients[rng.below(eligible)];
            if rng.chance([1.0, 0.55, 0.3][c.tier]) {
                break c;
            }
        };
        let profile = &KINDS[*rng.weighted(&kinds)];
        let kind = settings.process_kind(profile.id).ok_or_else(|| {
            crmkit_core::Error::NotAllowed(format!("the demo needs process kind \"{}\" in its config", profile.id))
        })?;
        let tier_factor = [3.0, 1.0, 0.35][client.tier];
        let amount = rng.amount(profile.amount.0 * tier_factor, profile.amount.1 * tier_factor);
        let currency =
            if rng.chance(0.04) { *rng.pick(&[Currency::USD, Currency::EUR, Currency::CNY]) } else { Currency::RUB };
        let amount = if currency == Currency::RUB { amount } else { (amount / Decimal::from(90)).round_dp(0) };
        let manager = if rng.chance(0.85) { &world.managers[client.manager] } else { rng.pick(&world.managers) };
        let product = rng.pick(PRODUCTS);
        let title = match profile.id {
            "tender" => format!("Тендер №{}: {}", rng.digits(11), product.0.to_lowercase()),
            "project" => format!("Проект модернизации: {}", client.name),
            "repeat_sale" => format!("Повторная поставка: {}", product.0.to_lowercase()),
            _ => format!("{} для {}", product.0, client.name),
        };
        let mut deal = Deal::new(title, client.id, profile.id, None, manager.id, Money::new(amount, currency));
        deal.counterparty = Some(client.counterparties[0]);
        // What the manager knows at the start; what a stage requires is often filled in there.
        let required = |f: &str| kind.stages.iter().any(|s| s.required_fields.iter().any(|r| r == f));
        if !required("source") || rng.chance(0.75) {
            deal.source = Some(rng.weighted(SOURCES).to_string());
        }
        let typical = if kind.stages.is_empty() {
            (profile.cycle_days.0 + profile.cycle_days.1) as f64 / 2.0
        } else {
            profile.stages.iter().map(|s| s.days).sum::<f64>()
        };
        if !required("expected_close") || rng.chance(0.3) {
            let pace = manager.pace * TIER_PACE[client.tier];
            deal.expected_close = Some(ts_date(start.plus_millis(days(typical * pace))));
        }
        if profile.id == "tender" && rng.chance(0.6) {
            deal.custom.insert("tender_number".into(), CustomValue::String(format!("32{}", rng.digits(9))));
        }
        deal.custom.insert("delivery_region".into(), CustomValue::Enum(rng.pick(REGIONS).to_string()));
        if let Some(kit) = equipment.as_ref().and_then(|e| e.kit(&mut kit_rng, profile.id, product.0)) {
            deal.custom.insert(Equipment::FIELD.into(), kit);
        }
        let deal = w.op(start, Some(deal.manager), |e, tx| e.create_deal(tx, deal))?;

        let qty = Decimal::from(1 + rng.below(20) as i64);
        let price = (amount / qty).round_dp(2);
        // Some deals stall for months in one stage; some are put on hold once.
        let stages = kind.stages.len();
        let stuck = (stages > 0 && rng.chance(0.03)).then(|| rng.below(stages));
        let hold = rng.chance(if stages > 0 { 0.08 } else { 0.15 }).then(|| rng.below(stages.max(1)));
        let mut story = Story {
            kind,
            profile,
            client,
            manager,
            competitors: &world.competitors,
            product,
            qty,
            price,
            deal,
            now: start,
            end: opts.end,
            rival: None,
            quote: None,
            stuck,
            hold,
            backs: 0,
            reopened: false,
        };
        story.environment(w, rng)?;
        story.live(w, rng)?;
        match story.comeback(rng) {
            Some(at) => comebacks.push((at, story)),
            None => story.count(w),
        }
    }
    // Now and then a lost deal comes back: the head of the department reopens it, and it
    // lives on. Reopening takes a head, so these run last, in a transaction per head.
    for (dept, head) in world.heads.iter().enumerate() {
        w.act_as(Some(*head))?;
        for (at, story) in comebacks.iter_mut().filter(|(_, s)| s.manager.dept == dept) {
            story.reopen(w, *at)?;
        }
    }
    w.act_as(None)?;
    for (_, mut story) in comebacks {
        story.live(w, rng)?;
        story.count(w);
    }
    Ok(())
}

/// One deal living its history through the process engine.
struct Story<'s> {
    kind: &'s ProcessKindSpec,
    profile: &'static KindProfile,
    client: &'s Client,
    manager: &'s Manager,
    competitors: &'s [PartnerId],
    product: &'static (&'static str, &'static str, f64),
    qty: Decimal,
    price: Decimal,
    /// The deal as stored now.
    deal: Deal,
    /// The instant of the last operation: the next one is never earlier.
    now: Timestamp,
    /// "Today": nothing happens after it.
    end: Timestamp,
    /// The competitor in the deal's environment.
    rival: Option<PartnerId>,
    quote: Option<Document>,
    /// The stage (position) where the deal stalls for months.
    stuck: Option<usize>,
    /// The stage (position; 0 without stages) where the deal is put on hold.
    hold: Option<usize>,
    /// Steps back so far.
    backs: u32,
    reopened: bool,
}

impl Story<'_> {
    /// Moves the story's clock to `t` (never back). `None` when that is after "today": the
    /// deal stays as it is.
    fn at(&mut self, t: Timestamp) -> Option<Timestamp> {
        let t = t.max(self.now);
        if t > self.end {
            return None;
        }
        self.now = t;
        Some(t)
    }

    /// The environment: the client's people, sometimes a competitor.
    fn environment(&mut self, w: &mut Writer<'_>, rng: &mut Rng) -> Result<()> {
        let start = self.now;
        let deal = self.deal.id;
        let mut participants = Vec::new();
        for c in self.client.contacts.iter().take(1 + rng.below(3)) {
            let role = if participants.is_empty() {
                "decision_maker"
            } else {
                *rng.pick(&["influencer", "user", "gatekeeper"])
            };
            let mut p = Participant::contact(deal, *c, role);
            p.influence = Some(if participants.is_empty() {
                Influence::High
            } else {
                *rng.pick(&[Influence::Low, Influence::Medium])
            });
            p.attitude = Some(*rng.pick(&[Attitude::Supporter, Attitude::Neutral, Attitude::Opponent]));
            participants.push(w.create(start.plus_millis(HOUR / 4), p)?.id);
        }
        if rng.chance(0.45) {
            let comp = *rng.pick(self.competitors);
            let mut p = Participant::partner(deal, comp, "competitor");
            p.influence = Some(Influence::Medium);
            participants.push(w.create(start.plus_millis(HOUR / 2), p)?.id);
            self.rival = Some(comp);
        }
        if participants.len() >= 2 && rng.chance(0.4) {
            w.create(
                start.plus_millis(HOUR / 2),
                ParticipantLink::new(deal, participants[1], participants[0], "influences"),
            )?;
        }
        Ok(())
    }

    /// Lives the deal from where it is to its close, or to "today".
    fn live(&mut self, w: &mut Writer<'_>, rng: &mut Rng) -> Result<()> {
        if self.kind.stages.is_empty() {
            self.project(w, rng)
        } else {
            self.route(w, rng)
        }
    }

    /// Counts the deal, as it is "today", into the summary.
    fn count(&self, w: &mut Writer<'_>) {
        let d = &self.deal;
        *w.summary.deals_by_status.entry(d.status.name()).or_default() += 1;
        if !d.status.is_closed() {
            *w.summary.pipeline.entry(d.amount.currency).or_default() += d.amount.amount;
        }
    }

    /// A deal of a kind with stages, from its stage to its close (or "today").
    fn route(&mut self, w: &mut Writer<'_>, rng: &mut Rng) -> Result<()> {
        let kind = self.kind;
        let n = kind.stages.len();
        loop {
            let pos = self.deal.stage.as_deref().and_then(|s| kind.position(s)).ok_or_else(|| {
                crmkit_core::Error::Process { deal: self.deal.id.0, message: "has no stage of its kind".into() }
            })?;
            let spec = &kind.stages[pos];
            let sp = self.profile.stage(&spec.id);
            let entered = self.now;
            let mut dwell = days(sp.days * self.manager.pace * TIER_PACE[self.client.tier] * rng.spread());
            if self.stuck == Some(pos) {
                self.stuck = None;
                dwell = rng.range(150, 450) * DAY;
            }
            let lost = rng.chance(sp.loss * (2.0 - self.manager.skill) * TIER_LOSS[self.client.tier]);
            if lost {
                dwell = (dwell as f64 * (0.3 + 0.7 * rng.unit())) as i64;
            }
            let mut leave = entered.plus_millis(dwell.max(2 * HOUR));
            if sp.quote {
                self.issue_quote(w, between(entered, leave, 0.15))?;
            }
            if self.hold == Some(pos) {
                self.hold = None;
                let at = between(entered, leave, 0.2 + 0.4 * rng.unit());
                self.talk(w, rng, entered, at)?;
                match self.pause(w, rng, at)? {
                    Some(paused) => leave = leave.plus_millis(paused),
                    None => return Ok(()),
                }
            }
            self.talk(w, rng, self.now, leave)?;
            let (id, version) = (self.deal.id, self.deal.version);
            if lost {
                let Some(at) = self.at(leave) else { return Ok(()) };
                return self.lose(w, rng, at, pos * 2 < n);
            }
            let reachable = |forward: bool| {
                spec.to.iter().filter_map(|t| kind.position(t)).filter(move |&p| (p > pos) == forward && p != pos)
            };
            let back = reachable(false).max();
            let forward = reachable(true).min();
            if let Some(b) = back.filter(|_| self.backs < 2 && rng.chance(sp.back)) {
                self.backs += 1;
                let Some(at) = self.at(leave) else { return Ok(()) };
                let note = *rng.pick(BACK_NOTES);
                self.deal = w.op(at, Some(self.deal.manager), |e, tx| {
                    e.move_deal(tx, id, version, &kind.stages[b].id, Some(note))
                })?;
                continue;
            }
            match forward {
                None => {
                    // The end of the route.
                    if kind.mode == Mode::Managed {
                        self.prepare(w, rng, spec, leave)?;
                    }
                    let Some(at) = self.at(leave) else { return Ok(()) };
                    return self.win(w, rng, at);
                }
                Some(_) if kind.mode == Mode::Managed => {
                    self.prepare(w, rng, spec, leave)?;
                    if !self.finish_tasks(w, rng, spec, leave)? {
                        return Ok(());
                    }
                    // Done tasks move the deal on; a stage without required tasks is advanced.
                    if self.deal.stage.as_deref() == Some(spec.id.as_str()) {
                        let Some(at) = self.at(leave) else { return Ok(()) };
                        let (id, version) = (self.deal.id, self.deal.version);
                        self.deal = w.op(at, Some(self.deal.manager), |e, tx| e.advance(tx, id, version))?;
                    }
                }
                Some(f) => {
                    self.prepare(w, rng, spec, leave)?;
                    let Some(at) = self.at(leave) else { return Ok(()) };
                    let (id, version) = (self.deal.id, self.deal.version);
                    self.deal = w.op(at, Some(self.deal.manager), |e, tx| {
                        e.move_deal(tx, id, version, &kind.stages[f].id, None)
                    })?;
                }
            }
        }
    }

    /// A deal of a kind without stages: a long project that is won or lost at its end.
    fn project(&mut self, w: &mut Writer<'_>, rng: &mut Rng) -> Result<()> {
        let (lo, hi) = self.profile.cycle_days;
        let start = self.now;
        let cycle = days(rng.range(lo, hi) as f64 * self.manager.pace * TIER_PACE[self.client.tier]);
        let won = rng.chance((self.profile.win_rate * self.manager.skill).min(0.95));
        let mut close = start.plus_millis(if won { cycle } else { (cycle as f64 * (0.2 + 0.8 * rng.unit())) as i64 });
        if rng.chance(0.04) {
            close = close.plus_millis(rng.range(300, 700) * DAY);
        }
        self.issue_quote(w, between(start, close, 0.15))?;
        if self.hold.take().is_some() {
            let at = between(start, close, 0.2 + 0.5 * rng.unit());
            self.talk(w, rng, start, at)?;
            match self.pause(w, rng, at)? {
                Some(paused) => close = close.plus_millis(paused),
                None => return Ok(()),
            }
        }
        self.talk(w, rng, self.now, close)?;
        let Some(at) = self.at(close) else { return Ok(()) };
        if won {
            return self.win(w, rng, at);
        }
        let early = rng.chance(0.4);
        self.lose(w, rng, at, early)
    }

    /// Puts the deal on hold at `at`; then it is resumed (`Some`: after how long), given up,
    /// or still on hold "today" (`None`: the story is over).
    fn pause(&mut self, w: &mut Writer<'_>, rng: &mut Rng, at: Timestamp) -> Result<Option<i64>> {
        let Some(at) = self.at(at) else { return Ok(None) };
        let (id, version) = (self.deal.id, self.deal.version);
        let comment = *rng.pick(HOLD_COMMENTS);
        self.deal = w.op(at, Some(self.deal.manager), |e, tx| e.hold(tx, id, version, comment))?;
        match *rng.weighted(&[(0u8, 50), (1, 30), (2, 20)]) {
            0 => {
                let Some(back) = self.at(at.plus_millis(rng.range(14, 120) * DAY)) else { return Ok(None) };
                let version = self.deal.version;
                self.deal = w.op(back, Some(self.deal.manager), |e, tx| e.resume(tx, id, version, ""))?;
                Ok(Some(back.0 - at.0))
            }
            1 => {
                let Some(given_up) = self.at(at.plus_millis(rng.range(30, 200) * DAY)) else { return Ok(None) };
                let reason = self.reason(rng, HOLD_LOSS);
                self.close_lost(w, rng, given_up, reason)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Fills in what the stage requires before the deal may leave it forward: its required
    /// fields and checklist, at times before `leave`.
    fn prepare(&mut self, w: &mut Writer<'_>, rng: &mut Rng, spec: &StageSpec, leave: Timestamp) -> Result<()> {
        let fields: Vec<&String> = spec.required_fields.iter().filter(|f| !field_is_set(&self.deal, f)).collect();
        let items: Vec<&str> = spec
            .checklist
            .iter()
            .map(|i| i.id.as_str())
            .filter(|i| !self.deal.checklist.iter().any(|c| c == i))
            .collect();
        let steps = fields.len() + items.len();
        let from = self.now;
        for (i, field) in fields.into_iter().enumerate() {
            let Some(at) = self.at(between(from, leave, (i as f64 + rng.unit()) / steps as f64)) else { return Ok(()) };
            let mut d = self.deal.clone();
            match field.as_str() {
                "source" => d.source = Some(rng.weighted(SOURCES).to_string()),
                "expected_close" => {
                    let rest = self.profile.stages.iter().skip_while(|s| s.id != spec.id).map(|s| s.days).sum::<f64>();
                    d.expected_close = Some(ts_date(leave.plus_millis(days(rest * self.manager.pace))));
                }
                "custom.tender_number" => {
                    d.custom.insert("tender_number".into(), CustomValue::String(format!("32{}", rng.digits(9))));
                }
                // Anything else: the engine names what is missing.
                _ => continue,
            }
            self.deal = w.op(at, Some(self.deal.manager), |e, tx| e.update(tx, d))?;
        }
        let done = steps - items.len();
        for (i, item) in items.into_iter().enumerate() {
            let f = ((done + i) as f64 + rng.unit()) / steps as f64;
            let Some(at) = self.at(between(from, leave, f)) else { return Ok(()) };
            let (id, version) = (self.deal.id, self.deal.version);
            self.deal = w.op(at, Some(self.deal.manager), |e, tx| e.set_checked(tx, id, version, item, true))?;
        }
        Ok(())
    }

    /// Completes the open tasks of the current stage (of a managed kind), the last required
    /// one at `leave`; `false` when "today" comes first.
    fn finish_tasks(&mut self, w: &mut Writer<'_>, rng: &mut Rng, spec: &StageSpec, leave: Timestamp) -> Result<bool> {
        let id = self.deal.id;
        let mut tasks: Vec<_> = w
            .tx()?
            .tasks_of_deal(id)?
            .into_iter()
            .filter(|t| t.status == TaskStatus::Open && t.stage.as_deref() == Some(spec.id.as_str()))
            .collect();
        // Optional tasks first: once the required ones are done the deal moves on.
        tasks.sort_by_key(|t| t.required);
        let from = self.now;
        let n = tasks.len();
        for (i, task) in tasks.into_iter().enumerate() {
            if !task.required && rng.chance(0.3) {
                continue;
            }
            let when = if i + 1 == n { leave } else { between(from, leave, (i as f64 + rng.unit()) / n as f64) };
            let Some(at) = self.at(when) else { return Ok(false) };
            w.op(at, Some(task.executor), |e, tx| e.complete_task(tx, task.id, task.version))?;
        }
        self.deal = w.tx()?.load(id)?;
        Ok(true)
    }

    /// A loss reason of the kind, weighted by `table`.
    fn reason(&self, rng: &mut Rng, table: &[(&'static str, u32)]) -> String {
        let usable: Vec<(&str, u32)> =
            table.iter().copied().filter(|(r, _)| self.kind.loss_reasons.iter().any(|k| k == r)).collect();
        if usable.is_empty() {
            rng.pick(&self.kind.loss_reasons).clone()
        } else {
            rng.weighted(&usable).to_string()
        }
    }

    fn lose(&mut self, w: &mut Writer<'_>, rng: &mut Rng, at: Timestamp, early: bool) -> Result<()> {
        let reason = self.reason(rng, if early { EARLY_LOSS } else { LATE_LOSS });
        self.close_lost(w, rng, at, reason)
    }

    fn close_lost(&mut self, w: &mut Writer<'_>, rng: &mut Rng, at: Timestamp, reason: String) -> Result<()> {
        let to_rival = matches!(reason.as_str(), "price" | "competitor_product");
        // Lost on price or product: usually to the competitor that was in the deal.
        let mut competitor = match self.rival {
            Some(c) if to_rival && rng.chance(0.85) => Some(c),
            _ if to_rival && rng.chance(0.3) => Some(*rng.pick(self.competitors)),
            _ => None,
        };
        if self.kind.require_competitor && competitor.is_none() {
            competitor = Some(self.rival.unwrap_or(*rng.pick(self.competitors)));
        }
        let mut comment = match reason.as_str() {
            "price" if rng.chance(0.5) => format!("Цена выше, чем у конкурента, на {}%", rng.range(5, 30)),
            "competitor_product" if rng.chance(0.5) => "Клиент выбрал решение конкурента".to_string(),
            _ => String::new(),
        };
        if self.kind.require_loss_comment && comment.is_empty() {
            comment = "Клиент отказался".to_string();
        }
        let (id, version) = (self.deal.id, self.deal.version);
        let outcome = Outcome::Lost { reason, competitor, comment };
        self.deal = w.op(at, Some(self.deal.manager), |e, tx| e.close(tx, id, version, outcome))?;
        self.settle_quote(w, DocumentState::Cancelled)
    }

    /// Whether, and when, a lost deal comes back (once at most).
    fn comeback(&mut self, rng: &mut Rng) -> Option<Timestamp> {
        if self.deal.status != DealStatus::Lost || self.reopened || !rng.chance(0.04) {
            return None;
        }
        let at = self.now.plus_millis(rng.range(7, 60) * DAY);
        (at <= self.end).then_some(at)
    }

    /// Reopens the lost deal at `at`, in the stage it was lost in.
    fn reopen(&mut self, w: &mut Writer<'_>, at: Timestamp) -> Result<()> {
        let at = self.at(at).expect("a comeback is before the end");
        self.reopened = true;
        let (id, version) = (self.deal.id, self.deal.version);
        self.deal = w.op(at, None, |e, tx| e.reopen(tx, id, version, None, ""))?;
        // The client is waiting for the quote again.
        self.settle_quote(w, DocumentState::Issued)
    }

    /// Closes the deal as won at `at`, with its order, invoice, shipment and payment.
    fn win(&mut self, w: &mut Writer<'_>, rng: &mut Rng, at: Timestamp) -> Result<()> {
        let (id, version) = (self.deal.id, self.deal.version);
        self.deal = w.op(at, Some(self.deal.manager), |e, tx| {
            e.close(tx, id, version, Outcome::Won { comment: String::new() })
        })?;
        self.settle_quote(w, DocumentState::Agreed)?;
        let end = self.end;
        // Delivery is promised in 14 days; payment terms are 10, 20 or 30 days from the
        // invoice (taken from the document count, so the random draws stay as they were).
        // Shipments and payments come 3–30 and 2–45 days after the win, so some are late.
        let delivery = ts_date(at.plus_millis(14 * DAY));
        let order = self.document(w, DocumentKind::Order, at, DocumentState::Agreed, Some(delivery))?;
        let invoiced = at.plus_millis(DAY).min(end);
        let terms = 10 * (1 + (w.documents % 3) as i64);
        let pay_by = ts_date(invoiced.plus_millis(terms * DAY));
        self.document(w, DocumentKind::Invoice, invoiced, DocumentState::Completed, Some(pay_by))?;
        let shipped = at.plus_millis(rng.range(3, 30) * DAY);
        let state = if shipped <= end { DocumentState::Completed } else { DocumentState::Issued };
        let ship_date = ts_date(shipped.min(end));
        self.document(w, DocumentKind::Shipment, shipped.min(end), state, order.due.filter(|d| *d >= ship_date))?;
        let paid = at.plus_millis(rng.range(2, 45) * DAY);
        if paid <= end && rng.chance(0.93) {
            self.document(w, DocumentKind::Payment, paid, DocumentState::Completed, None)?;
        }
        Ok(())
    }

    /// Sends the client the quote (once per deal).
    fn issue_quote(&mut self, w: &mut Writer<'_>, at: Timestamp) -> Result<()> {
        if self.quote.is_none() && at <= self.end {
            self.quote = Some(self.document(w, DocumentKind::Quote, at.max(self.now), DocumentState::Issued, None)?);
        }
        Ok(())
    }

    /// The quote is agreed when the deal is won, cancelled when it is lost, open again when
    /// the deal is reopened.
    fn settle_quote(&mut self, w: &mut Writer<'_>, state: DocumentState) -> Result<()> {
        if let Some(mut q) = self.quote.take() {
            if q.state != state {
                q.state = state;
                q = w.update(self.now, q)?;
            }
            self.quote = Some(q);
        }
        Ok(())
    }

    fn document(
        &self,
        w: &mut Writer<'_>,
        kind: DocumentKind,
        at: Timestamp,
        state: DocumentState,
        due: Option<NaiveDate>,
    ) -> Result<Document> {
        w.documents += 1;
        let prefix = match kind {
            DocumentKind::Quote => "КП",
            DocumentKind::Invoice => "СЧ",
            DocumentKind::Order => "ЗК",
            DocumentKind::Shipment => "РН",
            DocumentKind::Payment => "ПП",
        };
        let date = ts_date(at);
        let total = (self.price * self.qty).round_dp(2);
        let mut d = Document::new(
            kind,
            format!("{prefix}-{:02}-{:07}", date.year() % 100, w.documents),
            date,
            self.client.id,
            Money::new(total, self.deal.amount.currency),
        );
        d.deal = Some(self.deal.id);
        d.counterparty = Some(self.client.counterparties[0]);
        d.state = state;
        d.due = due;
        if kind != DocumentKind::Payment {
            d.lines.push(DocumentLine {
                item: self.product.0.to_string(),
                qty: self.qty,
                unit: Some(self.product.1.to_string()),
                price: self.price,
            });
        }
        w.create(at, d)
    }

    /// Calls, letters, meetings and notes between `from` and `to` (never after "today").
    fn talk(&mut self, w: &mut Writer<'_>, rng: &mut Rng, from: Timestamp, to: Timestamp) -> Result<()> {
        let to = to.min(self.end);
        if to <= from {
            return Ok(());
        }
        let span = to.0 - from.0;
        let most = if self.kind.stages.is_empty() { 8 } else { 2 };
        let n = rng.below(2) + ((span / (6 * DAY)) as usize).min(most);
        for i in 0..n {
            let at = from.plus_millis((span as f64 * (i as f64 + 0.1 + 0.8 * rng.unit()) / n as f64) as i64);
            let kind = *rng.weighted(&[
                (InteractionKind::Call, 40),
                (InteractionKind::Email, 35),
                (InteractionKind::Meeting, 15),
                (InteractionKind::Note, 10),
            ]);
            let subject = match kind {
                InteractionKind::Call => {
                    *rng.pick(&["Уточнение потребности", "Обсуждение сроков", "Звонок по КП", "Согласование цены"])
                }
                InteractionKind::Email => *rng.pick(&[
                    "Коммерческое предложение",
                    "Технические требования",
                    "Вопросы по договору",
                    "Спецификация",
                ]),
                InteractionKind::Meeting => {
                    *rng.pick(&["Встреча на объекте", "Презентация решения", "Переговоры по условиям"])
                }
                InteractionKind::Note => *rng.pick(&[
                    "Клиент сравнивает с конкурентом",
                    "Бюджет согласуют в следующем квартале",
                    "Нужен расчёт доставки",
                ]),
            };
            let mut it = Interaction::new(kind, at, self.client.id, subject);
            it.deal = Some(self.deal.id);
            it.author = Some(self.manager.id);
            if kind != InteractionKind::Note {
                it.direction = Some(if rng.chance(0.6) { Direction::Outgoing } else { Direction::Incoming });
                it.contacts.push(*rng.pick(&self.client.contacts));
            }
            if matches!(kind, InteractionKind::Call | InteractionKind::Meeting) {
                it.duration_min =
                    Some([rng.range(2, 25), rng.range(30, 120)][(kind == InteractionKind::Meeting) as usize] as u32);
            }
            w.create(at, it)?;
        }
        Ok(())
    }
}
