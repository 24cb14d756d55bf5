//! Time-ordered 128-bit identifiers and the typed ids of every entity.
//!
//! An id is a ULID-shaped `u128`: the top 48 bits hold the creation time in Unix
//! milliseconds (from the caller's clock), the low 80 bits a store-wide sequence number.
//! Ids therefore sort by creation time, so "created between A and B" is a key-range scan,
//! and they are unique within a database without any randomness, which keeps demo data
//! and tests deterministic. The text form is the 26-character Crockford base32 of the
//! ULID spec, so ids look like `01JD5Q3T8B0000000000000042`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SEQ_BITS: u32 = 80;

/// Hashes ids cheaply (a map keyed by ids hashes each with one multiply, not SipHash):
/// their low bits are a sequence, so one multiply spreads them. For maps of ids built in
/// memory from the store's own ids ([`IdMap`]), never from input an attacker chooses.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u8(*b);
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (self.0 ^ v as u64 ^ (v >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A hash map keyed by ids, hashed by [`IdHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A raw 128-bit id; every typed id wraps one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawId(pub u128);

impl RawId {
    /// The id made at `millis` with sequence number `seq`.
    pub fn new(millis: i64, seq: u64) -> RawId {
        let millis = millis.clamp(0, (1i64 << 48) - 1) as u128;
        RawId((millis << SEQ_BITS) | seq as u128)
    }

    /// The smallest id whose creation time is `millis` (for range scans by time).
    pub fn min_at(millis: i64) -> RawId {
        RawId::new(millis, 0)
    }

    /// Creation time encoded in the id, in Unix milliseconds.
    pub fn millis(self) -> i64 {
        (self.0 >> SEQ_BITS) as i64
    }

    /// The sequence number: ids are handed out in its order, whatever the time in them.
    pub fn seq(self) -> u64 {
        (self.0 & ((1u128 << SEQ_BITS) - 1)) as u64
    }

    /// Big-endian bytes: the order of the bytes is the order of the ids.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Reads an id written by [`RawId::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Option<RawId> {
        Some(RawId(u128::from_be_bytes(b.try_into().ok()?)))
    }

    /// Parses the 26-character Crockford base32 form (case-insensitive; I, L → 1, O → 0).
    pub fn parse(s: &str) -> Result<RawId, IdError> {
        if s.len() != 26 {
            return Err(IdError(format!("id \"{s}\" must have 26 characters, not {}", s.len())));
        }
        let mut v: u128 = 0;
        for (i, c) in s.bytes().enumerate() {
            let d = match c.to_ascii_uppercase() {
                c @ b'0'..=b'9' => c - b'0',
                b'O' => 0,
                b'I' | b'L' => 1,
                c => match ALPHABET.iter().position(|&a| a == c) {
                    Some(p) => p as u8,
                    None => {
                        return Err(IdError(format!(
                            "id \"{s}\" has an invalid character {:?} at position {}",
                            c as char,
                            i + 1
                        )))
                    }
                },
            };
            if i == 0 && d > 7 {
                return Err(IdError(format!("id \"{s}\" is out of range")));
            }
            v = (v << 5) | d as u128;
        }
        Ok(RawId(v))
    }
}

impl fmt::Display for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 26];
        let mut v = self.0;
        for slot in buf.iter_mut().rev() {
            *slot = ALPHABET[(v & 31) as usize];
            v >>= 5;
        }
        f.write_str(std::str::from_utf8(&buf).expect("alphabet is ASCII"))
    }
}

impl fmt::Debug for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A malformed id in text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

impl Serialize for RawId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.to_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawId, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id: 26 base32 characters or 16 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawId, E> {
                RawId::parse(s).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<RawId, E> {
                RawId::from_bytes(b).ok_or_else(|| E::invalid_length(b.len(), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

impl FromStr for RawId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<RawId, IdError> {
        RawId::parse(s)
    }
}

/// Implemented by every typed id.
pub trait TypedId: Copy + Eq + Ord + fmt::Display + fmt::Debug {
    /// The untyped id.
    fn raw(self) -> RawId;
    /// Wraps an untyped id.
    fn from_raw(raw: RawId) -> Self;
}

macro_rules! typed_ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub RawId);

        impl TypedId for $name {
            fn raw(self) -> RawId { self.0 }
            fn from_raw(raw: RawId) -> Self { $name(raw) }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { fmt::Display::fmt(&self.0, f) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> { RawId::parse(s).map($name) }
        }
    )*};
}

typed_ids! {
    /// A counterparty: a legal subject.
    CounterpartyId;
    /// A partner: a business-relationship object.
    PartnerId;
    /// A typed link between two partners.
    PartnerLinkId;
    /// A contact person of a partner.
    ContactId;
    /// A link between two contact persons.
    ContactLinkId;
    /// A user: a manager or another employee.
    UserId;
    /// A deal.
    DealId;
    /// A participant of a deal's environment.
    ParticipantId;
    /// A link between two participants of one deal.
    ParticipantLinkId;
    /// An interaction: e-mail, call, meeting or note.
    InteractionId;
    /// A document: quote, invoice, order, shipment or payment.
    DocumentId;
    /// An attachment: a named reference to stored file content.
    AttachmentId;
    /// A task of an employee.
    TaskId;
    /// A manager's sales plan for a period.
    PlanId;
    /// A loyalty program.
    LoyaltyProgramId;
    /// A loyalty card.
    LoyaltyCardId;
    /// An entry of a loyalty card's points ledger.
    LoyaltyEntryId;
    /// A client's claim.
    ClaimId;
    /// An entry of the audit log.
    AuditId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_sorts_like_numbers() {
        let ids = [RawId::new(0, 0), RawId::new(1_700_000_000_000, 42), RawId(u128::MAX)];
        for id in ids {
            let s = id.to_string();
            assert_eq!(s.len(), 26);
            assert_eq!(RawId::parse(&s).unwrap(), id);
            assert_eq!(RawId::parse(&s.to_lowercase()).unwrap(), id);
        }
        let a = RawId::new(1000, 5).to_string();
        let b = RawId::new(1001, 0).to_string();
        assert!(a < b);
        assert_eq!(RawId::new(1_700_000_000_000, 9).millis(), 1_700_000_000_000);
    }

    #[test]
    fn malformed_text_is_rejected_with_the_reason() {
        assert!(RawId::parse("short").unwrap_err().0.contains("26 characters"));
        let bad = RawId::parse("01JD5Q3T8B00000000000000U2").unwrap_err();
        assert!(bad.0.contains("'U'") && bad.0.contains("position 25"), "{bad}");
        assert!(RawId::parse("81JD5Q3T8B0000000000000042").unwrap_err().0.contains("out of range"));
    }
}
