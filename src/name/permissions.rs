//! [`Permissions`]: the READ / WRITE / MANAGE set a user (or a vhost's
//! anonymous sessions) holds.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{NameError, NameKind, NameReason};

/// A set of permissions.
///
/// - READ: subscribe, unsubscribe and receive broadcasts.
/// - WRITE: broadcast and trigger.
/// - MANAGE: create channels implicitly even where auto-creation is off.
///
/// Text form: words joined by `|` or `,`, case-insensitive, e.g. `READ|WRITE`;
/// `NONE` (or an empty string) is the empty set and `ALL` is every
/// permission. Serde form: a list of words, `["READ", "WRITE"]`; a single
/// string in the text form is accepted when deserializing too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Permissions(u8);

/// Display order and names of the individual permissions.
const WORDS: [(Permissions, &str); 3] = [
    (Permissions::READ, "READ"),
    (Permissions::WRITE, "WRITE"),
    (Permissions::MANAGE, "MANAGE"),
];

impl Permissions {
    /// No permission at all.
    pub const NONE: Permissions = Permissions(0);
    /// Subscribe, unsubscribe and receive.
    pub const READ: Permissions = Permissions(1);
    /// Broadcast and trigger.
    pub const WRITE: Permissions = Permissions(2);
    /// Create and close channels.
    pub const MANAGE: Permissions = Permissions(4);
    /// READ, WRITE and MANAGE.
    pub const ALL: Permissions = Permissions(7);

    /// Parses the text form (`"READ|WRITE"`, `"read,manage"`, `"NONE"`).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut set = Permissions::NONE;
        for word in s.split(['|', ',']).map(str::trim) {
            set |= Self::parse_word(word)
                .ok_or_else(|| NameError::new(NameKind::Permissions, s, unknown(word)))?;
        }
        Ok(set)
    }

    /// One word of the text form; the empty word is the empty set so that
    /// `""` and `"READ|"` parse.
    fn parse_word(word: &str) -> Option<Self> {
        if word.is_empty() || word.eq_ignore_ascii_case("NONE") {
            return Some(Permissions::NONE);
        }
        if word.eq_ignore_ascii_case("ALL") {
            return Some(Permissions::ALL);
        }
        WORDS
            .iter()
            .find(|(_, name)| word.eq_ignore_ascii_case(name))
            .map(|&(p, _)| p)
    }

    /// The set from its bits; `None` if a bit other than the three defined
    /// ones is set.
    pub fn from_bits(bits: u8) -> Option<Self> {
        (bits & !Self::ALL.0 == 0).then_some(Permissions(bits))
    }

    /// The raw bits (READ=1, WRITE=2, MANAGE=4).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// True if every permission in `other` is in `self`.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the permissions in the set, in READ, WRITE, MANAGE order.
    pub fn words(self) -> impl Iterator<Item = &'static str> {
        WORDS
            .iter()
            .filter(move |(p, _)| self.contains(*p))
            .map(|&(_, name)| name)
    }
}

fn unknown(word: &str) -> NameReason {
    NameReason::UnknownPermission(word.chars().take(32).collect())
}

impl BitOr for Permissions {
    type Output = Permissions;

    fn bitor(self, rhs: Permissions) -> Permissions {
        Permissions(self.0 | rhs.0)
    }
}

impl BitOrAssign for Permissions {
    fn bitor_assign(&mut self, rhs: Permissions) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Permissions {
    type Output = Permissions;

    fn bitand(self, rhs: Permissions) -> Permissions {
        Permissions(self.0 & rhs.0)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("NONE");
        }
        for (i, word) in self.words().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

impl FromStr for Permissions {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Permissions {
    type Error = NameError;

    fn try_from(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.words().count()))?;
        for word in self.words() {
            seq.serialize_element(word)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PermissionsVisitor)
    }
}

struct PermissionsVisitor;

impl<'de> Visitor<'de> for PermissionsVisitor {
    type Value = Permissions;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a list like ["READ", "WRITE"] or a string like "READ|WRITE""#)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Permissions, E> {
        Permissions::parse(s).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Permissions, A::Error> {
        let mut set = Permissions::NONE;
        while let Some(word) = seq.next_element::<String>()? {
            set |= Permissions::parse(&word).map_err(de::Error::custom)?;
        }
        Ok(set)
    }
}
