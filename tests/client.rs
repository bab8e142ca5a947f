//! The API client against the simulator on loopback: every endpoint, every error class,
//! retries under faults, quotas under concurrency, both auth schemes, a path prefix.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use orchestrate::cursor::model::{
    AgentId, LaunchRequest, LaunchTarget, Prompt, Secret, Source, Webhook,
};
use orchestrate::cursor::{
    AgentStatus, ApiError, ApiKey, AuthScheme, Client, ClientConfig, QuotaConfig, RetryPolicy,
};
use orchestrate::sim::{DEFAULT_KEY, Faults, SimConfig, Simulator};

pub(crate) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A simulator whose agents take 20..40 ms of real time.
pub(crate) fn fast_sim() -> SimConfig {
    SimConfig {
        speed: 1000.0,
        creating: Duration::from_secs(5),
        agent_duration: (Duration::from_secs(15), Duration::from_secs(35)),
        ..SimConfig::default()
    }
}

/// Retries that finish in a test's time.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(50),
        max_total: Duration::from_secs(10),
    }
}

pub(crate) fn client_for(sim: &Simulator, key: &str, auth: AuthScheme) -> Client {
    let mut config = ClientConfig::new(&sim.url(), ApiKey::new(key)).unwrap();
    config.auth = auth;
    config.retry = quick_retries();
    config.quotas = QuotaConfig::default().with_overrides("calls=100000/s,calls_burst=1000,launches=100000/s,launches_burst=1000,repositories=1000/s").unwrap();
    Client::new(config).unwrap()
}

fn launch_request(repo: &str, branch: &str) -> LaunchRequest {
    LaunchRequest {
        prompt: Prompt::text(format!("Bump the dependencies of {repo}")),
        model: Some("claude-4-sonnet".into()),
        source: Source {
            repository: format!("https://github.com/acme/{repo}"),
            git_ref: Some("main".into()),
        },
        target: Some(LaunchTarget {
            auto_create_pr: Some(true),
            branch_name: Some(branch.into()),
            ..LaunchTarget::default()
        }),
        webhook: None,
    }
}

