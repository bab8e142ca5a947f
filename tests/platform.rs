//! The LiteLLM Agent Platform backend against the simulator's platform mode: what it sends,
//! and its event streams broken and resumed. (The shared `apply` suite runs on it too.)

use orchestrate::sim::DEFAULT_KEY;

use crate::scenario::{Backend, PLATFORM_AGENT, Scenario};

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_created_with_the_runtime_agent_prompt_and_environment() {
    let sim = Scenario::on(Backend::Platform).start().await;
    let ran = sim.apply(&Scenario::example("single-repo"), &[]).await;
    let stderr = ran.stderr;
    assert_eq!(ran.code, Some(0), "{stderr}");
    let launches = sim.launches();
    assert_eq!(launches.len(), 1);
    let body = &launches[0].body;
    assert_eq!(body["runtime"], "cursor");
    assert_eq!(body["agent_id"], PLATFORM_AGENT);
    assert!(
        body["prompt"].as_str().unwrap().contains("README"),
        "{body}"
    );
    assert_eq!(
        body["environment"],
        serde_json::json!({"repository": "https://github.com/acme/api", "ref": "main", "auto_create_pr": true})
    );
    // Only the platform's key (LAP_MASTER_KEY, sent as Bearer) was given, and it never shows.
    assert!(!stderr.contains(DEFAULT_KEY));
    let status = sim.status().await;
    let instance = &status.instances()[0];
    assert_eq!(status["api"], "litellm-agent-platform");
    // The result and the pull request come from the agent's final messages.
    assert!(
        instance["summary"]
            .as_str()
            .unwrap()
            .starts_with("I worked on:"),
        "{instance}"
    );
    assert!(
        instance["pr_url"]
            .as_str()
            .unwrap()
            .starts_with("https://github.com/acme/api/pull/")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_event_streams_resume_and_agent_errors_are_retried() {
    // 40 prompts at 20% errors: some ERROR is all but sure (0.8^40 is 0.01%), and with 10
    // retries no instance runs out of them (0.36^11 per instance).
    let sim = Scenario::on(Backend::Platform)
        .work(10, 30)
        .faults("stream_drop=0.25,error=0.2,429=0.01:1,seed=9")
        .start()
        .await;
    let ran = sim.apply(&Scenario::fixture("platform-streams"), &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let status = sim.status().await;
    assert_eq!(status.count("succeeded"), 20, "{status}");
    let seen = sim.stats();
    assert!(
        seen.faults.get("stream_drop").copied().unwrap_or(0) > 5,
        "{:?}",
        seen.faults
    );
    assert!(
        seen.faults.get("agent_error").copied().unwrap_or(0) > 0,
        "{:?}",
        seen.faults
    );
    // Each broken stream was reopened after its last event, and no event was sent twice.
    assert!(
        seen.stream_resumes >= seen.faults["stream_drop"],
        "{seen:?}"
    );
    // Read the logs without faults in the way.
    sim.set_faults(orchestrate::sim::Faults::default());
    let mut logged = 0;
    let client = reqwest::Client::new();
    for launch in sim.launches() {
        let page: serde_json::Value = client
            .get(format!(
                "{}/v1/sessions/{}/events",
                sim.url(),
                launch.agent_id
            ))
            .bearer_auth(DEFAULT_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        logged += page["data"].as_array().unwrap().len() as u64;
    }
    assert_eq!(seen.stream_events, logged, "events sent twice or lost");
    // Each session got its follow-up once (a failed first prompt gets none).
    assert!(
        seen.follow_ups.values().all(|n| *n == 1),
        "{:?}",
        seen.follow_ups
    );
    assert!(seen.follow_ups.len() >= 20);
    sim.shutdown().await;
}
