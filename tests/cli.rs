//! The command line itself: formats, several files, usage errors and exit codes.

use crate::support::{orchestrate, text};

#[test]
fn plan_as_dot_and_mermaid() {
    for format in ["dot", "mermaid"] {
        let output = orchestrate()
            .args([
                "plan",
                "--format",
                format,
                "examples/workflows/pipeline.yaml",
            ])
            .output()
            .unwrap();
        assert!(output.status.success());
        insta::assert_snapshot!(format!("pipeline_{format}"), text(&output.stdout));
    }
}

#[test]
fn validate_reports_each_file_and_fails_if_any_is_invalid() {
    let output = orchestrate()
        .args([
            "validate",
            "examples/workflows/single-repo.yaml",
            "tests/fixtures/invalid/cycle.yaml",
            "examples/workflows/pipeline.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("single-repo.yaml: valid (1 task, 1 instance)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pipeline.yaml: valid (3 tasks, 7 instances)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cycle.yaml:10:13: tasks depend on each other in a cycle"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let output = orchestrate()
        .args(["validate", "nope.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(text(&output.stderr), @"error: cannot read nope.yaml: No such file or directory (os error 2)");
}

#[test]
fn run_key_can_be_given_and_is_checked() {
    let output = orchestrate()
        .args([
            "plan",
            "--run",
            "2026-01-01",
            "--format",
            "json",
            "examples/workflows/dependency-sweep.yaml",
        ])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["run"], "dependency-sweep/2026-01-01");
    assert_eq!(plan["instances"][0]["branch"], "deps/2026-01-01/api");

    let output = orchestrate()
        .args([
            "plan",
            "--run",
            "a/b",
            "examples/workflows/nightly-sweep.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: --run: run key `a/b`"));
}

#[test]
fn global_flags_go_before_or_after_the_command() {
    for args in [
        [
            "--color",
            "never",
            "validate",
            "examples/workflows/single-repo.yaml",
        ],
        [
            "validate",
            "examples/workflows/single-repo.yaml",
            "--color",
            "never",
        ],
    ] {
        orchestrate().args(args).assert().success();
    }
}

#[test]
fn usage_errors_exit_2() {
    let output = orchestrate().args(["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = orchestrate()
        .args(["plan", "--format", "yaml", "x.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_lists_the_commands() {
    // The help shows the environment's values: the state directory's is the test's own.
    let output = orchestrate()
        .env_remove("ORCHESTRATE_STATE")
        .arg("--help")
        .output()
        .unwrap();
    insta::assert_snapshot!(text(&output.stdout));
}

/// The GitHub Actions examples are valid YAML, and every `orchestrate` command line in them
/// parses (checked with `--help` appended, which clap answers only for valid commands).
#[test]
fn github_actions_examples_use_real_commands() {
    let dir = crate::support::repo_root().join("examples/github-actions");
    for name in ["nightly-sweep.yml", "batch-refactor.yml"] {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&source).unwrap();
        assert!(yaml["jobs"].is_mapping(), "{name}");
        for line in source
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("orchestrate "))
        {
            let words: Vec<&str> = line
                .split_whitespace()
                .skip(1)
                .take_while(|w| {
                    !w.starts_with('$') && !w.starts_with('"') && *w != "\\" && *w != ">"
                })
                .collect();
            let output = orchestrate().args(&words).arg("--help").output().unwrap();
            assert!(
                output.status.success(),
                "{name}: `{line}`: {}",
                text(&output.stderr)
            );
        }
    }
}
