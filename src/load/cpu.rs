//! Where a load step's CPU went on a shared machine: posim's own process
//! against everything else (the stack's replicas and its database, when
//! they run beside posim). A generator that falls behind while it used
//! little of the CPU was starved by the stack, not limited by itself.
//! Read from Linux's `/proc`; elsewhere there are no figures, and the limit
//! rule does without them.

use serde::{Deserialize, Serialize};

/// CPU seconds spent during one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCpu {
    /// posim's own process (generator, world, recorder).
    pub posim_s: f64,
    /// Every other process on the machine: the stack and its database here.
    pub others_s: f64,
    pub wall_s: f64,
    pub cores: u32,
}

impl StepCpu {
    /// posim's share of the CPU the machine spent in the step.
    pub fn posim_share(&self) -> f64 {
        let busy = self.posim_s + self.others_s;
        if busy > 0.0 { self.posim_s / busy } else { 0.0 }
    }

    /// The share of the machine's cores that were busy.
    pub fn busy_share(&self) -> f64 {
        let capacity = self.wall_s * f64::from(self.cores.max(1));
        if capacity > 0.0 { (self.posim_s + self.others_s) / capacity } else { 0.0 }
    }
}

/// A reading of the CPU counters at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuMark {
    at: std::time::Instant,
    machine_ticks: u64,
    posim_ticks: u64,
}

/// Clock ticks per second of `/proc`'s counters (USER_HZ: 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuMark {
    /// Now, or `None` where `/proc` cannot be read.
    pub fn now() -> Option<CpuMark> {
        let machine_ticks = busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let posim_ticks = own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(CpuMark { at: std::time::Instant::now(), machine_ticks, posim_ticks })
    }

    /// What was spent from `self` to `later`.
    pub fn until(&self, later: &CpuMark) -> StepCpu {
        let seconds = |ticks: u64| ticks as f64 / TICKS_PER_SECOND;
        let machine = later.machine_ticks.saturating_sub(self.machine_ticks);
        let posim = later.posim_ticks.saturating_sub(self.posim_ticks);
        let cores = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        StepCpu {
            posim_s: seconds(posim),
            others_s: seconds(machine.saturating_sub(posim)),
            wall_s: later.at.saturating_duration_since(self.at).as_secs_f64(),
            cores,
        }
    }
}

/// The machine's busy ticks: the first line of `/proc/stat` less idle and iowait.
fn busy_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)?.saturating_add(*fields.get(4)?);
    Some(total.saturating_sub(idle))
}

/// A process's user and system ticks (`/proc/PID/stat` fields 14 and 15),
/// read after the command name, which may hold spaces.
fn own_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after the name: state is field 3, so utime (14) and stime (15) are at 11 and 12
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_counters_are_read_as_linux_writes_them() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(busy_ticks(stat), Some(160));
        let own = "4242 (posim (x) y) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 8 0";
        assert_eq!(own_ticks(own), Some(168));
        assert!(CpuMark::now().is_some(), "this machine has /proc");
    }

    #[test]
    fn shares_of_a_step() {
        let cpu = StepCpu { posim_s: 1.0, others_s: 3.0, wall_s: 2.0, cores: 2 };
        assert!((cpu.posim_share() - 0.25).abs() < 1e-9);
        assert!((cpu.busy_share() - 1.0).abs() < 1e-9);
    }
}
