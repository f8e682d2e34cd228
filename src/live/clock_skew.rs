//! `clock_skew` on a live stack run as local processes: each replica
//! process starts under libfaketime (`LD_PRELOAD`) with the offset the fault
//! plan draws for it — the same keyed draw as the simulator's — scaled to
//! wall time. Only the wall clock is skewed (`FAKETIME_DONT_FAKE_MONOTONIC`):
//! a stack's timeouts still measure real durations, its timestamps do not.
//! Containers (images FROM scratch) and a stack given by URL cannot be
//! skewed; the engine says so in a note.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::faults::{Crossing, FaultKind, FaultPlan};
use crate::world::outcomes::Fired;

/// Where Debian's `libfaketime` package puts the library.
const LIBRARY_PATHS: [&str; 2] =
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"];

/// The library, if this machine has it.
pub fn find_libfaketime() -> Option<PathBuf> {
    LIBRARY_PATHS.iter().map(Path::new).find(|path| path.exists()).map(Path::to_path_buf)
}

/// Skews the clocks of replica processes as the plan says.
#[derive(Clone, Debug)]
pub struct ReplicaClocks {
    pub plan: FaultPlan,
    /// Runbook time per wall time: a runbook offset is this much shorter.
    pub time_scale: f64,
    pub library: PathBuf,
}

impl ReplicaClocks {
    /// The env that skews this start of `replica`, and the fault it plays.
    pub fn env(&self, crossing: &Crossing, replica: u16, start: u32) -> Option<(Fired, BTreeMap<String, String>)> {
        let (fault, key, offset_ms) = self.plan.clock_skew(crossing, replica, start)?;
        let seconds = offset_ms as f64 / 1000.0 / self.time_scale;
        let env = BTreeMap::from([
            ("LD_PRELOAD".to_string(), self.library.display().to_string()),
            ("FAKETIME".to_string(), format!("{seconds:+.3}")),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
        ]);
        Some((Fired { fault, kind: FaultKind::ClockSkew, key }, env))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultSpec;

    #[test]
    fn the_offset_is_the_simulators_draw_scaled_to_wall_time() {
        let plan = FaultPlan::new(5, vec![FaultSpec::everywhere(FaultKind::ClockSkew, 1.0, 60_000)]);
        let crossing = Crossing::replica_wide(0, 0);
        let (_, _, offset_ms) = plan.clock_skew(&crossing, 1, 1).expect("fires");
        let clocks = ReplicaClocks { plan, time_scale: 60.0, library: PathBuf::from("/lib/faketime.so") };
        let (fired, env) = clocks.env(&crossing, 1, 1).expect("fires");
        assert_eq!(fired.kind, FaultKind::ClockSkew);
        let seconds: f64 = env["FAKETIME"].parse().expect("a signed number of seconds");
        assert!((seconds - offset_ms as f64 / 60_000.0).abs() < 0.001, "{seconds} for {offset_ms} ms at 60×");
        assert_eq!(env["LD_PRELOAD"], "/lib/faketime.so");
    }
}
