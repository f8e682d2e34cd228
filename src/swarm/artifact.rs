//! The artifact of a failing seed: one self-contained, versioned JSON file —
//! the scenario's TOML (and the fleet file it names), the seed, the bug
//! switches, the edits (fault mix, horizon, fleet) and what the run showed —
//! from which `posim replay` rebuilds the exact run and `posim shrink` a
//! smaller one, on any machine, without the scenario file.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::edits::{EditError, Edits, PROBABILITY_DIGITS, round_digits};
use crate::history::History;
use crate::report::RunReport;
use crate::scenario::{Scenario, ScenarioError};
use crate::stack::StackBug;
use crate::time::{self, Millis};

/// 1: the first format. Readers refuse any other.
pub const ARTIFACT_VERSION: u64 = 1;

/// One failing (or shrunk) run, everything needed to play it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub artifact_version: u64,
    /// The posim that wrote it (another version may play the run differently).
    pub posim_version: String,
    /// The scenario's name.
    pub scenario: String,
    pub source: ScenarioSource,
    pub seed: u64,
    pub stack_bugs: Vec<StackBug>,
    pub edits: Edits,
    /// How `posim shrink` made it, if it did.
    pub shrink: Option<ShrinkRecord>,
    /// What the run showed.
    pub result: RunResult,
}

/// A scenario as an artifact carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSource {
    /// Where it was read from (names it in messages; never read again).
    pub file: String,
    /// The scenario file's full text.
    pub toml: String,
    /// The fleet file that `[fleet] file = …` names, when it is a relative
    /// path (an absolute one is read where it is).
    pub fleet_file: Option<EmbeddedFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedFile {
    /// The path as the scenario writes it.
    pub path: String,
    pub text: String,
}

/// What a run showed: compared on replay, and its sizes for the shrinker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    pub verdict: String,
    /// The outcome line ("outcome: completed at … — expected `complete`: as expected").
    pub outcome: String,
    pub trace_hash: String,
    /// D-code → how many violations.
    pub violations: BTreeMap<String, usize>,
    pub failed_criteria: Vec<String>,
    pub sizes: Sizes,
}

/// How big a run is: what the shrinker makes smaller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sizes {
    pub faults_on: usize,
    /// The sum of the probabilities of the faults on (six significant digits).
    pub probability_sum: f64,
    pub horizon_ms: Millis,
    pub condominiums: usize,
    pub purchases: u64,
    pub trace_events: usize,
}

/// What `posim shrink` did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShrinkRecord {
    /// What it kept failing: a D-code, or `fail` (the verdict).
    pub target: String,
    pub runs: u32,
    /// The edits it kept, in order, in words.
    pub steps: Vec<String>,
    pub before: Sizes,
}

