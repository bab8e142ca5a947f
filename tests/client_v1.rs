//! The v1 client against the simulator: agents with runs, and v1's rules, each pinned by a
//! contract test (shared/api/cursor-api-v1-notes.md).

use std::time::Duration;

use orchestrate::cursor::model::v1::{CreateAgentRequest, RepoSpec, agent_id_for};
use orchestrate::cursor::model::{AgentId, Prompt, Secret};
use orchestrate::cursor::{AgentStatus, ApiError, AuthScheme};
use orchestrate::sim::{DEFAULT_KEY, SimConfig};

use crate::client::{client_for, fast_sim};

/// A create request for `acme/{repo}`, with a pull request at the end.
pub(crate) fn create(repo: &str, agent_id: Option<AgentId>) -> CreateAgentRequest {
    CreateAgentRequest {
        prompt: Prompt::text(format!("Bump the dependencies of {repo}")),
        model: None,
        name: Some(format!("bump {repo}")),
        repos: vec![RepoSpec {
            url: format!("https://github.com/acme/{repo}"),
            starting_ref: Some("main".into()),
            pr_url: None,
        }],
        work_on_current_branch: None,
        auto_create_pr: Some(true),
        skip_reviewer_request: None,
        env_vars: None,
        mcp_servers: None,
        mode: None,
        agent_id,
    }
}

