//! The demo company: a realistic, deterministic synthetic sales department.
//!
//! `populate` fills a fresh store with managers in three departments, client partners (some
//! of them holdings with subsidiaries) with their counterparties — valid INN, KPP, OGRN and
//! bank accounts — contact persons and links, competitors, and deals of every process kind
//! and status spread over two years, each with its environment, interactions and documents.
//! The same seed always gives the same company. The store's clock is a [`ManualClock`] the
//! generator moves, so every record carries the time it "happened".

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::id::{ContactId, CounterpartyId, PartnerId, UserId};
use crate::model::{
    Address, AddressKind, Attitude, BankAccount, ContactLink, ContactPerson, Counterparty, CounterpartyKind,
    CustomValue, Deal, DealStatus, Direction, Document, DocumentKind, DocumentLine, DocumentState, EntityKind,
    Influence, Interaction, InteractionKind, Participant, ParticipantLink, Partner, PartnerLink, PartnerRole, Role,
    User,
};
use crate::store::{Durability, Store, WriteTxn};
use crate::time::{ManualClock, Timestamp};
use crate::values::{ru, Currency, Money};
use crate::Result;

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
        (self.managers + self.partners * 7 + self.deals * 8) as u64
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
/// dependency's random algorithm does.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
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
const LOSS_REASONS: &[(&str, u32)] = &[
    ("price", 30),
    ("competitor_product", 18),
    ("no_budget", 15),
    ("no_decision", 14),
    ("lost_contact", 10),
    ("terms", 8),
    ("requirements", 5),
];
const SOURCES: &[(&str, u32)] = &[
    ("website", 25),
    ("referral", 15),
    ("cold_call", 15),
    ("exhibition", 10),
    ("tender", 10),
    ("existing_client", 25),
];
const REGIONS: &[&str] = &["central", "north_west", "volga", "urals", "siberia", "south", "far_east"];

/// The process kinds of the demo config with their share of deals, amount range and
/// win rate.
struct KindProfile {
    id: &'static str,
    weight: u32,
    amount: (f64, f64),
    win_rate: f64,
    cycle_days: (i64, i64),
}

const KINDS: &[KindProfile] = &[
    KindProfile { id: "b2b_sale", weight: 50, amount: (300e3, 15e6), win_rate: 0.32, cycle_days: (20, 120) },
    KindProfile { id: "tender", weight: 15, amount: (1e6, 60e6), win_rate: 0.22, cycle_days: (30, 90) },
    KindProfile { id: "repeat_sale", weight: 30, amount: (50e3, 2e6), win_rate: 0.62, cycle_days: (5, 40) },
    KindProfile { id: "project", weight: 5, amount: (5e6, 120e6), win_rate: 0.4, cycle_days: (90, 300) },
];

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
    managers: Vec<(UserId, usize)>,
    competitors: Vec<PartnerId>,
    clients: Vec<Client>,
}

struct Client {
    id: PartnerId,
    name: String,
    manager: UserId,
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
    in_batch: usize,
    batch: usize,
    summary: Summary,
    written: u64,
    phase: &'static str,
    progress: &'a mut dyn FnMut(Progress),
}

impl<'a> Writer<'a> {
    fn tx(&mut self) -> Result<&mut WriteTxn<'a>> {
        if self.tx.is_none() {
            let mut tx = self.store.write(None)?;
            tx.set_durability(Durability::Deferred);
            self.tx = Some(tx);
        }
        Ok(self.tx.as_mut().expect("just set"))
    }

    fn create<E: crate::model::Entity>(&mut self, at: Timestamp, e: E) -> Result<E> {
        self.clock.set(at);
        let e = self.tx()?.create(e)?;
        *self.summary.counts.entry(E::KIND).or_default() += 1;
        self.written += 1;
        self.in_batch += 1;
        if self.in_batch >= self.batch {
            self.flush(Durability::Immediate)?;
        }
        Ok(e)
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
        in_batch: 0,
        batch: opts.batch.max(1),
        summary: Summary::default(),
        written: 0,
        phase: "people",
        progress,
    };
    let mut world = World { managers: Vec::new(), competitors: Vec::new(), clients: Vec::new() };
    users(&mut w, &mut rng, opts, &mut world)?;
    w.phase = "partners";
    competitors(&mut w, &mut rng, opts, &mut world)?;
    clients(&mut w, &mut rng, opts, &mut world)?;
    // Deals pick among the clients that exist by their start: keep them in order of arrival.
    world.clients.sort_by_key(|c| c.since);
    w.phase = "deals";
    deals(&mut w, &mut rng, opts, &world)?;
    w.flush(Durability::Immediate)?;
    Ok(w.summary)
}

