//! `posim calibrate`: arguments and exit code; the work is in `crate::calibrate`.

use std::path::PathBuf;

use clap::Args;

use super::{EXIT_FAIL, EXIT_HARNESS, EXIT_PASS, Exit, load, stamp, usage};
use crate::calibrate::builds::BuildChoice;
use crate::calibrate::{self as gate, CalibrateConfig, Seeds};

#[derive(Args)]
pub(super) struct CalibrateArgs {
    scenario: PathBuf,
    /// How many seeds each build runs.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Threads (default: the machine's available parallelism).
    #[arg(long)]
    jobs: Option<usize>,
    /// The sound build's false-rollback rate to reach, as a share (0.001 = 0.1%).
    #[arg(long, default_value_t = 0.001)]
    target_false_alarm: f64,
    /// Only these builds (comma-separated): `sound`, `confirm`, `execute`,
    /// `duplicates`, a fault at one size (`confirm@2x`); default: all.
    #[arg(long, value_delimiter = ',')]
    builds: Vec<BuildChoice>,
    /// Seeds per candidate setting of the settings search (0: no search).
    #[arg(long, default_value_t = 40)]
    candidate_seeds: u64,
    /// Where to write calibration.json, summary.md, report.html and junit.xml
    /// (default: reports/calibrate-<scenario>-<stamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(super) fn calibrate(args: CalibrateArgs) -> Exit {
    let scenario = load(&args.scenario)?;
    let jobs = match args.jobs {
        Some(0) => return Err(usage("--jobs must be at least 1")),
        Some(jobs) => jobs,
        None => std::thread::available_parallelism().map_or(1, |jobs| jobs.get()),
    };
    let config = CalibrateConfig {
        seeds: Seeds { first: args.first, count: args.seeds, jobs },
        target_false_alarm: args.target_false_alarm,
        builds: args.builds,
        candidate_seeds: args.candidate_seeds,
    };
    let builds = gate::builds::family(&scenario, &config.builds);
    config.check(builds.len()).map_err(usage)?;
    let stamped = || PathBuf::from("reports").join(format!("calibrate-{}-{}", scenario.name, stamp()));
    let dir = args.out.unwrap_or_else(stamped);
    // Found out before the runs, not after minutes of them.
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot make the report folder {}: {error}", dir.display());
        return Err(EXIT_HARNESS);
    }
    println!(
        "posim calibrate · scenario {} · seeds {}..={} · {jobs} threads · {} builds · the scenario's faults as written",
        scenario.name,
        args.first,
        args.first.saturating_add(args.seeds - 1),
        builds.len()
    );
    let started = std::time::Instant::now();
    let calibration = gate::calibrate(&scenario, &config).map_err(usage)?;
    print!("{}", gate::report::console(&calibration));
    if let Err(error) = gate::report::write(&dir, &calibration) {
        eprintln!("error: cannot write the calibration to {}: {error}", dir.display());
        return Err(EXIT_HARNESS);
    }
    println!("{:.1} s · report: {}", started.elapsed().as_secs_f64(), dir.display());
    Ok(if calibration.aims_met { EXIT_PASS } else { EXIT_FAIL })
}