/// An artifact that cannot be read, written or played.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a posim artifact: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error(
        "{path}: artifact version {found} is not supported: this posim ({}) reads version {ARTIFACT_VERSION}",
        env!("CARGO_PKG_VERSION")
    )]
    Version { path: PathBuf, found: String },
    #[error("the artifact's scenario is refused: {0}")]
    Scenario(#[from] ScenarioError),
    #[error("the artifact's edits do not fit its scenario: {0}")]
    Edits(#[from] EditError),
    #[error("cannot rebuild the fleet file {path} in a temporary folder: {source}")]
    FleetFile { path: String, source: std::io::Error },
}

impl ArtifactError {
    /// The harness failed (exit 3), rather than the artifact being bad (exit 2).
    pub fn is_harness(&self) -> bool {
        matches!(self, ArtifactError::Write { .. } | ArtifactError::FleetFile { .. })
    }
}

impl Artifact {
    /// A fresh artifact of this posim, not shrunk.
    pub fn new(scenario: &str, source: &ScenarioSource, seed: u64, bugs: &[StackBug], run: (Edits, RunResult)) -> Self {
        let (edits, result) = run;
        Artifact {
            artifact_version: ARTIFACT_VERSION,
            posim_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: scenario.to_string(),
            source: source.clone(),
            seed,
            stack_bugs: bugs.to_vec(),
            edits,
            shrink: None,
            result,
        }
    }

    /// Plays the artifact's run again, with `bugs` (normally its own).
    pub fn rerun(&self, bugs: &[StackBug]) -> Result<RunResult, ArtifactError> {
        let scenario = self.source.parse()?;
        Ok(super::run(&scenario, &self.edits, self.seed, bugs)?)
    }

    /// Reads an artifact, refusing other versions before anything else.
    pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ArtifactError::Read { path: path.to_path_buf(), source })?;
        let format = |detail: String| ArtifactError::Format { path: path.to_path_buf(), detail };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|error| format(error.to_string()))?;
        match value.get("artifact_version") {
            None => return Err(format("no `artifact_version` field".to_string())),
            Some(version) if version.as_u64() != Some(ARTIFACT_VERSION) => {
                return Err(ArtifactError::Version { path: path.to_path_buf(), found: version.to_string() });
            }
            Some(_) => {}
        }
        serde_json::from_value(value).map_err(|error| format(error.to_string()))
    }

    /// Writes the artifact as pretty JSON, after checking it reads back equal.
    pub fn write(&self, path: &Path) -> Result<(), ArtifactError> {
        let write_error = |source| ArtifactError::Write { path: path.to_path_buf(), source };
        let text = self.to_json().map_err(write_error)?;
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        std::fs::write(path, text + "\n").map_err(write_error)
    }

    /// The JSON text; refused when it would not read back to this very artifact.
    pub fn to_json(&self) -> Result<String, std::io::Error> {
        let invalid = |detail: String| std::io::Error::new(std::io::ErrorKind::InvalidData, detail);
        let text = serde_json::to_string_pretty(self).map_err(|error| invalid(error.to_string()))?;
        let back: Artifact = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
        if back != *self {
            return Err(invalid("the artifact would not read back exactly (a probability lost precision)".into()));
        }
        Ok(text)
    }
}

impl RunResult {
    /// The result of a judged run of `scenario` (as edited).
    pub fn of(scenario: &Scenario, report: &RunReport, history: &History) -> RunResult {
        RunResult {
            verdict: report.verdict.to_string(),
            outcome: report.outcome.line(),
            trace_hash: report.trace_hash.clone(),
            violations: report.violation_counts.iter().map(|(code, count)| (code.to_string(), *count)).collect(),
            failed_criteria: report.failed_criteria.clone(),
            sizes: Sizes::of(scenario, report, history),
        }
    }

    pub fn failed(&self) -> bool {
        self.verdict != "pass"
    }

    /// `{D2: 1, D9: 3}`.
    pub fn violations_text(&self) -> String {
        let counts: Vec<String> = self.violations.iter().map(|(code, count)| format!("{code}: {count}")).collect();
        format!("{{{}}}", counts.join(", "))
    }

    /// How `now` differs from this result, in words; empty when identical.
    pub fn differences(&self, now: &RunResult) -> Vec<String> {
        let mut differences = Vec::new();
        let mut compare = |what: &str, was: String, is: String| {
            if was != is {
                differences.push(format!("{what}: {was} in the artifact, {is} now"));
            }
        };
        compare("trace hash", self.trace_hash.clone(), now.trace_hash.clone());
        compare("verdict", self.verdict.clone(), now.verdict.clone());
        compare("violations", self.violations_text(), now.violations_text());
        compare("failed criteria", format!("{:?}", self.failed_criteria), format!("{:?}", now.failed_criteria));
        differences
    }

