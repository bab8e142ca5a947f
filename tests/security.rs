//! Secrets and injection: the API key appears in no output, log or state file, at the most
//! verbose level and with either auth scheme; workflow values cannot change the JSON sent.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use orchestrate::sim::SimConfig;

use crate::support::{repo_root, text};

const CANARY: &str = "key_canary_SECURITY_0123456789abcdefXYZ";

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_in_no_output_log_or_state_file() {
    let config = SimConfig {
        api_key: CANARY.into(),
        speed: 1000.0,
        agent_duration: (Duration::from_secs(10), Duration::from_secs(20)),
        repositories_quota: vec!["1000/s".parse().unwrap()],
        faults: "error=0.3,seed=4".parse().unwrap(),
        ..SimConfig::default()
    };
    let sim = crate::support::simulator(config).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let summary = dir.path().join("summary.md");
    let outputs = dir.path().join("outputs");
    let commands: Vec<Vec<&str>> = vec![
        vec!["schema"],
        vec!["validate", "examples/workflows/pipeline.yaml"],
        vec!["plan", "examples/workflows/nightly-sweep.yaml"],
        vec![
            "apply",
            "examples/workflows/pipeline.yaml",
            "--yes",
            "--poll-interval",
            "15ms",
            "--retry-backoff",
            "10ms",
        ],
        vec![
            "apply",
            "examples/workflows/nightly-sweep.yaml",
            "--yes",
            "--poll-interval",
            "15ms",
            "--retry-backoff",
            "10ms",
        ],
        vec![
            "plan",
            "examples/workflows/pipeline.yaml",
            "--format",
            "json",
        ],
        vec!["status"],
        vec!["status", "--json"],
        vec!["runs", "--json"],
        vec!["report", "--format", "markdown"],
        vec!["report", "--format", "junit"],
        vec!["retry", "--failed", "--yes", "--poll-interval", "15ms"],
        vec!["cancel"],
        vec!["me"],
        vec!["models", "--json"],
        vec!["repos"],
        vec!["agents", "list", "--all", "--json"],
        vec!["runs", "prune", "--older-than", "30d"],
    ];
    for auth in ["basic", "bearer"] {
        for args in &commands {
            let mut command = crate::support::command();
            command
                .current_dir(repo_root())
                .env("CURSOR_API_KEY", CANARY)
                .env("CURSOR_API_BASE_URL", sim.url())
                .env("CURSOR_API_AUTH", auth)
                .env("ORCHESTRATE_QUOTAS", "calls=60000/min,calls_burst=500,launches=60000/min,launches_burst=500,repositories=1000/s")
                .env("ORCHESTRATE_STATE", &state)
                .env("RUST_LOG", "trace")
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_STEP_SUMMARY", &summary)
                .env("GITHUB_OUTPUT", &outputs)
                .arg("-vv")
                .args(args)
                .stdin(Stdio::null());
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
            assert!(
                !stdout.contains(CANARY) && !stderr.contains(CANARY),
                "`{}` ({auth}) printed the key",
                args.join(" ")
            );
            assert!(
                stderr.contains("TRACE") || stderr.contains("DEBUG") || !args[0].starts_with('a'),
                "{stderr}"
            );
        }
    }
    assert!(sim.stats().agents > 0, "the commands did reach the API");
    // The commands about one agent, on one the runs launched.
    let agent = sim.launches().len();
    assert!(agent > 0);
    let mut list = crate::support::command();
    list.env("CURSOR_API_KEY", CANARY)
        .env("CURSOR_API_BASE_URL", sim.url())
        .args(["agents", "list", "--json", "--limit", "1"]);
    let listed: serde_json::Value = serde_json::from_slice(&list.output().unwrap().stdout).unwrap();
    // On v1 (the default) a list is `{items, nextCursor}`.
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    for action in ["get", "conversation", "stop", "delete"] {
        let mut command = crate::support::command();
        command
            .env("CURSOR_API_KEY", CANARY)
            .env("CURSOR_API_BASE_URL", sim.url())
            .env("RUST_LOG", "trace")
            .args(["-vv", "agents", action, &id]);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            !text(&output.stdout).contains(CANARY) && !text(&output.stderr).contains(CANARY),
            "agents {action}"
        );
    }
    let mut files = files_under(&state);
    files.extend([summary, outputs]);
    assert!(files.len() > 3);
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes());
        assert!(!found, "{} holds the key", file.display());
    }
    sim.shutdown().await;
}

/// Quotes, braces, backslashes, newlines, control characters and Unicode from `vars` reach
/// the simulator exactly, as one JSON string: they cannot add or change a field.
#[tokio::test(flavor = "multi_thread")]
async fn workflow_values_cannot_inject_into_the_json_sent() {
    let config = SimConfig {
        speed: 1000.0,
        agent_duration: (Duration::from_secs(10), Duration::from_secs(10)),
        ..SimConfig::default()
    };
    let sim = crate::support::simulator(config).await;
    let dir = tempfile::tempdir().unwrap();
    let evil = "\"}, \"model\": \"o3\", \"source\": {\"repository\": \"https://github.com/evil/x\"}, \"x\": {\"y\": \"\\\\\n\ttab\u{7}bell héllo — 你好 🚀 {{ not a template }}";
    let workflow = serde_json::json!({
        "version": 1,
        "name": "inject",
        "vars": { "evil": evil },
        "tasks": { "t": { "repo": "https://github.com/acme/api", "prompt": "{{ vars.evil }}" } },
    });
    let file = dir.path().join("inject.yaml");
    std::fs::write(&file, serde_yaml::to_string(&workflow).unwrap()).unwrap();
    let mut command = crate::support::command();
    command
        .env("CURSOR_API_KEY", orchestrate::sim::DEFAULT_KEY)
        .env("CURSOR_API_BASE_URL", sim.url())
        .env("ORCHESTRATE_STATE", dir.path().join("state"))
        .args(["apply", "--yes", "--poll-interval", "15ms"])
        .arg(&file);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let launches = sim.launches();
    assert_eq!(launches.len(), 1);
    assert_eq!(launches[0].prompt, evil);
    assert_eq!(launches[0].model, None);
    assert_eq!(launches[0].repository, "https://github.com/acme/api");
    sim.shutdown().await;
}
