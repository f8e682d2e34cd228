//! The faults that bend time rather than drop a message: a replica that
//! stops between two effects, a replica whose clock is off, the planned
//! `[[stack_faults]]` (pauses, kills, a database outage) and deliveries that
//! land late at the PSP. Each is seeded and keyed like every other fault, so
//! turning one on changes nothing else of the run.

use super::{OpSlot, Sim, SimEvent};
use crate::contract::{ErrorCode, Reply};
use crate::faults::{Boundary, Crossing, FaultKey, FaultKind, StackFaultAction};
use crate::history::{DownCause, Event};
use crate::stack::Effect;
use crate::time::{Millis, SECOND};

/// A planned database restart of zero duration still drops every connection
/// for this long.
const DATABASE_RESTART_MIN: Millis = SECOND;

/// How long a paused replica keeps getting new requests before the
/// balancer's readiness probe gives up on it.
const HEALTH_CHECK_GRACE: Millis = 10 * SECOND;

impl Sim<'_> {
    /// The time on `replica`'s own clock.
    pub(super) fn clock_of(&self, replica: u16) -> Millis {
        let offset = self.replicas[usize::from(replica)].clock_offset_ms;
        self.now.saturating_add_signed(offset)
    }

    /// A fresh process draws its clock's offset (zero unless `clock_skew` fires).
    pub(super) fn set_clock(&mut self, replica: u16) {
        let incarnation = self.replicas[usize::from(replica)].incarnation;
        let crossing = Crossing::replica_wide(self.now, self.controller.phase());
        let offset = match self.faults.clock_skew(&crossing, replica, incarnation) {
            Some((fault, key, offset)) => {
                self.record(Event::Fault { fault, kind: FaultKind::ClockSkew, key });
                offset
            }
            None => 0,
        };
        self.replicas[usize::from(replica)].clock_offset_ms = offset;
    }

    /// Before an operation's next effect: is its replica paused, or does a
    /// `replica_pause` stop it now? Returns when it carries on.
    pub(super) fn paused(&mut self, slot: &OpSlot) -> Option<Millis> {
        let replica = usize::from(slot.replica);
        if self.replicas[replica].paused_until > self.now {
            return Some(self.replicas[replica].paused_until);
        }
        let key = FaultKey::Operation { serial: slot.serial, step: slot.step };
        let (fault, spec) = self.faults.roll(Boundary::Pause, &self.crossing(slot), key)?;
        let until = self.now.saturating_add(spec.duration);
        self.record(Event::Fault { fault, kind: FaultKind::ReplicaPause, key });
        self.pause(slot.replica, until);
        Some(until)
    }

    fn pause(&mut self, replica: u16, until: Millis) {
        let slot = &mut self.replicas[usize::from(replica)];
        if slot.paused_until <= self.now {
            slot.paused_since = self.now;
        }
        slot.paused_until = slot.paused_until.max(until);
    }

    /// Does the balancer still send to `replica`? A replica paused for
    /// longer than the health check's grace fails its readiness probe and
    /// gets no new requests until it runs again; the ones queued on it wait.
    pub(super) fn ready(&self, replica: usize) -> bool {
        let slot = &self.replicas[replica];
        slot.serving && (slot.paused_until <= self.now || self.now < slot.paused_since + HEALTH_CHECK_GRACE)
    }

    /// Keeps `effect` until the paused replica runs again.
    pub(super) fn hold(&mut self, index: u32, mut slot: Box<OpSlot>, effect: Effect, until: Millis) {
        let serial = slot.serial;
        slot.held = Some(effect);
        self.ops[index as usize] = Some(slot);
        self.agenda.schedule(until, SimEvent::Continue { op: index, serial });
    }

    /// The replica runs again: carry out the effect it held (on its own
    /// clock, which went on while it stood still).
    pub(super) fn continue_held(&mut self, op: u32, serial: u64) {
        let Some(mut slot) = self.take_parked(op, serial) else { return };
        let effect = slot.held.take().expect("a held operation holds an effect");
        let until = self.replicas[usize::from(slot.replica)].paused_until;
        if until > self.now {
            return self.hold(op, slot, effect, until); // paused again meanwhile
        }
        self.carry_on(op, slot, effect);
    }

    /// Is the database down now (a planned outage)?
    pub(super) fn database_down(&self) -> bool {
        self.database_down_until > self.now
    }

    /// A store call that cannot be made: the request is answered 503, as the
    /// HTTP stack answers a database error; effects already made stay made.
    pub(super) fn store_failed(&mut self, index: u32, slot: Box<OpSlot>) {
        self.free_ops.push(index);
        let reply = Reply::error(ErrorCode::Unavailable, "the database did not answer");
        self.answer(slot.origin, reply);
    }

    /// A planned stack fault begins (or ends), as the live engine plays it.
    pub(super) fn stack_fault(&mut self, index: u16, ended: bool) {
        let fault = self.scenario.stack_faults[usize::from(index)].clone();
        let (action, replica) = (fault.action, fault.replica);
        if ended {
            return self.record(Event::StackFault { fault: index, action, replica, ended: true });
        }
        let until = self.now.saturating_add(fault.duration);
        match action {
            StackFaultAction::PauseReplica => self.pause(replica, until),
            StackFaultAction::KillReplica => {
                self.record(Event::ReplicaDown { replica, cause: DownCause::Crash });
                self.take_down(replica, until);
            }
            StackFaultAction::RestartDatabase => {
                let until = until.max(self.now + DATABASE_RESTART_MIN);
                self.database_down_until = self.database_down_until.max(until);
            }
        }
        self.record(Event::StackFault { fault: index, action, replica, ended: false });
        self.agenda.schedule(until, SimEvent::StackFault { index, ended: true });
    }

    /// Holds a refund back until it lands at the PSP.
    pub(super) fn refund_later(&mut self, request: crate::world::psp::PspRequest, delay: Millis) {
        self.late_refunds.push(request);
        let refund = (self.late_refunds.len() - 1) as u32;
        self.agenda.schedule(self.now.saturating_add(delay), SimEvent::RefundLands { refund });
    }

    pub(super) fn refund_lands(&mut self, refund: u32) {
        let request = self.late_refunds[refund as usize].clone();
        if let Some(truth) = self.world.land_refund(&request) {
            self.record(truth.into());
        }
    }
}
