//! The runbook's rollout: the [`controller`] that judges each window on the
//! criteria (through the one history index) and decides — advance, hold,
//! roll back, freeze — and logs why; the pre-check of §1; posim's probes.
//! The phases themselves are scenario data ([`crate::scenario::phases`]).

pub mod controller;
pub mod precheck;

pub use crate::scenario::phases::{Phase, Selection, canary_for, count_for, phase_starts};
use crate::world::Fleet;

/// posim's probe after a rollback: an `authorize` for a condominium that
/// must now be denied (its key names the deploy and the attempt).
pub fn probe_request(fleet: &Fleet, condominium: u32, deploy: u16, attempt: u32) -> crate::contract::Request {
    let site = &fleet.condominiums[condominium as usize];
    crate::contract::Request::Authorize(crate::contract::AuthorizeRequest {
        condominio_id: site.id.to_string(),
        machine_id: fleet.machines[site.machines[0] as usize].id.clone(),
        terminal_id: "posim-probe".into(),
        amount_cents: 1,
        idempotency_key: format!("posim-probe:{condominium}:{deploy}:{attempt}").into(),
    })
}