async fn until_ended(client: &orchestrate::cursor::Client, id: &AgentId) -> AgentStatus {
    let agent = client.v1_agent(id).await.unwrap();
    let run = agent.latest_run_id.unwrap();
    for _ in 0..500 {
        let status = client.v1_run(id, &run).await.unwrap().status;
        if status.is_terminal() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the run never ended");
}

#[tokio::test]
async fn an_agent_and_its_runs_follow_the_v1_rules() {
    let sim = crate::support::simulator(fast_sim()).await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Bearer);
    let id = agent_id_for("r", "bump[acme/api]", 1, "s");

    let created = client
        .v1_create_agent(&create("api", Some(id.clone())))
        .await
        .unwrap();
    assert_eq!(created.agent.id, id);
    assert_eq!(
        created.agent.url.as_deref(),
        Some(format!("https://cursor.com/agents/{id}").as_str())
    );
    assert!(created.run.id.0.starts_with("run-"));
    assert!(created.run.status == AgentStatus::Creating);
    assert_eq!(sim.stats().calls["POST /v1/agents"], 1);

    // The same id again is refused, never a second agent.
    let again = client
        .v1_create_agent(&create("api", Some(id.clone())))
        .await;
    assert_eq!(
        again.unwrap_err().conflict_code(),
        Some("agent_id_conflict")
    );
    assert_eq!(sim.stats().agents, 1);

    // A list item is a summary: no repositories; the agent itself has them.
    let listed = client.v1_agents(Some(5), None, true).await.unwrap();
    assert!(listed.items[0].repos.is_empty());
    assert_eq!(listed.items[0].env.as_ref().unwrap().kind, "cloud");
    let read = client.v1_agent(&id).await.unwrap();
    assert_eq!(read.repos[0].url, "https://github.com/acme/api");

    // One active run per agent: a follow-up now is busy, and the client waits it out.
    let follow_up = client
        .v1_create_run(&id, Prompt::text("Update the changelog."))
        .await
        .unwrap();
    assert!(sim.stats().errors["agent_busy"] >= 1, "{:?}", sim.stats());
    assert_eq!(until_ended(&client, &id).await, AgentStatus::Finished);

    // Ended runs carry their outputs; lists leave result and duration out.
    let read = client.v1_run(&id, &follow_up.id).await.unwrap();
    assert!(
        read.result
            .unwrap()
            .starts_with("Done: Update the changelog")
    );
    assert!(read.duration_ms.is_some());
    let branch = &read.git.unwrap().branches[0];
    assert_eq!(branch.repo_url, "github.com/acme/api");
    assert!(branch.pr_url.as_deref().unwrap().contains("/pull/"));
    let runs = client.v1_runs(&id, Some(1), None).await.unwrap();
    assert_eq!(runs.items[0].id, follow_up.id, "newest first");
    assert_eq!(
        (runs.items[0].result.clone(), runs.items[0].duration_ms),
        (None, None)
    );
    let older = client
        .v1_runs(&id, Some(1), runs.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(older.items[0].id, created.run.id);
    assert_eq!(older.next_cursor, None);

    // An ended run cannot be cancelled; usage counts both runs; artifacts have links.
    let cancel = client.v1_cancel_run(&id, &follow_up.id).await;
    assert_eq!(
        cancel.unwrap_err().conflict_code(),
        Some("run_not_cancellable")
    );
    let usage = client.v1_usage(&id).await.unwrap();
    assert_eq!(usage.runs.len(), 2);
    assert!(usage.total_usage.total_tokens > 2000);
    let artifacts = client.v1_artifacts(&id).await.unwrap();
    assert_eq!(artifacts.len(), 2);
    let link = client
        .v1_artifact_download(&id, &artifacts[0].path)
        .await
        .unwrap();
    assert!(link.url.starts_with(&sim.url()), "{}", link.url);

    // Archived agents take no runs and leave the default list; unarchive is idempotent.
    client.v1_archive(&id).await.unwrap();
    let refused = client.v1_create_run(&id, Prompt::text("More.")).await;
    assert_eq!(refused.unwrap_err().conflict_code(), Some("agent_archived"));
    assert!(
        client
            .v1_agents(None, None, false)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let listed = client.v1_agents(None, None, true).await.unwrap();
    assert_eq!(listed.items[0].status.as_deref(), Some("ARCHIVED"));
    client.v1_unarchive(&id).await.unwrap();
    client.v1_unarchive(&id).await.unwrap();
    client.v1_delete(&id).await.unwrap();
    assert!(matches!(
        client.v1_agent(&id).await,
        Err(ApiError::NotFound { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_creates_and_the_usage_limit_are_typed_errors() {
    let config = SimConfig {
        faults: "usage_limit=1".parse().unwrap(),
        ..fast_sim()
    };
    let sim = crate::support::simulator(config).await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);
    let mut with_env = create("api", Some(agent_id_for("r", "x", 1, "s")));
    with_env.env_vars = Some([("TOKEN".to_owned(), Secret::new("s3cret"))].into());
    let refused = client.v1_create_agent(&with_env).await.unwrap_err();
    assert!(
        matches!(&refused, ApiError::BadRequest { code: Some(code), message } if code == "validation_error" && message.contains("agentId cannot be combined with envVars")),
        "{refused:?}"
    );
    with_env.agent_id = None;
    client.v1_create_agent(&with_env).await.unwrap();
    // The environment's values are secrets: the simulator masks what it records.
    assert_eq!(sim.launches()[0].body["envVars"]["TOKEN"], "***");

    let over = client
        .v1_create_agent(&create("web", None))
        .await
        .unwrap_err();
    assert!(matches!(over, ApiError::UsageLimit { .. }), "{over:?}");
    assert!(!over.is_retryable());
    assert_eq!(sim.stats().calls["POST /v1/agents"], 3, "never retried");
    sim.shutdown().await;
}

#[tokio::test]
async fn v1_repositories_keep_the_same_quota() {
    let config = SimConfig {
        repositories_quota: vec!["1/min".parse().unwrap()],
        ..fast_sim()
    };
    let sim = crate::support::simulator(config).await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Bearer);
    let items = client.v1_repositories().await.unwrap();
    assert!(items.iter().any(|r| r.url == "https://github.com/acme/api"));
    // A second call inside the minute is answered 429 with v1's rate-limit headers.
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/repositories", sim.url()))
        .bearer_auth(DEFAULT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);
    assert_eq!(raw.headers()["x-ratelimit-remaining"], "0");
    assert!(raw.headers().contains_key("x-ratelimit-reset"));
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    sim.shutdown().await;
}

/// A run's stream as the published file describes it: the status replayed first without an
/// id, numbered events after it, a reconnect from `Last-Event-ID` that replays the status and
/// continues after the id, `done` at the end, 400 for an id of another run, and 410
/// `stream_expired` once the retention after the end has passed.
#[tokio::test]
async fn a_run_stream_replays_its_status_resumes_and_expires() {
    use orchestrate::cursor::model::v1::RunEvent;
    let sim = crate::support::simulator(SimConfig {
        speed: 100.0,
        creating: Duration::from_secs(5),
        agent_duration: (Duration::from_secs(20), Duration::from_secs(20)),
        stream_retention: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);
    let created = client.v1_create_agent(&create("api", None)).await.unwrap();
    let (id, run) = (created.agent.id, created.run.id);

    let mut events = client.v1_stream(&id, &run, None).await.unwrap();
    assert_eq!(
        events.retention_seconds,
        Some(1),
        "30 simulated seconds at 100x"
    );
    let (first_id, first) = events.next().await.unwrap().unwrap();
    assert_eq!(
        (first_id, first),
        (None, RunEvent::Status(AgentStatus::Creating))
    );
    let (running_id, running) = events.next().await.unwrap().unwrap();
    assert_eq!(running, RunEvent::Status(AgentStatus::Running));
    let running_id = running_id.expect("numbered");
    drop(events);

    // Reconnected after RUNNING: the status again, then only what came after.
    let mut resumed = client
        .v1_stream(&id, &run, Some(&running_id))
        .await
        .unwrap();
    let (replay_id, replay) = resumed.next().await.unwrap().unwrap();
    assert_eq!(replay_id, None);
    assert!(matches!(replay, RunEvent::Status(_)), "{replay:?}");
    let (_, result) = resumed.next().await.unwrap().unwrap();
    let RunEvent::Result(result) = result else {
        panic!("{result:?}")
    };
    assert_eq!(result.status, AgentStatus::Finished);
    assert!(
        result
            .text
            .unwrap()
            .starts_with("Done: Bump the dependencies of api")
    );
    assert!(result.duration_ms.unwrap() > 0);
    assert_eq!(
        result.git.unwrap().branches[0].repo_url,
        "github.com/acme/api"
    );
    assert_eq!(resumed.next().await.unwrap().unwrap().1, RunEvent::Done);
    assert!(resumed.next().await.is_none(), "the stream ends after done");

    let other = client
        .v1_stream(&id, &run, Some("run-other:1"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&other, ApiError::BadRequest { code: Some(code), .. } if code == "invalid_last_event_id"),
        "{other:?}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = client.v1_stream(&id, &run, None).await.err().unwrap();
    assert!(
        expired.to_string().contains("no longer kept"),
        "410 stream_expired: {expired:?}"
    );
    assert_eq!(sim.stats().errors["stream_expired"], 1);
    sim.shutdown().await;
}
