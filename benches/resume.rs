//! Resuming a 10,000-instance run: from opening the state to having every unfinished
//! instance back under watch. Goal (DESIGN.md section 6): under 1 s.
//!
//! Run: `cargo bench --bench resume`.
//!
//! The run (2,000 repositories x 5 chained tasks) was killed in its second wave: 2,000
//! instances succeeded, 2,000 are running (their agents live in the simulator), 6,000 wait.
//! Resuming means: open the store and read the run's 10,000 records, rebuild and diff the
//! plan, and read the statuses of the 2,000 running agents from the API (in 100-agent pages).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use orchestrate::cursor::model::{LaunchRequest, LaunchTarget, Prompt, Source};
use orchestrate::cursor::{AgentId, ApiKey, Client, ClientConfig, QuotaConfig};
use orchestrate::exec::{Backend, V0};
use orchestrate::plan::{Options, Plan};
use orchestrate::sim::{DEFAULT_KEY, SimConfig, Simulator};
use orchestrate::spec::{self, SourceFile};
use orchestrate::state::{InstanceRecord, InstanceState, StoreHandle, Timestamp, Write};

const REPOS: usize = 2_000;

fn workflow() -> String {
    let repos = (0..REPOS)
        .map(|n| format!("    - https://github.com/acme/svc-{n:04}"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut yaml = format!(
        "version: 1\nname: resume\napi:\n  version: v0\nconcurrency: 2000\nfleets:\n  all:\n{repos}\ntasks:\n"
    );
    for task in 0..5 {
        let _ = writeln!(
            yaml,
            "  step-{task}:\n    fleet: all\n    prompt: Step {task} on {{{{ repo.name }}}}."
        );
        if task > 0 {
            let _ = writeln!(yaml, "    needs: [step-{}]", task - 1);
        }
    }
    yaml
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = SimConfig {
            agent_duration: (Duration::from_secs(3600), Duration::from_secs(3600)),
            ..SimConfig::default()
        };
        let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut client_config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
        client_config.quotas = QuotaConfig::default()
            .with_overrides(
                "calls=1000000/min,calls_burst=10000,launches=1000000/min,launches_burst=10000",
            )
            .unwrap();
        let client = Client::new(client_config).unwrap();
        let text = workflow();
        let workflow = spec::parse(&SourceFile::new("resume.yaml", text.clone())).unwrap();
        let plan = Plan::build(&workflow, &Options::default()).unwrap();
        let run = plan.run.to_string();

        // The state a killed apply left.
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StoreHandle::open(&dir.path().into()).unwrap();
            let mut writes = Vec::new();
            for instance in &plan.instances {
                let repo = instance.repo.as_ref().unwrap().to_string();
                let mut record = InstanceRecord::pending(
                    instance.key.as_str(),
                    instance.task.as_str(),
                    &repo,
                    &instance.branch,
                    &instance.spec_hash(),
                );
                match instance.wave {
                    0 => record.state = InstanceState::Succeeded,
                    1 => {
                        let request = LaunchRequest {
                            prompt: Prompt::text(&instance.prompt),
                            model: None,
                            source: Source {
                                repository: repo.clone(),
                                git_ref: None,
                            },
                            target: Some(LaunchTarget {
                                branch_name: Some(instance.branch.clone()),
                                ..LaunchTarget::default()
                            }),
                            webhook: None,
                        };
                        let agent = client.launch(&request).await.unwrap();
                        record.state = InstanceState::Running;
                        record.agent_id = Some(agent.id.0);
                        record.attempt = 1;
                        record.started_at = Some(Timestamp::now());
                    }
                    _ => {}
                }
                writes.push(Write::Instance(run.clone(), record));
            }
            store.write(writes).await.unwrap();
            store.close().await;
        }

        let start = Instant::now();
        let store = StoreHandle::open(&dir.path().into()).unwrap();
        let id = run.clone();
        let records = store.read(move |s| s.instances(&id)).await.unwrap();
        let read = start.elapsed();
        let workflow = spec::parse(&SourceFile::new("resume.yaml", text)).unwrap();
        let mut plan = Plan::build(&workflow, &Options::default()).unwrap();
        plan.diff(&orchestrate::apply::recorded_map(&records, &[]));
        let planned = start.elapsed();
        let running: Vec<AgentId> = records
            .iter()
            .filter_map(|r| r.agent_id.clone().map(AgentId))
            .collect();
        let backend = Arc::new(V0::new(client));
        let statuses = backend
            .statuses(&running, SystemTime::now() - Duration::from_secs(60))
            .await
            .unwrap();
        let total = start.elapsed();
        assert_eq!(statuses.len(), running.len());
        let stats = sim.stats();
        println!(
            "resume of a 10,000-instance run (2,000 succeeded, 2,000 running, 6,000 waiting):"
        );
        println!(
            "  open the store and read 10,000 records: {:.0} ms",
            read.as_secs_f64() * 1e3
        );
        println!(
            "  rebuild and diff the plan:              {:.0} ms",
            planned.saturating_sub(read).as_secs_f64() * 1e3
        );
        println!(
            "  read 2,000 running agents' statuses:    {:.0} ms ({} list pages)",
            total.saturating_sub(planned).as_secs_f64() * 1e3,
            stats.calls.get("GET /v0/agents").copied().unwrap_or(0)
        );
        println!(
            "  total:                                  {:.0} ms",
            total.as_secs_f64() * 1e3
        );
        sim.shutdown().await;
    });
}
