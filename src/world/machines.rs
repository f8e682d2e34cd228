//! The laundry machines behind the IoT gateway: firmware that dedupes by
//! `execute_key` or runs every command, a busy period per cycle, offline
//! spells, and the cycle log that is ground truth for D2, D3 and D4.

use crate::contract::{CycleRecord, Firmware, PaymentId, StartCycleCommand, Text};
use crate::time::Millis;

/// What a machine did with a `start_cycle` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandAnswer {
    Started(Text),
    AlreadyStarted(Text),
    Busy,
    Offline,
}

#[derive(Clone, Debug)]
pub struct MachineState {
    pub firmware: Firmware,
    number: u32,
    running: Option<(PaymentId, Millis)>,
    offline_until: Millis,
    log: Vec<CycleRecord>,
}

impl MachineState {
    pub fn new(number: u32, firmware: Firmware) -> Self {
        MachineState { firmware, number, running: None, offline_until: 0, log: Vec::new() }
    }

    pub fn is_idle(&self, now: Millis) -> bool {
        self.running.is_none_or(|(_, until)| until <= now) && self.offline_until <= now
    }

    /// Can the gateway talk to the machine (to read its log)?
    pub fn is_reachable(&self, now: Millis) -> bool {
        self.offline_until <= now
    }

    pub fn go_offline(&mut self, until: Millis) {
        self.offline_until = self.offline_until.max(until);
    }

    /// Applies a command that reached the machine; `cycle_length` is how long
    /// a started cycle keeps it busy.
    pub fn command(&mut self, command: &StartCycleCommand, now: Millis, cycle_length: Millis) -> CommandAnswer {
        if self.offline_until > now {
            return CommandAnswer::Offline;
        }
        if self.firmware == Firmware::Dedupe
            && let Some(cycle) = self.log.iter().rev().find(|cycle| cycle.execute_key == command.execute_key)
        {
            return CommandAnswer::AlreadyStarted(cycle.cycle_id.clone());
        }
        if let Some((payment, until)) = self.running
            && until > now
            && payment != command.payment_id
        {
            return CommandAnswer::Busy;
        }
        let cycle_id: Text = format!("cy-{}-{}", self.number, self.log.len() + 1).into();
        self.log.push(CycleRecord {
            cycle_id: cycle_id.clone(),
            execute_key: command.execute_key.clone(),
            payment_id: command.payment_id,
            started_at: now,
        });
        self.running = Some((command.payment_id, now + cycle_length));
        CommandAnswer::Started(cycle_id)
    }

    /// `GET …/cycles?execute_key=K`.
    pub fn cycles(&self, execute_key: &str) -> Vec<CycleRecord> {
        self.log.iter().filter(|cycle| &*cycle.execute_key == execute_key).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn command(payment: u128, key: &str) -> StartCycleCommand {
        StartCycleCommand {
            machine_id: "m".into(),
            command_id: Uuid::from_u128(7),
            payment_id: Uuid::from_u128(payment),
            execute_key: key.into(),
            not_after: None,
        }
    }

    #[test]
    fn dedupe_firmware_runs_a_key_once() {
        let mut machine = MachineState::new(0, Firmware::Dedupe);
        assert!(matches!(machine.command(&command(1, "k"), 0, 100), CommandAnswer::Started(_)));
        assert!(matches!(machine.command(&command(1, "k"), 10, 100), CommandAnswer::AlreadyStarted(_)));
        assert_eq!(machine.command(&command(2, "j"), 20, 100), CommandAnswer::Busy);
        assert_eq!(machine.cycles("k").len(), 1);
    }

    #[test]
    fn naive_firmware_runs_every_command() {
        let mut machine = MachineState::new(0, Firmware::Naive);
        machine.command(&command(1, "k"), 0, 100);
        machine.command(&command(1, "k"), 10, 100);
        assert_eq!(machine.cycles("k").len(), 2);
        machine.go_offline(500);
        assert_eq!(machine.command(&command(3, "z"), 200, 100), CommandAnswer::Offline);
        assert!(!machine.is_idle(200) && machine.is_idle(500));
    }
}
