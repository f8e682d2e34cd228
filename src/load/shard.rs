//! A shard of a load run (`--shard i/n`): the slice of the seeded plan one
//! machine plays when n play it together against one stack. Shard i owns
//! the purchases whose number is i modulo n (their keys are disjoint) and
//! the condominiums whose fleet index is i modulo n (so are their machines
//! and terminals): each shard's world sees only its own payments, and the
//! invariants, which are per payment and per machine, judged shard by shard
//! are judged for the whole.

use std::fmt;
use std::str::FromStr;

/// At most this many shards.
pub const SHARDS_MAX: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole plan (no `--shard`).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn owns_purchase(&self, purchase: u32) -> bool {
        purchase % self.count == self.index
    }

    pub fn owns_condominium(&self, fleet_index: u32) -> bool {
        fleet_index % self.count == self.index
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::WHOLE
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `i/n` with `0 ≤ i < n ≤ 256`.
    fn from_str(text: &str) -> Result<Shard, String> {
        let expected = || format!("`{text}`: expected `i/n` with 0 ≤ i < n ≤ {SHARDS_MAX}, e.g. `0/4`");
        let (index, count) = text.trim().split_once('/').ok_or_else(expected)?;
        let index: u32 = index.trim().parse().map_err(|_| expected())?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        if count == 0 || count > SHARDS_MAX || index >= count {
            return Err(expected());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_purchases_and_condominiums_disjointly_and_completely() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().expect("a shard")).collect();
        for purchase in 0..100 {
            assert_eq!(shards.iter().filter(|s| s.owns_purchase(purchase)).count(), 1);
            assert_eq!(shards.iter().filter(|s| s.owns_condominium(purchase)).count(), 1);
        }
        assert!(Shard::WHOLE.owns_purchase(7) && Shard::WHOLE.owns_condominium(7));
        assert_eq!(shards[2].to_string(), "2/3");
    }

    #[test]
    fn bad_shards_are_refused() {
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", "0/257", "1/2/3"] {
            let error = bad.parse::<Shard>().expect_err(bad);
            assert!(error.contains("expected `i/n`"), "{error}");
        }
    }
}
