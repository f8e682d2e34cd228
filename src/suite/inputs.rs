//! A suite's inputs: scenario files and folders (every `*.toml` in a folder,
//! sorted by name, not recursive) become its members, each loaded and
//! checked before anything runs, with every refusal listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::scenario::Scenario;

/// One scenario of a suite: its label (the file's stem, the name of its
/// report folder), its file, and the scenario.
pub struct Member {
    pub label: String,
    pub file: PathBuf,
    pub scenario: Scenario,
}

impl Member {
    /// The file's name as the console shows it (`rollout.toml`).
    pub fn file_name(&self) -> String {
        self.file.file_name().map_or_else(|| self.label.clone(), |name| name.to_string_lossy().into_owned())
    }
}

/// Why a suite cannot run: each line names a file (and its place in it).
#[derive(Debug, thiserror::Error)]
#[error("{}", .lines.join("\n"))]
pub struct Refused {
    pub lines: Vec<String>,
}

/// Expands the inputs (files as given, folders to their `*.toml`) in order.
pub fn scenario_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Refused> {
    let mut files = Vec::new();
    let mut lines = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            files.push(input.clone());
            continue;
        }
        match folder_scenarios(input) {
            Ok(found) if found.is_empty() => {
                lines.push(format!("{}: no *.toml scenario in the folder", input.display()))
            }
            Ok(found) => files.extend(found),
            Err(error) => lines.push(format!("{}: cannot read the folder: {error}", input.display())),
        }
    }
    if lines.is_empty() { Ok(files) } else { Err(Refused { lines }) }
}

/// The folder's `*.toml` files, sorted by name.
fn folder_scenarios(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "toml") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Loads every file; refuses the suite with every file's error, and when two
/// files would share a report folder (the same stem).
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Member>, Refused> {
    let mut members = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for file in files {
        match Scenario::load(file) {
            Ok(scenario) => members.push(Member { label: label(file), file: file.clone(), scenario }),
            // As `posim run` shows it: `file:line:column: message`.
            Err(error) => lines.push(error.to_string()),
        }
    }
    let mut by_label: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for member in &members {
        by_label.entry(&member.label).or_default().push(member.file.display().to_string());
    }
    for (label, files) in by_label.into_iter().filter(|(_, files)| files.len() > 1) {
        lines.push(format!(
            "{}: the same report folder `{label}` for each; give each file a name of its own",
            files.join(", ")
        ));
    }
    if lines.is_empty() { Ok(members) } else { Err(Refused { lines }) }
}

/// The file's stem: the member's report folder.
fn label(file: &Path) -> String {
    file.file_stem().map_or_else(|| "scenario".to_string(), |stem| stem.to_string_lossy().into_owned())
}
