//! The API commands of the binary (`me`, `models`, `repos`, `agents ...`) against a
//! simulator, and what they do without a key.

use std::time::Duration;

use orchestrate::cursor::model::{LaunchRequest, Prompt, Source};
use orchestrate::cursor::{ApiKey, Client, ClientConfig};
use orchestrate::sim::SimConfig;

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

fn run(sim_url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = orchestrate()
        .env("CURSOR_API_KEY", CANARY_KEY)
        .env("CURSOR_API_BASE_URL", sim_url)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
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
    let commands: &[&[&str]] = &[
        &["-vv", "me"],
        &["-vv", "models", "--json"],
        &["-vv", "repos"],
        &["-vv", "agents", "list"],
        &["-vv", "agents", "list", "--json", "--all", "--limit", "1"],
    ];
    for args in commands {
        let url = url.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&url, &args)
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            !stdout.contains(CANARY_KEY) && !stderr.contains(CANARY_KEY),
            "the key leaked"
        );
        assert!(stderr.contains("DEBUG"), "-vv shows debug output");
    }
    sim.shutdown().await;
}

#[test]
fn without_a_key_api_commands_explain_and_exit_4() {
    let output = orchestrate().arg("me").output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    insta::assert_snapshot!(text(&output.stderr));
}
