//! The Kubernetes manifests in `deploy/kubernetes/` stay in step with posim:
//! the shards Job is an Indexed Job whose pods run `posim load --shard i/n`
//! with n its completions, every flag it passes is one `posim load` knows,
//! its scenario is bundled, and the merge Job merges exactly those n shards.

use std::process::Command;

fn yaml(path: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).expect("the manifest is in the repository");
    serde_yaml::from_str(&text).expect("the manifest is YAML")
}

fn args(job: &serde_yaml::Value) -> Vec<String> {
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].as_sequence().expect("the container's args");
    args.iter().map(|a| a.as_str().expect("a string argument").to_string()).collect()
}

fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[at + 1]
}

#[test]
fn the_shards_job_is_indexed_and_runs_flags_posim_load_knows() {
    let job = yaml("deploy/kubernetes/load-shards.yaml");
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = spec["completions"].as_u64().expect("completions");
    assert_eq!(spec["parallelism"].as_u64(), Some(completions), "every shard at once");
    let args = args(&job);
    assert_eq!(args[0], "load");
    assert_eq!(after(&args, "--shard"), format!("$(SHARD_INDEX)/{completions}"));
    let container = &spec["template"]["spec"]["containers"][0];
    let env = container["env"].as_sequence().expect("env");
    let index = env.iter().find(|e| e["name"] == "SHARD_INDEX").expect("SHARD_INDEX is set");
    let path = index["valueFrom"]["fieldRef"]["fieldPath"].as_str().expect("from the pod");
    assert!(path.contains("batch.kubernetes.io/job-completion-index"), "{path}");
    let scenario = args[1].strip_prefix("/scenarios/").expect("a scenario from the ConfigMap");
    assert!(std::path::Path::new("scenarios").join(scenario).is_file(), "{scenario} is bundled");
    let help = Command::new(env!("CARGO_BIN_EXE_posim")).args(["load", "--help"]).output().expect("posim runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag.as_str()), "`posim load` knows {flag}");
    }
}

#[test]
fn the_merge_job_merges_every_shard_once() {
    let shards = yaml("deploy/kubernetes/load-shards.yaml");
    let completions = shards["spec"]["completions"].as_u64().expect("completions");
    let out = after(&args(&shards), "--out").replace("$(SHARD_INDEX)", "{}");
    let merge = args(&yaml("deploy/kubernetes/load-merge.yaml"));
    assert_eq!(merge[0], "merge");
    let expected: Vec<String> = (0..completions).map(|i| out.replace("{}", &i.to_string())).collect();
    let given: Vec<String> = merge[1..].iter().take_while(|a| !a.starts_with("--")).cloned().collect();
    assert_eq!(given, expected);
}
