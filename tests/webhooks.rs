//! Webhooks: the receiver refuses what is not signed with the run's secret, too big, or not
//! a POST on its path; duplicates are recognised; a run driven by webhooks finishes without
//! waiting for its (slow) polls.

use std::sync::Arc;
use std::time::Duration;

use orchestrate::cursor::{ApiKey, Client, ClientConfig};
use orchestrate::exec::{MAX_BODY, PollConfig, Poller, V0, WebhookListener};
use orchestrate::sim::{DEFAULT_KEY, SimConfig, signature};
use tokio_util::sync::CancellationToken;

use crate::scenario::{Backend, Scenario};
use crate::support::text;

#[tokio::test]
async fn the_receiver_refuses_unsigned_forged_oversized_and_other_requests() {
    let sim = crate::support::simulator(SimConfig::default()).await;
    let client =
        Client::new(ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap()).unwrap();
    let poll = PollConfig {
        min: Duration::from_secs(60),
        max: Duration::from_secs(60),
    };
    let poller = Poller::start(Arc::new(V0::new(client)), poll, CancellationToken::new());
    let secret = "k".repeat(48);
    let listener = WebhookListener::start(
        "127.0.0.1:0".parse().unwrap(),
        "/hooks/cursor",
        secret.clone(),
        poller,
    )
    .await
    .unwrap();
    let url = format!("http://{}/hooks/cursor", listener.addr());
    let http = reqwest::Client::new();
    let body = br#"{"event":"statusChange","timestamp":"2026-11-22T10:00:00Z","id":"bc_1","status":"FINISHED"}"#.to_vec();
    let post = |body: Vec<u8>, signature: Option<String>, id: &str| {
        let mut request = http.post(&url).header("X-Webhook-ID", id).body(body);
        if let Some(signature) = signature {
            request = request.header("X-Webhook-Signature", signature);
        }
        request.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();

    assert_eq!(
        status(post(body.clone(), None, "d1").await.unwrap()),
        401,
        "unsigned"
    );
    let forged = signature(&"x".repeat(48), &body);
    assert_eq!(
        status(post(body.clone(), Some(forged), "d1").await.unwrap()),
        401,
        "signed with another secret"
    );
    let tampered = signature(&secret, &body);
    let mut changed = body.clone();
    changed[10] ^= 1;
    assert_eq!(
        status(post(changed, Some(tampered.clone()), "d1").await.unwrap()),
        401,
        "body changed after signing"
    );
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(
        status(
            post(big.clone(), Some(signature(&secret, &big)), "d2")
                .await
                .unwrap()
        ),
        413,
        "oversized"
    );
    assert_eq!(
        status(http.get(&url).send().await.unwrap()),
        405,
        "not a POST"
    );
    assert_eq!(
        status(
            http.post(url.replace("/cursor", "/other"))
                .body(body.clone())
                .send()
                .await
                .unwrap()
        ),
        404
    );

    assert_eq!(
        status(
            post(body.clone(), Some(tampered.clone()), "d1")
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(post(body.clone(), Some(tampered), "d1").await.unwrap()),
        200,
        "a replay is acknowledged"
    );
    let deliveries = listener.deliveries();
    assert_eq!(
        (
            deliveries.accepted,
            deliveries.duplicates,
            deliveries.rejected
        ),
        (1, 1, 3)
    );
    sim.shutdown().await;
}

/// Polls every 10 minutes: only webhooks (delivered twice, out of order) can finish this
/// run in the test's time.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_driven_by_webhooks_finishes_without_waiting_for_polls() {
    let sim = Scenario::on(Backend::V0)
        .work(20, 60)
        .faults("hook_dup=1.0,hook_delay=0ms..40ms")
        .start()
        .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = sim.command();
    command
        .args(["apply", "examples/workflows/pipeline.yaml", "--yes"])
        .args(["--poll-interval", "10m", "--follow-up-grace", "10ms"])
        .args([
            "--webhook-listen",
            &format!("127.0.0.1:{port}"),
            "--webhook-url",
            &format!("http://127.0.0.1:{port}/hooks"),
        ]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("receiving webhooks on 127.0.0.1:{port} at /hooks")),
        "{stderr}"
    );
    let stats = sim.stats();
    assert_eq!(stats.agents, 7);
    // Each agent ends twice (its prompt, its follow-up), but a delivery wakes a read of every
    // agent waited on, so one agent's delivery may come after the run has seen it end: at
    // least one per agent, and the run did not wait for the 10-minute poll.
    assert!(
        stats.webhook_deliveries >= 7,
        "each of 7 agents notified: {}",
        stats.webhook_deliveries
    );
    // The secret went with every launch (the simulator masks it when it records the body).
    assert!(sim.launches().iter().all(|l| {
        l.body["webhook"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/hooks")
    }));
    // And it is kept, private, for a re-apply.
    let secrets: Vec<_> = std::fs::read_dir(sim.state().join("secrets"))
        .unwrap()
        .collect();
    assert_eq!(secrets.len(), 1);
    sim.shutdown().await;
}

/// Webhook flags that cannot be honoured are refused before anything is written: the state
/// holds no run afterwards, so nothing is left `running` with pending instances.
#[test]
fn refused_webhook_flags_leave_nothing_in_the_state() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    let cases = [
        ("v1", "127.0.0.1:0", "webhooks exist only on API v0"),
        ("v0", in_use.as_str(), "cannot listen for webhooks on"),
    ];
    for (version, listen, says) in cases {
        let state = crate::support::fresh_state();
        let output = crate::support::orchestrate()
            .env("ORCHESTRATE_STATE", &state)
            .env("CURSOR_API_VERSION", version)
            .args(["apply", "examples/workflows/single-repo.yaml", "--simulate"])
            .args(["--webhook-listen", listen])
            .args(["--webhook-url", "http://127.0.0.1:9/hook"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{version}");
        assert!(
            text(&output.stderr).contains(says),
            "{}",
            text(&output.stderr)
        );
        let runs = crate::support::orchestrate()
            .env("ORCHESTRATE_STATE", &state)
            .args(["runs", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            text(&runs.stdout).trim(),
            "[]",
            "{version}: a run was left behind"
        );
    }
}
