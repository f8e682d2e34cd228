//! The invariants D1–D9 of DESIGN.md by name: the closed set every
//! violation's code is drawn from, with the title each checker reports.
//! Serialized as its code (`"D2"`), in reports and as map keys alike.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// One invariant. Declared in code order, so that the derived order is the
/// codes' own (`"D1"` < … < `"D9"`), as [`Borrow<str>`] requires.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, strum::Display, strum::IntoStaticStr,
)]
pub enum Invariant {
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
}

impl Invariant {
    pub const ALL: [Invariant; 9] = [
        Invariant::D1,
        Invariant::D2,
        Invariant::D3,
        Invariant::D4,
        Invariant::D5,
        Invariant::D6,
        Invariant::D7,
        Invariant::D8,
        Invariant::D9,
    ];

    /// `D2`.
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// `duplicate cycle`.
    pub fn title(self) -> &'static str {
        match self {
            Invariant::D1 => "duplicate charge",
            Invariant::D2 => "duplicate cycle",
            Invariant::D3 => "paid, no wash",
            Invariant::D4 => "wash, no pay",
            Invariant::D5 => "gate breach",
            Invariant::D6 => "lost payment",
            Invariant::D7 => "stuck",
            Invariant::D8 => "stranded by rollback",
            Invariant::D9 => "contract breach",
        }
    }
}

/// Maps keyed by invariant are looked up by code (`counts["D2"]`).
impl Borrow<str> for Invariant {
    fn borrow(&self) -> &str {
        self.code()
    }
}

/// Hashed as its code, as [`Borrow<str>`] requires.
impl Hash for Invariant {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.code().hash(state);
    }
}

impl PartialEq<&str> for Invariant {
    fn eq(&self, code: &&str) -> bool {
        self.code() == *code
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::Invariant;

    #[test]
    fn order_and_names_are_the_codes() {
        let codes: Vec<&str> = Invariant::ALL.iter().map(|i| i.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        assert_eq!(codes, sorted, "the derived order must be the codes' order");
        assert_eq!(serde_json::to_string(&Invariant::D2).ok().as_deref(), Some("\"D2\""));
    }

    #[test]
    fn a_count_map_keeps_its_json_and_is_looked_up_by_code() {
        let counts = BTreeMap::from([(Invariant::D4, 1_usize), (Invariant::D2, 3)]);
        let json = serde_json::to_string(&counts).unwrap_or_default();
        assert_eq!(json, r#"{"D2":3,"D4":1}"#);
        let back: BTreeMap<Invariant, usize> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, counts);
        assert_eq!(back.get("D2"), Some(&3));
        assert!(serde_json::from_str::<BTreeMap<Invariant, usize>>(r#"{"D10":1}"#).is_err());
    }
}
