//! The API commands of the binary (`me`, `models`, `repos`, `agents ...`) against a
//! simulator, and what they do without a key.

use std::time::Duration;

use orchestrate::cursor::model::{LaunchRequest, Prompt, Source};
use orchestrate::cursor::{ApiKey, Client, ClientConfig};
use orchestrate::sim::SimConfig;

use crate::client_v1::create;
use crate::support::{orchestrate, text};

/// Recognisable, so a test can prove it appears nowhere.
const CANARY_KEY: &str = "key_canary_0123456789abcdefghijklmnop";

async fn simulator() -> crate::support::StrictSim {
    let config = SimConfig {
        api_key: CANARY_KEY.into(),
        speed: 1000.0,
        agent_duration: (Duration::from_secs(10), Duration::from_secs(20)),
        ..SimConfig::default()
    };
    crate::support::simulator(config).await
}

fn run(sim_url: &str, version: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = orchestrate()
        .env("CURSOR_API_KEY", CANARY_KEY)
        .env("CURSOR_API_BASE_URL", sim_url)
        .env("CURSOR_API_VERSION", version)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// Runs each command on `version`; each must succeed without showing the key. Returns the
/// outputs.
async fn run_all(url: &str, version: &'static str, commands: Vec<Vec<String>>) -> Vec<String> {
    let mut outputs = Vec::new();
    for args in commands {
        let url = url.to_owned();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&url, version, &args)
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            !stdout.contains(CANARY_KEY) && !stderr.contains(CANARY_KEY),
            "the key leaked"
        );
        assert!(stderr.contains("DEBUG"), "-vv shows debug output");
        outputs.push(stdout);
    }
    outputs
}

fn words(commands: &[&[&str]]) -> Vec<Vec<String>> {
    commands
        .iter()
        .map(|c| c.iter().map(|w| (*w).to_owned()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_commands_work_and_never_show_the_key() {
    let sim = simulator().await;
    let url = sim.url();
    // One agent, so that `agents list` has something to show.
    let client = Client::new(ClientConfig::new(&url, ApiKey::new(CANARY_KEY)).unwrap()).unwrap();
    let request = LaunchRequest {
        prompt: Prompt::text("Add a README"),
        model: None,
        source: Source {
            repository: "https://github.com/acme/api".into(),
            git_ref: Some("main".into()),
        },
        target: None,
        webhook: None,
    };
    client.launch(&request).await.unwrap();
    let commands = words(&[
        &["-vv", "me"],
        &["-vv", "models", "--json"],
        &["-vv", "repos"],
        &["-vv", "agents", "list"],
        &["-vv", "agents", "list", "--json", "--all", "--limit", "1"],
        &[
            "-vv", "agents", "list", "-o", "json", "--all", "--limit", "1",
        ],
    ]);
    let outputs = run_all(&url, "v0", commands).await;
    // `-o json` is `--json` by its new name; piped, the table is whole tab-separated rows.
    assert_eq!(outputs[4], outputs[5]);
    let row = outputs[3].lines().nth(1).unwrap_or_default();
    assert_eq!(row.split('\t').count(), 6, "{}", outputs[3]);
    sim.shutdown().await;
}

/// On v1 (the default) the commands call `/v1`: an agent is shown with its latest run, its
/// conversation is its runs with their results, stop cancels the active run.
#[tokio::test(flavor = "multi_thread")]
async fn api_commands_follow_the_api_version() {
    // Agents that take 200 to 300 ms: one ends before the commands, one runs through `stop`.
    let sim = crate::support::simulator(SimConfig {
        api_key: CANARY_KEY.into(),
        speed: 10.0,
        creating: Duration::ZERO,
        agent_duration: (Duration::from_secs(2), Duration::from_secs(3)),
        ..SimConfig::default()
    })
    .await;
    let url = sim.url();
    let client = Client::new(ClientConfig::new(&url, ApiKey::new(CANARY_KEY)).unwrap()).unwrap();
    let done = client.v1_create_agent(&create("api", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let done = done.agent.id.0;
    let outputs = run_all(
        &url,
        "v1",
        words(&[
            &["-vv", "me"],
            &["-vv", "models"],
            &["-vv", "repos"],
            &["-vv", "agents", "list"],
            &["-vv", "agents", "get", &done],
            &["-vv", "agents", "conversation", &done],
            &["-vv", "agents", "stop", &done],
            &["-vv", "agents", "delete", &done],
        ]),
    )
    .await;
    assert!(outputs[1].contains("claude-4-sonnet"), "{}", outputs[1]);
    assert!(outputs[2].starts_with("acme/"), "{}", outputs[2]);
    assert!(
        outputs[3].contains(&done) && outputs[3].contains("LATEST RUN"),
        "{}",
        outputs[3]
    );
    assert!(outputs[4].contains("run is:   FINISHED"), "{}", outputs[4]);
    assert!(
        outputs[5].contains("Done: Bump the dependencies of api"),
        "{}",
        outputs[5]
    );
    assert!(outputs[6].contains("is not running"), "{}", outputs[6]);
    assert_eq!(outputs[7], format!("deleted {done}\n"));
    let stats = sim.stats();
    assert!(
        stats.calls.keys().all(|route| !route.contains("/v0/")),
        "{:?}",
        stats.calls
    );
    // `--api v1` says the same as the environment; a running agent's run is cancelled.
    let busy = client.v1_create_agent(&create("web", None)).await.unwrap();
    let busy = busy.agent.id.0;
    let stopped = run_all(
        &url,
        "v0",
        words(&[&["-vv", "agents", "stop", &busy, "--api", "v1"]]),
    )
    .await;
    assert!(
        stopped[0].starts_with("cancelled run run-"),
        "{}",
        stopped[0]
    );
    assert!(
        sim.stats()
            .calls
            .contains_key("POST /v1/agents/{id}/runs/{runId}/cancel")
            || sim
                .stats()
                .calls
                .contains_key("POST /v1/agents/{id}/runs/{run}/cancel")
    );
    sim.shutdown().await;
}

#[test]
fn without_a_key_api_commands_explain_and_exit_4() {
    let output = orchestrate().arg("me").output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    insta::assert_snapshot!(text(&output.stderr));
}
