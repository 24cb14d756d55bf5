//! Route and exit conditions over a deal's fields, written in config:
//! `amount >= 1000000 and source == tender`, `custom.delivery_region != far_east`,
//! `counterparty is set`, `a or b and c` (`and` binds tighter).
//!
//! Fields: `amount`, `currency`, `probability`, `source`, `counterparty`, `expected_close`,
//! `comment`, `title`, `manager`, `custom.NAME`. A field without a value compares unequal to
//! everything and fails every ordering. A multi-valued enum field (`multiple = true`) asks
//! whether it holds a value: `custom.equipment == pumps` holds when pumps is among its values,
//! `!=` when it is not; an ordering never holds, and an empty set is no value.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::model::{CustomValue, Deal};

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    text: String,
    /// Alternatives, each a conjunction of tests.
    any: Vec<Vec<Test>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    Compare { field: Field, op: Op, value: String },
    IsSet { field: Field, set: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Field {
    Amount,
    Currency,
    Probability,
    Source,
    Counterparty,
    ExpectedClose,
    Comment,
    Title,
    Manager,
    Custom(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A field's value on one deal.
enum Value {
    None,
    Number(Decimal),
    Text(String),
    /// A multi-valued enum field's values: `==` asks whether it holds the value, `!=`
    /// whether it does not; an order means nothing for it.
    Set(Vec<String>),
}

impl Condition {
    /// Parses `text`; `custom` are the deal's declared custom fields.
    pub fn parse(text: &str, custom: &[&str]) -> Result<Condition, String> {
        let tokens = tokenize(text)?;
        let mut any = Vec::new();
        let mut all = Vec::new();
        let mut i = 0;
        loop {
            let Some(field) = tokens.get(i) else {
                return Err(format!("condition \"{text}\" ends where a field was expected"));
            };
            let field = parse_field(field, custom)?;
            let op = tokens.get(i + 1).map(String::as_str);
            let test = match op {
                Some("is") => {
                    let (set, used) =
                        match (tokens.get(i + 2).map(String::as_str), tokens.get(i + 3).map(String::as_str)) {
                            (Some("set"), _) => (true, 3),
                            (Some("empty"), _) => (false, 3),
                            (Some("not"), Some("set")) => (false, 4),
                            _ => {
                                return Err(format!(
                                    "in \"{text}\": after \"is\" comes \"set\", \"not set\" or \"empty\""
                                ))
                            }
                        };
                    i += used;
                    Test::IsSet { field, set }
                }
                Some(op) => {
                    let op = match op {
                        "==" | "=" => Op::Eq,
                        "!=" => Op::Ne,
                        "<" => Op::Lt,
                        "<=" => Op::Le,
                        ">" => Op::Gt,
                        ">=" => Op::Ge,
                        other => {
                            return Err(format!(
                                "in \"{text}\": \"{other}\" is not a comparison (==, !=, <, <=, >, >=, is set)"
                            ))
                        }
                    };
                    let Some(value) = tokens.get(i + 2) else {
                        return Err(format!("in \"{text}\": a value is missing after the comparison"));
                    };
                    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge)
                        && matches!(field, Field::Amount | Field::Probability)
                        && Decimal::from_str(value).is_err()
                    {
                        return Err(format!("in \"{text}\": \"{value}\" is not a number"));
                    }
                    i += 3;
                    Test::Compare { field, op, value: value.clone() }
                }
                None => return Err(format!("in \"{text}\": a comparison is missing after the field")),
            };
            all.push(test);
            match tokens.get(i).map(String::as_str) {
                None => break,
                Some("and") => {}
                Some("or") => any.push(std::mem::take(&mut all)),
                Some(other) => return Err(format!("in \"{text}\": expected \"and\" or \"or\", found \"{other}\"")),
            }
            i += 1;
        }
        any.push(all);
        Ok(Condition { text: text.to_string(), any })
    }

    /// Whether the deal satisfies the condition.
    pub fn holds(&self, deal: &Deal) -> bool {
        self.any.iter().any(|all| all.iter().all(|t| t.holds(deal)))
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Test {
    fn holds(&self, deal: &Deal) -> bool {
        match self {
            Test::IsSet { field, set } => {
                let has = match field {
                    // As for required fields: an amount of zero is no amount.
                    Field::Amount => !deal.amount.amount.is_zero(),
                    f => !matches!(f.value(deal), Value::None),
                };
                has == *set
            }
            Test::Compare { field, op, value } => {
                let ord = match field.value(deal) {
                    Value::None => return *op == Op::Ne,
                    Value::Number(n) => match Decimal::from_str(value) {
                        Ok(v) => n.cmp(&v),
                        Err(_) => return *op == Op::Ne,
                    },
                    Value::Text(t) => t.as_str().cmp(value.as_str()),
                    Value::Set(set) => {
                        let has = set.iter().any(|v| v == value);
                        return match op {
                            Op::Eq => has,
                            Op::Ne => !has,
                            _ => false,
                        };
                    }
                };
                match op {
                    Op::Eq => ord == Ordering::Equal,
                    Op::Ne => ord != Ordering::Equal,
                    Op::Lt => ord == Ordering::Less,
                    Op::Le => ord != Ordering::Greater,
                    Op::Gt => ord == Ordering::Greater,
                    Op::Ge => ord != Ordering::Less,
                }
            }
        }
    }
}

impl Field {
    fn value(&self, d: &Deal) -> Value {
        let text = |s: &str| if s.is_empty() { Value::None } else { Value::Text(s.to_string()) };
        match self {
            Field::Amount => Value::Number(d.amount.amount),
            Field::Currency => Value::Text(d.amount.currency.to_string()),
            Field::Probability => d.probability.map_or(Value::None, |p| Value::Number(p.into())),
            Field::Source => d.source.as_deref().map_or(Value::None, text),
            Field::Counterparty => d.counterparty.map_or(Value::None, |c| Value::Text(c.to_string())),
            Field::ExpectedClose => d.expected_close.map_or(Value::None, |c| Value::Text(c.to_string())),
            Field::Comment => text(&d.comment),
            Field::Title => text(&d.title),
            Field::Manager => Value::Text(d.manager.to_string()),
            Field::Custom(name) => match d.custom.get(name) {
                None => Value::None,
                Some(CustomValue::Number(n)) => Value::Number(*n),
                Some(CustomValue::Money(m)) => Value::Number(m.amount),
                Some(CustomValue::String(s) | CustomValue::Enum(s)) => text(s),
                Some(CustomValue::Bool(b)) => Value::Text(b.to_string()),
                Some(CustomValue::Date(d)) => Value::Text(d.to_string()),
                Some(CustomValue::Ref(id)) => Value::Text(id.to_string()),
                Some(CustomValue::EnumSet(set)) if set.is_empty() => Value::None,
                Some(CustomValue::EnumSet(set)) => Value::Set(set.clone()),
            },
        }
    }
}

/// The deal fields a condition or a stage's required fields may name.
pub const FIELDS: &[&str] =
    &["amount", "currency", "probability", "source", "counterparty", "expected_close", "comment", "title", "manager"];

fn parse_field(name: &str, custom: &[&str]) -> Result<Field, String> {
    Ok(match name {
        "amount" => Field::Amount,
        "currency" => Field::Currency,
        "probability" => Field::Probability,
        "source" => Field::Source,
        "counterparty" => Field::Counterparty,
        "expected_close" => Field::ExpectedClose,
        "comment" => Field::Comment,
        "title" => Field::Title,
        "manager" => Field::Manager,
        other => match other.strip_prefix("custom.") {
            Some(c) if custom.contains(&c) => Field::Custom(c.to_string()),
            Some(c) => {
                return Err(format!("\"{c}\" is not a custom field of deals ({})", custom.join(", ")));
            }
            None => {
                return Err(format!("\"{other}\" is not a deal field ({}, custom.NAME)", FIELDS.join(", ")));
            }
        },
    })
}

/// Whether the deal has a value in a field named as in [`FIELDS`] or `custom.NAME`
/// (an amount of zero counts as no value).
pub fn field_is_set(deal: &Deal, name: &str) -> bool {
    match parse_field(name, &[name.strip_prefix("custom.").unwrap_or("")]) {
        Ok(Field::Amount) => !deal.amount.amount.is_zero(),
        Ok(f) => !matches!(f.value(deal), Value::None),
        Err(_) => false,
    }
}

/// Checks a required-field name against the deal's fields.
pub fn check_field(name: &str, custom: &[&str]) -> Result<(), String> {
    parse_field(name, custom).map(|_| ())
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some(x) => s.push(x),
                    None => return Err(format!("in \"{text}\": a quoted value is not closed")),
                }
            }
            out.push(s);
        } else if "=!<>".contains(c) {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if "=!<>".contains(x) {
                    s.push(x);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || "=!<>\"'".contains(x) {
                    break;
                }
                s.push(x);
                chars.next();
            }
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err("a condition must not be empty".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{Currency, Money};

    fn deal(amount: i64) -> Deal {
        let mut d =
            Deal::new("x", Default::default(), "k", None, Default::default(), Money::new(amount.into(), Currency::RUB));
        d.source = Some("tender".into());
        d
    }

    #[test]
    fn conditions_evaluate_with_and_binding_tighter_than_or() {
        let c = Condition::parse("amount >= 1000 and source == tender", &[]).unwrap();
        assert!(c.holds(&deal(1000)));
        assert!(!c.holds(&deal(999)));
        let c = Condition::parse("amount < 10 or source == 'tender' and counterparty is set", &[]).unwrap();
        assert!(c.holds(&deal(5)));
        assert!(!c.holds(&deal(50)));
        let c = Condition::parse("custom.region is not set and probability != 5", &["region"]).unwrap();
        assert!(c.holds(&deal(1)));
        // As for required fields, an amount of zero is no amount.
        let c = Condition::parse("amount is set", &[]).unwrap();
        assert!(c.holds(&deal(1)) && !c.holds(&deal(0)));
    }

    #[test]
    fn a_multi_valued_field_is_asked_whether_it_holds_a_value() {
        let mut d = deal(1);
        let set = |d: &mut Deal, v: &[&str]| {
            d.custom.insert("kit".into(), CustomValue::EnumSet(v.iter().map(|s| s.to_string()).collect()));
        };
        let holds = |text: &str, d: &Deal| Condition::parse(text, &["kit"]).unwrap().holds(d);
        set(&mut d, &["pumps", "valves"]);
        assert!(holds("custom.kit == pumps", &d) && holds("custom.kit == valves", &d));
        assert!(!holds("custom.kit == automation", &d) && holds("custom.kit != automation", &d));
        assert!(!holds("custom.kit != pumps", &d) && !holds("custom.kit > a", &d));
        assert!(holds("custom.kit is set", &d));
        set(&mut d, &[]);
        assert!(holds("custom.kit is not set", &d) && !holds("custom.kit == pumps", &d));
    }

    #[test]
    fn bad_conditions_say_what_is_wrong() {
        assert!(Condition::parse("amont > 5", &[]).unwrap_err().contains("\"amont\" is not a deal field"));
        assert!(Condition::parse("amount >> 5", &[]).unwrap_err().contains("not a comparison"));
        assert!(Condition::parse("amount > lots", &[]).unwrap_err().contains("not a number"));
        assert!(Condition::parse("custom.x == 1", &["y"]).unwrap_err().contains("not a custom field"));
        assert!(Condition::parse("amount > 5 but", &[]).is_err());
        assert!(Condition::parse("", &[]).is_err());
    }
}