fn users(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &mut World) -> Result<()> {
    let at = opts.start.plus_millis(-30 * DAY);
    for (d, dept) in DEPARTMENTS.iter().enumerate() {
        let p = person(rng);
        let mut head = User::new(format!("head{}.{}", d + 1, p.email_local.replace('.', "_")), p.name, Role::Head);
        head.department = Some(dept.to_string());
        head.email = Some(format!("{}@demo-company.ru", head.login));
        w.create(at, head)?;
    }
    for i in 0..opts.managers {
        let p = person(rng);
        let dept = i % DEPARTMENTS.len();
        let mut u = User::new(format!("m{:03}.{}", i + 1, p.email_local.replace('.', "_")), p.name, Role::Manager);
        u.department = Some(DEPARTMENTS[dept].to_string());
        u.email = Some(format!("{}@demo-company.ru", u.login));
        let u = w.create(at, u)?;
        world.managers.push((u.id, dept));
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
    let (manager, _) = if tier == 0 {
        *world
            .managers
            .iter()
            .filter(|(_, d)| *d == 2)
            .nth(rng.below(world.managers.len() / 3))
            .unwrap_or(&world.managers[0])
    } else {
        world.managers[rng.below(world.managers.len())]
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
    p.manager = Some(manager);
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

/// Appends the check digit of a 15-digit OGRNIP: (first 14 digits mod 13) mod 10.
fn complete_ogrnip(first14: &str) -> String {
    let n: u64 = first14.parse().expect("14 digits");
    format!("{first14}{}", n % 13 % 10)
}

fn ts_date(t: Timestamp) -> NaiveDate {
    t.date()
}

fn deals(w: &mut Writer<'_>, rng: &mut Rng, opts: &DemoOptions, world: &World) -> Result<()> {
    let span = opts.end.0 - opts.start.0;
    let kinds: Vec<(usize, u32)> = KINDS.iter().enumerate().map(|(i, k)| (i, k.weight)).collect();
    let mut doc_no = 0u64;
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
        let stages: Vec<String> = w
            .store
            .settings()
            .process_kind(profile.id)
            .map(|k| k.stages.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        let cycle = rng.range(profile.cycle_days.0, profile.cycle_days.1) * DAY;
        let close_at = start.plus_millis(cycle);
        let tier_factor = [3.0, 1.0, 0.35][client.tier];
        let amount = rng.amount(profile.amount.0 * tier_factor, profile.amount.1 * tier_factor);
        let currency =
            if rng.chance(0.04) { *rng.pick(&[Currency::USD, Currency::EUR, Currency::CNY]) } else { Currency::RUB };
        let amount = if currency == Currency::RUB { amount } else { (amount / Decimal::from(90)).round_dp(0) };
        let manager = if rng.chance(0.85) { client.manager } else { world.managers[rng.below(world.managers.len())].0 };
        // Managers differ: some win more often.
        let skill = 0.75 + (manager.0 .0 % 7) as f64 * 0.08;

        let mut status = if close_at > opts.end {
            if rng.chance(0.08) {
                DealStatus::OnHold
            } else {
                DealStatus::InProgress
            }
        } else if rng.chance((profile.win_rate * skill).min(0.95)) {
            DealStatus::Won
        } else if rng.chance(0.04) {
            DealStatus::InProgress // stuck for months
        } else {
            DealStatus::Lost
        };
        if status == DealStatus::OnHold && stages.is_empty() {
            status = DealStatus::InProgress;
        }
        let reached = if stages.is_empty() {
            0
        } else {
            match status {
                DealStatus::Won => stages.len() - 1,
                DealStatus::Lost => {
                    // Losses happen at every stage, more often early.
                    let mut s = 0;
                    while s + 1 < stages.len() && rng.chance(0.55) {
                        s += 1;
                    }
                    s
                }
                _ => {
                    let progress = ((opts.end.0 - start.0) as f64 / cycle as f64).clamp(0.0, 0.99);
                    ((progress * stages.len() as f64) as usize).min(stages.len() - 1)
                }
            }
        };
        let product = rng.pick(PRODUCTS);
        let title = match profile.id {
            "tender" => format!("Тендер №{}: {}", rng.digits(11), product.0.to_lowercase()),
            "project" => format!("Проект модернизации: {}", client.name),
            "repeat_sale" => format!("Повторная поставка: {}", product.0.to_lowercase()),
            _ => format!("{} для {}", product.0, client.name),
        };
        let mut deal = Deal::new(
            title,
            client.id,
            profile.id,
            stages.get(reached).cloned(),
            manager,
            Money::new(amount, currency),
        );
        deal.counterparty = Some(client.counterparties[0]);
        deal.expected_close = Some(ts_date(close_at));
        deal.source = Some(rng.weighted(SOURCES).to_string());
        if !stages.is_empty() {
            deal.probability = Some(((reached + 1) * 90 / stages.len()) as u8);
        }
        if profile.id == "tender" {
            deal.custom.insert("tender_number".into(), CustomValue::String(format!("32{}", rng.digits(9))));
        }
        deal.custom.insert("delivery_region".into(), CustomValue::Enum(rng.pick(REGIONS).to_string()));
        let created = w.create(start, deal)?;

        // The environment: the client's people, sometimes a subcontractor or a competitor.
        let mut participants = Vec::new();
        for c in client.contacts.iter().take(1 + rng.below(3)) {
            let role = if participants.is_empty() {
                "decision_maker"
            } else {
                *rng.pick(&["influencer", "user", "gatekeeper"])
            };
            let mut p = Participant::contact(created.id, *c, role);
            p.influence = Some(if participants.is_empty() {
                Influence::High
            } else {
                *rng.pick(&[Influence::Low, Influence::Medium])
            });
            p.attitude = Some(*rng.pick(&[Attitude::Supporter, Attitude::Neutral, Attitude::Opponent]));
            participants.push(w.create(start.plus_millis(HOUR), p)?.id);
        }
        let competitor = if rng.chance(0.45) { Some(*rng.pick(&world.competitors)) } else { None };
        if let Some(comp) = competitor {
            let mut p = Participant::partner(created.id, comp, "competitor");
            p.influence = Some(Influence::Medium);
            participants.push(w.create(start.plus_millis(2 * DAY), p)?.id);
        }
        if participants.len() >= 2 && rng.chance(0.4) {
            w.create(
                start.plus_millis(2 * DAY),
                ParticipantLink::new(created.id, participants[1], participants[0], "influences"),
            )?;
        }

        // Interactions along the deal's life.
        let until = if status.is_closed() { close_at } else { opts.end.min(close_at) };
        let life = (until.0 - start.0).max(DAY);
        let n_inter = 1 + rng.below(3 + reached * 2);
        for i in 0..n_inter {
            let at = start.plus_millis(life * i as i64 / n_inter as i64 + rng.range(0, 6 * HOUR));
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
            let mut it = Interaction::new(kind, at, client.id, subject);
            it.deal = Some(created.id);
            it.author = Some(manager);
            if kind != InteractionKind::Note {
                it.direction = Some(if rng.chance(0.6) { Direction::Outgoing } else { Direction::Incoming });
                it.contacts.push(*rng.pick(&client.contacts));
            }
            if matches!(kind, InteractionKind::Call | InteractionKind::Meeting) {
                it.duration_min =
                    Some([rng.range(2, 25), rng.range(30, 120)][(kind == InteractionKind::Meeting) as usize] as u32);
            }
            w.create(at, it)?;
        }

        // Documents: a quote once past the middle of the route; the full chain for wins.
        let quote_stage = stages.len() / 2;
        let date = |t: Timestamp| ts_date(t);
        let qty = Decimal::from(1 + rng.below(20) as i64);
        let price = (amount / qty).round_dp(2);
        let lines_total = (price * qty).round_dp(2);
        let mut doc = |w: &mut Writer<'_>, kind: DocumentKind, at: Timestamp, state: DocumentState| -> Result<()> {
            doc_no += 1;
            let prefix = match kind {
                DocumentKind::Quote => "КП",
                DocumentKind::Invoice => "СЧ",
                DocumentKind::Order => "ЗК",
                DocumentKind::Shipment => "РН",
                DocumentKind::Payment => "ПП",
            };
            let mut d = Document::new(
                kind,
                format!("{prefix}-{:02}-{doc_no:07}", date(at).year() % 100),
                date(at),
                client.id,
                Money::new(lines_total, currency),
            );
            d.deal = Some(created.id);
            d.counterparty = Some(client.counterparties[0]);
            d.state = state;
            if kind != DocumentKind::Payment {
                d.lines.push(DocumentLine {
                    item: product.0.to_string(),
                    qty,
                    unit: Some(product.1.to_string()),
                    price,
                });
            }
            w.create(at, d)?;
            Ok(())
        };
        if !stages.is_empty() && reached >= quote_stage {
            let at = start.plus_millis(life / 2);
            let state = match status {
                DealStatus::Won => DocumentState::Agreed,
                DealStatus::Lost => DocumentState::Cancelled,
                _ => DocumentState::Issued,
            };
            doc(w, DocumentKind::Quote, at, state)?;
        }
        if status == DealStatus::Won {
            doc(w, DocumentKind::Order, close_at, DocumentState::Agreed)?;
            doc(w, DocumentKind::Invoice, close_at.plus_millis(DAY), DocumentState::Completed)?;
            let shipped = close_at.plus_millis(rng.range(3, 30) * DAY);
            let delivered = shipped <= opts.end;
            doc(
                w,
                DocumentKind::Shipment,
                shipped.min(opts.end),
                if delivered { DocumentState::Completed } else { DocumentState::Issued },
            )?;
            let paid = close_at.plus_millis(rng.range(2, 45) * DAY);
            if paid <= opts.end && rng.chance(0.93) {
                doc(w, DocumentKind::Payment, paid, DocumentState::Completed)?;
            }
        }

        // Close or hold as the history says.
        if status != DealStatus::InProgress {
            let mut d = created;
            d.status = status;
            if status.is_closed() {
                d.closed_at = Some(close_at);
                d.probability = Some(if status == DealStatus::Won { 100 } else { 0 });
            }
            if status == DealStatus::Lost {
                d.loss_reason = Some(rng.weighted(LOSS_REASONS).to_string());
                if competitor.is_some() && matches!(d.loss_reason.as_deref(), Some("price" | "competitor_product")) {
                    d.competitor = competitor;
                }
            }
            let at = if status.is_closed() { close_at } else { start.plus_millis(life / 2) };
            w.clock.set(at);
            let d = w.tx()?.update(d)?;
            w.summary.audit_entries += 1;
            *w.summary.deals_by_status.entry(d.status.name()).or_default() += 1;
        } else {
            *w.summary.deals_by_status.entry(DealStatus::InProgress.name()).or_default() += 1;
            *w.summary.pipeline.entry(currency).or_default() += amount;
        }
        if status == DealStatus::OnHold {
            *w.summary.pipeline.entry(currency).or_default() += amount;
        }
    }
    Ok(())
}
