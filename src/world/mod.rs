//! The world posim plays around the stack: the fleet of condominiums, their
//! machines and terminals; the card acquirer's ledger; the machines' firmware
//! and cycle logs; and the customers at the terminals. Ground truth lives
//! here — the checkers judge the stack by what the world saw.

pub mod calls;
pub mod fleet;
pub mod gateway;
pub mod machines;
pub mod outcomes;
pub mod psp;
pub mod terminal;
pub mod terminal_faults;

pub use fleet::{Condominium, Fleet, Machine, RiskTier};
pub use machines::MachineState;
pub use outcomes::WorldState;
pub use psp::PspLedger;
pub use terminal::{Purchase, PurchaseOutcome, PurchaseStep};
