//! The CI examples in `examples/ci/` stay usable: they parse as the YAML
//! their CI system reads, keep their reports whether the gate passes or
//! fails, and every posim command they run names a subcommand and flags
//! this posim knows and scenarios this repository bundles.

use std::process::Command;

fn yaml(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).expect("the example is in the repository");
    serde_yaml::from_str(&text).expect("the example is YAML")
}

/// Every `posim …` command in a shell script, as words (line continuations joined).
fn posim_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let commands = joined.lines().filter_map(|line| line.trim().strip_prefix("posim ").map(str::to_string));
    commands.map(|command| command.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect()).collect()
}

/// Checks a posim command's subcommand, flags and bundled scenario names.
fn check(words: &[String]) {
    let subcommand = &words[0];
    let help = Command::new(env!("CARGO_BIN_EXE_posim")).args(subcommand.split(' ')).arg("--help").output();
    let help = help.expect("posim runs");
    assert!(help.status.success(), "`posim {subcommand}` is a subcommand");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag.as_str()), "`posim {subcommand}` knows {flag}");
    }
}

fn scripts(values: &[&serde_yaml::Value]) -> String {
    let mut text = String::new();
    for value in values {
        match value {
            serde_yaml::Value::String(line) => text.push_str(line),
            serde_yaml::Value::Sequence(lines) => lines.iter().filter_map(|l| l.as_str()).for_each(|l| {
                text.push_str(l);
                text.push('\n');
            }),
            _ => {}
        }
        text.push('\n');
    }
    text
}

/// The live gate runs one suite over the bundled scenarios' folder (posim's
/// checkout is cloned to `posim-src/`), two at a time.
fn gates_on_the_bundled_folder(commands: &[Vec<String>]) {
    let live = commands.iter().find(|c| c[0] == "live").expect("a posim live command");
    let inputs: Vec<&String> = live.iter().skip(1).take_while(|word| !word.starts_with("--")).collect();
    assert_eq!(inputs, ["posim-src/scenarios/"], "one suite over the bundled folder");
    assert!(std::path::Path::new("scenarios").is_dir());
    assert!(live.windows(2).any(|pair| pair[0] == "--jobs" && pair[1] == "2"), "{live:?}");
}

#[test]
fn the_github_actions_workflow_builds_the_stack_gates_on_posim_live_and_uploads_reports() {
    let workflow = yaml("examples/ci/github-actions.yml");
    let steps = workflow["jobs"]["posim-gate"]["steps"].as_sequence().expect("the gate job's steps");
    let runs: Vec<&serde_yaml::Value> = steps.iter().map(|s| &s["run"]).collect();
    let script = scripts(&runs);
    assert!(script.contains("docker build -t \"$STACK_IMAGE\""), "it builds the team's image");
    let commands = posim_commands(&script);
    assert!(commands.iter().any(|c| c[0] == "live" && c.contains(&"--stack-image".to_string())));
    assert!(commands.iter().any(|c| c[0] == "images"), "it builds posim's PostgreSQL image");
    for command in commands.iter().filter(|c| c[0] != "images") {
        check(command);
    }
    gates_on_the_bundled_folder(&commands);
    let upload = steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact")));
    let upload = upload.expect("the reports are uploaded");
    assert_eq!(upload["if"], "always()", "failing gates keep their reports");
}

#[test]
fn the_gitlab_job_gates_on_posim_live_and_keeps_reports_and_junit() {
    let pipeline = yaml("examples/ci/gitlab-ci.yml");
    let job = &pipeline["posim-gate"];
    let script = scripts(&[&job["before_script"], &job["script"]]);
    let commands = posim_commands(&script);
    assert!(commands.iter().any(|c| c[0] == "live" && c.contains(&"--stack-image".to_string())));
    for command in commands.iter().filter(|c| c[0] != "images") {
        check(command);
    }
    gates_on_the_bundled_folder(&commands);
    assert_eq!(job["artifacts"]["when"], "always");
    assert!(job["artifacts"]["reports"]["junit"].as_str().is_some_and(|p| p.ends_with("junit.xml")));
}
