//! The IoT gateway in front of the machines: it routes a `start_cycle`
//! command to its machine (or loses it), plays the gateway's faults on the
//! way back (a lost ack, a 504 after the machine started), and reads a
//! machine's cycle log when the machine is reachable.

use rustc_hash::FxHashMap as HashMap;

use super::fleet::Fleet;
use super::machines::{CommandAnswer, MachineState};
use crate::contract::{CycleRecord, StartCycleCommand, Text};
use crate::faults::FaultKind;
use crate::time::Millis;

/// Where a command goes once the gateway has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To this machine (fleet index).
    ToMachine(u32),
    /// Nowhere: the command is lost, the stack hears nothing.
    Lost,
    /// No machine has this id (`404 unknown_machine`).
    UnknownMachine,
    /// The command came after its `not_after`: `410 expired`, not delivered.
    Expired,
    /// The gateway answers 504 at once; the command reaches this machine
    /// `delay` later (within the command expiry), unless its `not_after` has
    /// passed by then.
    Late { machine: u32, delay: Millis },
}

/// What the gateway answers a command, faults included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayAnswer {
    Started(Text),
    AlreadyStarted(Text),
    Busy,
    Offline,
    /// The machine acted (or not); the stack hears nothing.
    NoAnswer,
    /// The gateway's 504 (the machine may have started).
    GatewayTimeout,
    /// `410 expired`: the command's `not_after` had passed; nothing ran.
    Expired,
}

/// What the gateway answers a cycles query, faults included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CyclesAnswer {
    Cycles(Vec<CycleRecord>),
    /// Lost on the way, either way.
    NoAnswer,
    Offline,
    UnknownMachine,
}

pub struct Gateway {
    machines: Vec<MachineState>,
    index: HashMap<Text, u32>,
}

impl Gateway {
    pub fn new(fleet: &Fleet) -> Gateway {
        let machines =
            fleet.machines.iter().enumerate().map(|(i, m)| MachineState::new(i as u32, m.firmware)).collect();
        let index = fleet.machines.iter().enumerate().map(|(i, m)| (m.id.clone(), i as u32)).collect();
        Gateway { machines, index }
    }

    pub fn machine(&self, machine: u32) -> &MachineState {
        &self.machines[machine as usize]
    }

    pub fn index(&self, machine_id: &str) -> Option<u32> {
        self.index.get(machine_id).copied()
    }

    /// A command reaches the gateway with the fault rolled for it (kind and
    /// extent): an offline spell begins now, a lost command goes nowhere, a
    /// late one is held back. `expired`: its `not_after` has passed.
    pub fn dispatch(
        &mut self,
        machine_id: &str,
        fault: Option<(FaultKind, Millis)>,
        now: Millis,
        expired: bool,
    ) -> Route {
        let Some(machine) = self.index(machine_id) else { return Route::UnknownMachine };
        if expired {
            return Route::Expired;
        }
        match fault {
            Some((FaultKind::IotCommandLost, _)) => Route::Lost,
            Some((FaultKind::CommandLate, delay)) => Route::Late { machine, delay },
            Some((FaultKind::MachineOffline, duration)) => {
                self.machines[machine as usize].go_offline(now + duration);
                Route::ToMachine(machine)
            }
            _ => Route::ToMachine(machine),
        }
    }

    /// The command reaches its machine; returns the gateway's answer and the
    /// cycle the machine started, if it did (ground truth, even when the
    /// answer is lost). `expired`: its `not_after` has passed — dropped.
    pub fn arrive(
        &mut self,
        machine: u32,
        command: &StartCycleCommand,
        (fault, expired): (Option<FaultKind>, bool),
        (now, cycle_length): (Millis, Millis),
    ) -> (GatewayAnswer, Option<Text>) {
        if expired {
            return (GatewayAnswer::Expired, None);
        }
        let answer = self.machines[machine as usize].command(command, now, cycle_length);
        let started = match &answer {
            CommandAnswer::Started(cycle) => Some(cycle.clone()),
            _ => None,
        };
        let answer = match (fault, answer) {
            (Some(FaultKind::IotAckLost), _) => GatewayAnswer::NoAnswer,
            (Some(FaultKind::Gateway504), _) => GatewayAnswer::GatewayTimeout,
            (_, CommandAnswer::Started(cycle)) => GatewayAnswer::Started(cycle),
            (_, CommandAnswer::AlreadyStarted(cycle)) => GatewayAnswer::AlreadyStarted(cycle),
            (_, CommandAnswer::Busy) => GatewayAnswer::Busy,
            (_, CommandAnswer::Offline) => GatewayAnswer::Offline,
        };
        (answer, started)
    }

    /// `GET …/cycles?execute_key=K`; any fault rolled for it loses it.
    pub fn cycles(&self, machine_id: &str, execute_key: &str, faulty: bool, now: Millis) -> CyclesAnswer {
        let Some(machine) = self.index(machine_id) else { return CyclesAnswer::UnknownMachine };
        let machine = &self.machines[machine as usize];
        match (faulty, machine.is_reachable(now)) {
            (true, _) => CyclesAnswer::NoAnswer,
            (false, false) => CyclesAnswer::Offline,
            (false, true) => CyclesAnswer::Cycles(machine.cycles(execute_key)),
        }
    }
}