async fn wait_for(
    client: &Client,
    id: &AgentId,
    done: impl Fn(&AgentStatus) -> bool,
) -> orchestrate::cursor::model::Agent {
    for _ in 0..500 {
        let agent = client.agent(id).await.unwrap();
        if done(&agent.status) {
            return agent;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("agent {id} never reached the expected status");
}

#[tokio::test]
async fn every_endpoint_works_against_the_simulator() {
    let sim = crate::support::simulator(fast_sim()).await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);

    assert_eq!(
        client.me().await.unwrap().api_key_name,
        "orchestrate simulator"
    );
    assert!(
        client
            .models()
            .await
            .unwrap()
            .models
            .contains(&"claude-4-sonnet".to_owned())
    );
    assert!(
        client
            .repositories()
            .await
            .unwrap()
            .repositories
            .iter()
            .any(|r| r.name == "api")
    );

    let launched = client
        .launch(&launch_request("api", "deps/api"))
        .await
        .unwrap();
    assert_eq!(launched.status, AgentStatus::Creating);
    assert_eq!(launched.branch(), Some("deps/api"));

    let finished = wait_for(&client, &launched.id, |s| *s == AgentStatus::Finished).await;
    assert_eq!(
        finished.pr_url(),
        Some("https://github.com/acme/api/pull/1001")
    );
    assert!(
        finished
            .summary
            .unwrap()
            .contains("Bump the dependencies of api")
    );

    // A follow-up sends it back to work and shows in the conversation.
    client
        .follow_up(&launched.id, Prompt::text("Also update CHANGELOG.md"))
        .await
        .unwrap();
    assert_eq!(
        client.agent(&launched.id).await.unwrap().status,
        AgentStatus::Running
    );
    wait_for(&client, &launched.id, |s| *s == AgentStatus::Finished).await;
    let conversation = client.conversation(&launched.id).await.unwrap();
    let texts: Vec<&str> = conversation
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[2], "Also update CHANGELOG.md");

    // Pagination: 5 agents in pages of 2, newest first, each seen once.
    for n in 0..4 {
        client
            .launch(&launch_request("web", &format!("b{n}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list_agents(Some(2), cursor.as_deref())
            .await
            .unwrap();
        assert!(page.agents.len() <= 2);
        seen.extend(
            page.agents
                .into_iter()
                .map(|a| a.branch().unwrap().to_owned()),
        );
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["b3", "b2", "b1", "b0", "deps/api"]);

    // What stop leaves is not documented, and the published enum has no stopped status: the
    // simulator answers EXPIRED. Delete removes.
    let running = client
        .launch(&launch_request("billing", "stop-me"))
        .await
        .unwrap();
    client.stop(&running.id).await.unwrap();
    assert_eq!(
        client.agent(&running.id).await.unwrap().status,
        AgentStatus::Expired
    );
    client.delete(&running.id).await.unwrap();
    assert!(matches!(
        client.agent(&running.id).await,
        Err(ApiError::NotFound { .. })
    ));

    let stats = sim.stats();
    assert_eq!(stats.launches["https://github.com/acme/api#deps/api"], 1);
    assert_eq!(stats.follow_ups[&launched.id.0], 1);
    assert_eq!(stats.total_quota_violations(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn basic_and_bearer_auth_both_work_and_a_wrong_key_is_refused() {
    let sim = crate::support::simulator(fast_sim()).await;
    for auth in [AuthScheme::Basic, AuthScheme::Bearer] {
        client_for(&sim, DEFAULT_KEY, auth).me().await.unwrap();
        let error = client_for(&sim, "wrong-key", auth).me().await.unwrap_err();
        assert!(
            matches!(error, ApiError::Auth { status: 401, .. }),
            "{error:?}"
        );
        assert!(!error.is_retryable());
    }
    // One attempt only: an auth failure is not retried.
    assert_eq!(sim.stats().calls["GET /v0/me"], 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_works() {
    let config = SimConfig {
        path_prefix: "/cursor".into(),
        ..fast_sim()
    };
    let sim = crate::support::simulator(config).await;
    let mut config =
        ClientConfig::new(&format!("{}/cursor", sim.url()), ApiKey::new(DEFAULT_KEY)).unwrap();
    config.auth = AuthScheme::Bearer;
    let client = Client::new(config).unwrap();
    let agent = client
        .launch(&launch_request("api", "prefixed"))
        .await
        .unwrap();
    assert_eq!(client.agent(&agent.id).await.unwrap().id, agent.id);
    sim.shutdown().await;
}

#[tokio::test]
async fn each_error_class_is_mapped() {
    let sim = crate::support::simulator(fast_sim()).await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);

    // 400 with the API's message; not retried.
    let mut bad = launch_request("api", "x");
    bad.source.repository = "https://gitlab.com/acme/api".into();
    match client.launch(&bad).await.unwrap_err() {
        ApiError::BadRequest { message, .. } => {
            assert!(message.contains("GitHub repository"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The simulator refuses what the published file forbids, as the API would.
    sim.expect_violation("/webhook/secret");
    let mut short_secret = launch_request("api", "y");
    short_secret.webhook = Some(Webhook {
        url: "http://127.0.0.1:9/hook".into(),
        secret: Some(Secret::new("short")),
    });
    assert!(matches!(
        client.launch(&short_secret).await,
        Err(ApiError::BadRequest { .. })
    ));

    // 404.
    assert!(matches!(
        client.agent(&AgentId("bc_nope".into())).await,
        Err(ApiError::NotFound { .. })
    ));

    // A follow-up while the agent works is taken (v0's 409 means deleted or archived, never
    // busy); a deleted agent's 404 is final.
    let agent = client.launch(&launch_request("api", "busy")).await.unwrap();
    client
        .follow_up(&agent.id, Prompt::text("Next"))
        .await
        .unwrap();
    assert_eq!(sim.stats().calls["POST /v0/agents/{id}/followup"], 1);

    // 5xx that does not go away: a clear error after a bounded number of attempts.
    sim.set_faults("5xx=1.0".parse().unwrap());
    let error = client.me().await.unwrap_err();
    assert!(matches!(error, ApiError::Server { .. }), "{error:?}");
    assert_eq!(
        sim.stats().calls["GET /v0/me"],
        u64::from(quick_retries().max_attempts)
    );
    sim.set_faults(Faults::default());

    // Network: nothing listens.
    let mut config = ClientConfig::new("http://127.0.0.1:9", ApiKey::new("k")).unwrap();
    config.retry = RetryPolicy {
        max_attempts: 2,
        ..quick_retries()
    };
    let error = Client::new(config).unwrap().me().await.unwrap_err();
    assert!(
        matches!(error, ApiError::Network { sent: false, .. }),
        "{error:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_body_that_is_not_the_documented_json_is_a_decode_error() {
    let app = axum::Router::new().route("/v0/me", axum::routing::get(|| async { "not json" }));
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(ClientConfig::new(&url, ApiKey::new("k")).unwrap()).unwrap();
    assert!(matches!(client.me().await, Err(ApiError::Decode { .. })));
}

#[tokio::test]
async fn transient_faults_are_retried_to_success() {
    // Each injected 429 asks for a whole second (Retry-After counts seconds): few of them.
    let faults: Faults = "5xx=0.25,429=0.04:2,drop=0.15,latency=0ms..3ms,seed=11"
        .parse()
        .unwrap();
    let sim = crate::support::simulator(SimConfig {
        faults,
        ..fast_sim()
    })
    .await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);
    for _ in 0..25 {
        client.me().await.unwrap();
        client.list_agents(Some(10), None).await.unwrap();
    }
    let stats = sim.stats();
    for fault in ["5xx", "429", "drop"] {
        assert!(
            stats.faults.get(fault).copied().unwrap_or(0) > 0,
            "no {fault} was injected: {:?}",
            stats.faults
        );
    }
    assert_eq!(stats.total_quota_violations(), 0);
    sim.shutdown().await;
}

/// A launch whose response is lost may have created the agent: the client does not send it
/// again (that could make a second agent) but says so, and the agent is there.
#[tokio::test]
async fn a_launch_is_not_resent_after_an_ambiguous_failure() {
    let sim = crate::support::simulator(SimConfig {
        faults: "drop=1.0".parse().unwrap(),
        ..fast_sim()
    })
    .await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);
    let error = client
        .launch(&launch_request("api", "lost"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiError::Network { sent: true, .. }),
        "{error:?}"
    );
    assert!(!error.surely_not_processed());
    let stats = sim.stats();
    assert_eq!(stats.calls["POST /v0/agents"], 1, "sent once");
    assert_eq!(
        stats.launches["https://github.com/acme/api#lost"], 1,
        "and the agent exists"
    );

    // A 429 is surely not processed: a launch is retried through it, and made once.
    sim.set_faults("429=0.5:1,seed=3".parse().unwrap());
    // Launches until some met a 429 (each has an even chance, whatever else draws from the
    // simulator's random numbers meanwhile).
    let mut launched = 0;
    while launched < 4 || !sim.stats().faults.contains_key("429") {
        assert!(launched < 40, "no 429 in 40 launches");
        client
            .launch(&launch_request("api", &format!("after-429-{launched}")))
            .await
            .unwrap();
        launched += 1;
    }
    let stats = sim.stats();
    for n in 0..launched {
        assert_eq!(
            stats.launches[&format!("https://github.com/acme/api#after-429-{n}")],
            1
        );
    }
    sim.shutdown().await;
}

/// Many tasks call the repositories endpoint at once; the client's quota (scaled to 5 per
/// second and 15 per 4 seconds so the test is short) holds, as the simulator, enforcing the
/// same windows, counts no violation.
#[tokio::test]
async fn the_repositories_quota_holds_under_concurrency() {
    let windows: orchestrate::cursor::Rates = "5/s+15/4s".parse().unwrap();
    let sim_config = SimConfig {
        repositories_quota: windows.0.clone(),
        ..fast_sim()
    };
    let sim = crate::support::simulator(sim_config).await;
    let mut config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
    config.quotas = QuotaConfig {
        repositories: windows.0,
        ..QuotaConfig::default()
    };
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..quick_retries()
    };
    let client = Arc::new(Client::new(config).unwrap());
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.repositories().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().expect("no call is refused");
    }
    let stats = sim.stats();
    assert_eq!(stats.calls["GET /v0/repositories"], 6);
    assert_eq!(stats.total_quota_violations(), 0);
    assert!(client.quotas().last_repositories_call().is_some());
    sim.shutdown().await;
}

/// Deliveries are signed `sha256=<hex HMAC of the raw body>` with the launch's secret, carry
/// `X-Webhook-ID` (shared by duplicates) and `X-Webhook-Event`, and come for FINISHED.
#[tokio::test]
async fn webhooks_are_signed_and_duplicates_share_their_id() {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    type Received = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>>;
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move { sink.lock().unwrap().push((headers, body)) }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let faults = "hook_dup=1.0,hook_delay=0ms..20ms".parse().unwrap();
    let sim = crate::support::simulator(SimConfig {
        faults,
        ..fast_sim()
    })
    .await;
    let client = client_for(&sim, DEFAULT_KEY, AuthScheme::Basic);
    let secret = "s".repeat(40);
    let mut request = launch_request("api", "hooked");
    request.webhook = Some(Webhook {
        url: hook_url,
        secret: Some(Secret::new(secret.clone())),
    });
    let agent = client.launch(&request).await.unwrap();
    for _ in 0..400 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deliveries = received.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2, "one delivery, duplicated");
    for (headers, body) in &deliveries {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(headers["x-webhook-signature"], expected.as_str());
        assert_eq!(headers["x-webhook-event"], "statusChange");
        assert_eq!(headers["user-agent"], "Cursor-Agent-Webhook/1.0");
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(payload["id"], agent.id.0.as_str());
        assert_eq!(payload["status"], "FINISHED");
    }
    assert_eq!(
        deliveries[0].0["x-webhook-id"],
        deliveries[1].0["x-webhook-id"]
    );
    // The secret itself is never recorded by the simulator.
    assert_eq!(sim.launches()[0].body["webhook"]["secret"], "***");
    sim.shutdown().await;
}

/// Against a server quota of 10 calls a minute and default client settings, a burst of 16
/// calls costs one 429: the ten the server takes go at once, one probe finds the limit, and
/// the rest hold for the window instead of running into it.
#[tokio::test]
async fn a_server_quota_costs_one_429_and_its_learned_limit_is_honoured() {
    let sim = crate::support::simulator(SimConfig {
        calls_quota: Some("10/min".parse().unwrap()),
        ..fast_sim()
    })
    .await;
    let config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
    let client = Client::new(config).unwrap();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(2), client.me())
                    .await
                    .map(Result::unwrap)
                    .is_ok()
            })
        })
        .collect();
    let mut answered = 0;
    for call in calls {
        answered += usize::from(call.await.unwrap());
    }
    let stats = sim.stats();
    assert_eq!(answered, 10, "the server's ten, and no more in its window");
    assert_eq!(stats.total_throttled(), 1, "{:?}", stats.throttled);
    assert_eq!(stats.calls.values().sum::<u64>(), 11);
    assert_eq!(client.quotas().pace().map(|p| p.allowance), Some(10));
    sim.shutdown().await;
}