    /// What the seed failed on, one key per group: its D-codes, its failed
    /// criteria (without their numbers), an outcome other than expected.
    pub fn failure_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.violations.keys().cloned().collect();
        let criteria = self.failed_criteria.iter().map(|criterion| format!("criterion {}", before_numbers(criterion)));
        groups.extend(criteria);
        if self.outcome.contains("NOT what the scenario expects") {
            let outcome = self.outcome.trim_start_matches("outcome: ");
            groups.push(format!("outcome {}", before_numbers(outcome)));
        }
        groups.dedup();
        groups
    }

    /// `D2×3 D4×1 criteria×2`, for one line per seed.
    pub fn codes_line(&self) -> String {
        let mut parts: Vec<String> = self.violations.iter().map(|(code, count)| format!("{code}×{count}")).collect();
        if !self.failed_criteria.is_empty() {
            parts.push(format!("criteria×{}", self.failed_criteria.len()));
        }
        if parts.is_empty() && self.failed() {
            parts.push(self.outcome.clone());
        }
        parts.join(" ")
    }
}

/// A failure's words up to its figures: `5%: confirm_failure_rate (0.09 > …)`
/// and `rolled back at 00:45:00 to …` group by `5%: confirm_failure_rate` and `rolled back`.
fn before_numbers(text: &str) -> &str {
    let cut = [" (", " at ", " — "].iter().filter_map(|marker| text.find(marker)).min();
    cut.map_or(text, |cut| &text[..cut])
}

impl Sizes {
    pub fn of(scenario: &Scenario, report: &RunReport, history: &History) -> Sizes {
        let on: Vec<f64> = scenario.faults.iter().map(|f| f.probability).filter(|p| *p > 0.0).collect();
        Sizes {
            faults_on: on.len(),
            probability_sum: round_digits(on.iter().sum(), PROBABILITY_DIGITS + 2),
            horizon_ms: scenario.horizon(),
            condominiums: scenario.fleet.condominiums.len(),
            purchases: report.purchases,
            trace_events: history.records.len(),
        }
    }

    /// No size of `self` is above the same size of `other`.
    pub fn none_larger_than(&self, other: &Sizes) -> bool {
        self.faults_on <= other.faults_on
            && self.probability_sum <= other.probability_sum
            && self.horizon_ms <= other.horizon_ms
            && self.condominiums <= other.condominiums
            && self.purchases <= other.purchases
            && self.trace_events <= other.trace_events
    }

    pub fn line(&self) -> String {
        format!(
            "{} faults on (probabilities sum to {}), horizon {}, {} condominiums, {} purchases, {} trace events",
            self.faults_on,
            self.probability_sum,
            time::human(self.horizon_ms),
            self.condominiums,
            self.purchases,
            self.trace_events
        )
    }
}

impl ScenarioSource {
    /// Reads a scenario file, and the fleet file it names, into a source;
    /// returns the parsed scenario with it.
    pub fn read(path: &Path) -> Result<(ScenarioSource, Scenario), ArtifactError> {
        let file = path.display().to_string();
        let toml =
            std::fs::read_to_string(path).map_err(|source| ArtifactError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let scenario = Scenario::parse(&toml, &file, base)?;
        let fleet_file = match fleet_path(&toml).filter(|named| Path::new(named).is_relative()) {
            Some(named) => {
                let path = base.join(&named);
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ArtifactError::Read { path: path.clone(), source })?;
                Some(EmbeddedFile { path: named, text })
            }
            None => None,
        };
        Ok((ScenarioSource { file, toml, fleet_file }, scenario))
    }

