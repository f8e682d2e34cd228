//! The fleet: condominiums (with a risk tier), their laundry machines and
//! POS terminals. Generated from a scenario's `[fleet]` numbers with the
//! fleet's own seed, or read from a fixture file that names every UUID.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::contract::{Firmware, Text};
use crate::seed;

/// How risky a condominium is to enable first ("1 condomínio de baixo risco").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    Low,
    Medium,
    High,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Condominium {
    pub id: Uuid,
    pub name: String,
    pub risk: RiskTier,
    pub machines: Vec<u32>,
    pub terminals: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    pub id: Text,
    pub condominium: u32,
    pub firmware: Firmware,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Terminal {
    pub id: Text,
    pub condominium: u32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    pub condominiums: Vec<Condominium>,
    pub machines: Vec<Machine>,
    pub terminals: Vec<Terminal>,
}

/// The numbers a generated fleet is made from.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetShape {
    pub seed: u64,
    pub condominiums: u32,
    pub machines_per_condominium: u32,
    pub terminals_per_condominium: u32,
    /// Share of machines running `naive` firmware (the rest dedupe).
    pub naive_share: f64,
}

/// One condominium of a fixture file, as written there.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureCondominium {
    pub id: toml::Spanned<String>,
    pub name: String,
    pub risk: RiskTier,
    pub machines: u32,
    #[serde(default = "one")]
    pub terminals: u32,
    #[serde(default = "dedupe")]
    pub firmware: Firmware,
}

fn one() -> u32 {
    1
}

fn dedupe() -> Firmware {
    Firmware::Dedupe
}

impl Fleet {
    /// A fleet made from numbers: UUIDs, risk tiers and firmware from the fleet seed.
    pub fn generate(shape: &FleetShape) -> Fleet {
        let mut rng = seed::stream(shape.seed, "fleet");
        let mut fleet = Fleet::default();
        for index in 0..shape.condominiums {
            let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            let risk = match rng.next_u32() % 10 {
                0..=4 => RiskTier::Low,
                5..=7 => RiskTier::Medium,
                _ => RiskTier::High,
            };
            let firmware = |rng: &mut rand_chacha::ChaCha8Rng| {
                if rng.random_bool(shape.naive_share) { Firmware::Naive } else { Firmware::Dedupe }
            };
            let name = format!("condo-{index:04}");
            let mut condominium = Condominium { id, name, risk, machines: vec![], terminals: vec![] };
            for _ in 0..shape.machines_per_condominium {
                let firmware = firmware(&mut rng);
                fleet.add_machine(&mut condominium, index, firmware);
            }
            for _ in 0..shape.terminals_per_condominium {
                fleet.add_terminal(&mut condominium, index);
            }
            fleet.condominiums.push(condominium);
        }
        fleet
    }

    /// A fleet from a fixture's entries (UUIDs already validated).
    pub fn from_fixture(entries: &[(Uuid, FixtureCondominium)]) -> Fleet {
        let mut fleet = Fleet::default();
        for (index, (id, entry)) in entries.iter().enumerate() {
            let index = index as u32;
            let mut condominium = Condominium {
                id: *id,
                name: entry.name.clone(),
                risk: entry.risk,
                machines: vec![],
                terminals: vec![],
            };
            for _ in 0..entry.machines {
                fleet.add_machine(&mut condominium, index, entry.firmware);
            }
            for _ in 0..entry.terminals {
                fleet.add_terminal(&mut condominium, index);
            }
            fleet.condominiums.push(condominium);
        }
        fleet
    }

    fn add_machine(&mut self, condominium: &mut Condominium, index: u32, firmware: Firmware) {
        let number = condominium.machines.len();
        condominium.machines.push(self.machines.len() as u32);
        let id = format!("m-{index:04}-{number}").into();
        self.machines.push(Machine { id, condominium: index, firmware });
    }

    fn add_terminal(&mut self, condominium: &mut Condominium, index: u32) {
        let number = condominium.terminals.len();
        condominium.terminals.push(self.terminals.len() as u32);
        let id = format!("pos-{index:04}-{number}").into();
        self.terminals.push(Terminal { id, condominium: index });
    }

    /// Condominium indices, lowest risk first (then in fleet order): the
    /// order in which the runbook enables them.
    pub fn lowest_risk_first(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.condominiums.len() as u32).collect();
        order.sort_by_key(|&index| (self.condominiums[index as usize].risk, index));
        order
    }

    pub fn condominium_index(&self, id: Uuid) -> Option<u32> {
        self.condominiums.iter().position(|c| c.id == id).map(|index| index as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(seed: u64) -> FleetShape {
        FleetShape {
            seed,
            condominiums: 20,
            machines_per_condominium: 3,
            terminals_per_condominium: 2,
            naive_share: 0.5,
        }
    }

    #[test]
    fn generation_is_repeatable_and_complete() {
        let fleet = Fleet::generate(&shape(1));
        assert_eq!(fleet, Fleet::generate(&shape(1)));
        assert_ne!(fleet.condominiums[0].id, Fleet::generate(&shape(2)).condominiums[0].id);
        assert_eq!(fleet.machines.len(), 60);
        assert_eq!(fleet.terminals.len(), 40);
        assert!(fleet.machines.iter().any(|m| m.firmware == Firmware::Naive));
        assert!(fleet.machines.iter().any(|m| m.firmware == Firmware::Dedupe));
    }

    #[test]
    fn lowest_risk_comes_first() {
        let fleet = Fleet::generate(&shape(3));
        let order = fleet.lowest_risk_first();
        let risks: Vec<RiskTier> = order.iter().map(|&i| fleet.condominiums[i as usize].risk).collect();
        assert!(risks.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(order.len(), 20);
    }
}
