//! The contract checks themselves: a strict simulator sees a known-wrong exchange, and
//! `orchestrate sim --strict` offers the same checks to users.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use orchestrate::sim::{DEFAULT_KEY, SimConfig};

use crate::support::{api_dir, contract};

/// A request the published file forbids (`limit` is at most 100) is a violation of the
/// request side, seen by the test's own checks; a valid one is not.
#[tokio::test]
async fn a_known_wrong_request_is_seen_as_a_violation() {
    if contract().is_none() {
        return; // said once by `contract()`
    }
    let sim = crate::support::simulator(SimConfig::default()).await;
    sim.expect_violation("GET /v1/agents (request): parameter `limit` = \"500\"");
    let http = reqwest::Client::new();
    let wrong = http
        .get(format!("{}/v1/agents?limit=500", sim.url()))
        .bearer_auth(DEFAULT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let right = http
        .get(format!("{}/v1/agents?limit=100", sim.url()))
        .basic_auth(DEFAULT_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());
    sim.shutdown().await;
}

/// `orchestrate sim --strict DIR` checks every exchange and lists what broke the files at
/// `GET /__sim/violations`.
#[tokio::test]
async fn sim_strict_lists_violations_for_users() {
    if contract().is_none() {
        return;
    }
    let mut child = crate::support::command()
        .args(["sim", "--addr", "127.0.0.1:0", "--strict"])
        .arg(api_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("strict: every exchange checked"), "{first}");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let unknown = http
        .post(format!("{url}/v1/agents/bc-1/nothing"))
        .bearer_auth(DEFAULT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let violations: serde_json::Value = http
        .get(format!("{url}/__sim/violations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(violations.as_array().unwrap().len(), 1, "{violations}");
    assert_eq!(violations[0]["side"], "request");
    assert!(
        violations[0]["message"]
            .as_str()
            .unwrap()
            .contains("no operation of the published API"),
        "{violations}"
    );
}

/// Without the files, `--strict` refuses to start rather than check nothing.
#[test]
fn sim_strict_without_the_files_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = crate::support::orchestrate()
        .args(["sim", "--addr", "127.0.0.1:0", "--strict"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = crate::support::text(&output.stderr);
    assert!(
        stderr.contains("--strict: cannot read the OpenAPI file"),
        "{stderr}"
    );
}
