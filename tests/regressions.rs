//! The shrunk artifacts of the defects the swarm found, kept as regression
//! tests (fixtures/regressions/): each fails with its invariant when the
//! defect's bug switch is on, exactly as recorded, and passes without it.

use std::path::Path;

use posim::swarm::artifact::Artifact;

/// (artifact, the invariant its defect breaks)
const REGRESSIONS: [(&str, &str); 3] = [
    ("late-command-runs-machine-twice.json", "D2"),
    ("stalled-replica-washes-refunded-payment.json", "D4"),
    ("late-capture-never-refunded.json", "D3"),
];

#[test]
fn every_kept_defect_fails_behind_its_switch_and_passes_on_the_fixed_stack() {
    for (file, code) in REGRESSIONS {
        let artifact = Artifact::read(&Path::new("fixtures/regressions").join(file)).expect("the artifact reads");
        assert!(!artifact.stack_bugs.is_empty(), "{file}: recorded with its bug switch");
        let again = artifact.rerun(&artifact.stack_bugs).expect("it runs");
        assert_eq!(artifact.result.differences(&again), Vec::<String>::new(), "{file}: reproduced exactly");
        assert!(again.violations.contains_key(code), "{file}: {code} expected, got {:?}", again.violations);
        let fixed = artifact.rerun(&[]).expect("it runs");
        assert!(!fixed.failed(), "{file}: the fixed stack passes: {:?} {:?}", fixed.violations, fixed.failed_criteria);
    }
}
