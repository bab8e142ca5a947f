//! The examples are real workflows: each validates, and each plans as its snapshot shows.

use crate::support::{orchestrate, relative, repo_root, text};

#[test]
fn every_example_validates() {
    let examples: Vec<_> = std::fs::read_dir(repo_root().join("examples/workflows"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(examples.len() >= 4, "at least four examples");
    for path in examples {
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            source.starts_with("# yaml-language-server: $schema=../../schema/workflow.schema.json"),
            "{} lacks the schema comment",
            path.display()
        );
        let output = orchestrate()
            .arg("validate")
            .arg(relative(&path))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}:\n{}",
            path.display(),
            text(&output.stderr)
        );
        assert!(text(&output.stderr).contains(": valid ("));
    }
}

#[test]
fn every_example_plans_as_text() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/workflows"),
        "*.yaml",
        |path| {
            let output = orchestrate()
                .arg("plan")
                .arg(relative(path))
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", text(&output.stderr));
            insta::assert_snapshot!(text(&output.stdout));
        }
    );
}

#[test]
fn every_example_plans_as_json() {
    insta::glob!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/workflows"),
        "*.yaml",
        |path| {
            let output = orchestrate()
                .args(["plan", "--format", "json"])
                .arg(relative(path))
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", text(&output.stderr));
            let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            // Every key in `waves` and in `needs` is an instance, and needs come in earlier waves.
            let instances = plan["instances"].as_array().unwrap();
            let wave_of = |key: &str| {
                instances
                    .iter()
                    .find(|i| i["key"] == key)
                    .map(|i| i["wave"].as_u64().unwrap())
            };
            for instance in instances {
                for need in instance["needs"].as_array().unwrap() {
                    let need_wave = wave_of(need.as_str().unwrap()).expect("needs name instances");
                    assert!(need_wave < instance["wave"].as_u64().unwrap());
                }
            }
            let listed: usize = plan["waves"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_array().unwrap().len())
                .sum();
            assert_eq!(listed, instances.len());
            insta::assert_json_snapshot!(plan);
        }
    );
}

/// The per-repo pipeline pairs `fix-tests` with `bump` of the same repository only, and the
/// aggregation waits for every `fix-tests`.
#[test]
fn pipeline_pairs_needs_per_repository() {
    let output = orchestrate()
        .args([
            "plan",
            "--format",
            "json",
            "examples/workflows/pipeline.yaml",
        ])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let needs = |key: &str| -> Vec<String> {
        let instance = plan["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .unwrap();
        instance["needs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(needs("fix-tests[acme/web]"), ["bump[acme/web]"]);
    assert_eq!(
        needs("release-notes[acme/platform-docs]"),
        [
            "fix-tests[acme/api]",
            "fix-tests[acme/billing]",
            "fix-tests[acme/web]"
        ]
    );
    let waves = plan["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 3);
}