    /// Parses the embedded scenario; an embedded fleet file is laid out in a
    /// temporary folder where the scenario's relative path finds it.
    pub fn parse(&self) -> Result<Scenario, ArtifactError> {
        let Some(fleet) = &self.fleet_file else {
            return Ok(Scenario::parse(&self.toml, &self.file, Path::new("."))?);
        };
        let fleet_error = |source| ArtifactError::FleetFile { path: fleet.path.clone(), source };
        let dir = tempfile::tempdir().map_err(fleet_error)?;
        let named = Path::new(&fleet.path);
        // One folder level per `..`, so that the path stays inside the temporary folder.
        let ups = named.components().filter(|c| matches!(c, Component::ParentDir)).count();
        let base = (0..ups).fold(dir.path().to_path_buf(), |base, _| base.join("up"));
        let target = lexical(&base.join(named));
        // The base must exist for the OS to resolve the `..`s from it.
        std::fs::create_dir_all(&base).map_err(fleet_error)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fleet_error)?;
        }
        std::fs::write(&target, &fleet.text).map_err(fleet_error)?;
        Ok(Scenario::parse(&self.toml, &self.file, &base)?)
    }
}

/// The `[fleet] file = …` of a scenario's text, if any.
fn fleet_path(toml: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(toml).ok()?;
    table.get("fleet")?.get("file")?.as_str().map(str::to_string)
}

/// `path` with `.` and `..` resolved by name (the folders need not exist).
fn lexical(path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            other => resolved.push(other),
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::edits::draw_mix;

    fn artifact() -> Artifact {
        let (source, scenario) = ScenarioSource::read(Path::new("scenarios/game-day-operator.toml")).expect("bundled");
        let edits = Edits { faults: Some(draw_mix(&scenario, 3)), horizon_ms: Some(90_000), condominiums: Some(2) };
        let sizes = Sizes { probability_sum: 0.012345, horizon_ms: 90_000, ..Sizes::default() };
        let result = RunResult { verdict: "fail".into(), sizes, ..RunResult::default() };
        Artifact::new(&scenario.name, &source, 3, &[StackBug::NonidempotentConfirm], (edits, result))
    }

    #[test]
    fn an_artifact_round_trips_through_json() {
        let artifact = artifact();
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("a/seed-3.json");
        artifact.write(&path).expect("written");
        assert_eq!(Artifact::read(&path).expect("read back"), artifact);
    }

    #[test]
    fn an_embedded_fleet_file_is_found_again_without_the_original() {
        let artifact = artifact();
        let fleet = artifact.source.fleet_file.as_ref().expect("game-day-operator names a fleet file");
        assert_eq!(fleet.path, "../fixtures/fleet-small.toml");
        let original = Scenario::load(Path::new("scenarios/game-day-operator.toml")).expect("bundled");
        let rebuilt = artifact.source.parse().expect("parses from the artifact alone");
        assert_eq!(rebuilt.fleet, original.fleet);
        assert_eq!(rebuilt.phases, original.phases);
    }

    #[test]
    fn other_versions_and_other_files_are_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("a.json");
        let mut value = serde_json::to_value(artifact()).expect("json");
        value["artifact_version"] = serde_json::json!(99);
        std::fs::write(&path, value.to_string()).expect("written");
        let error = Artifact::read(&path).expect_err("version 99");
        assert!(matches!(error, ArtifactError::Version { .. }), "{error}");
        assert!(error.to_string().contains("artifact version 99 is not supported"), "{error}");
        std::fs::write(&path, "{\"seed\": 1}").expect("written");
        let error = Artifact::read(&path).expect_err("no version");
        assert!(error.to_string().contains("not a posim artifact"), "{error}");
    }

    #[test]
    fn failures_group_by_code_criterion_and_outcome() {
        let result = RunResult {
            verdict: "fail".into(),
            outcome:
                "outcome: rolled back at 00:45:00 to allowlist (0) — expected `complete`: NOT what the scenario expects"
                    .into(),
            violations: BTreeMap::from([("D2".to_string(), 3)]),
            failed_criteria: vec!["5%: confirm_failure_rate (0.09 > 0.08)".into()],
            ..RunResult::default()
        };
        assert_eq!(result.failure_groups(), ["D2", "criterion 5%: confirm_failure_rate", "outcome rolled back"]);
        assert_eq!(result.codes_line(), "D2×3 criteria×1");
    }
}
