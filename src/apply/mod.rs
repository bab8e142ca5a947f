//! Applying a workflow: everything the user gave is checked before the first write, then the
//! run is recorded, executed and concluded. The command line only parses, confirms and
//! renders around these steps.
//!
//! ```text
//! prepare (reads, checks, binds: nothing written) -> Prepared
//!   start (webhook secret, run and records written) -> Started
//!     execute (the executor, until settled or halted) -> Option<Halt>
//!   conclude (pure) -> Conclusion
//!     finish (run record, learned quotas written; or the cancel) -> Finished
//! ```

mod conclude;
mod connect;
mod discover;
mod recall;
mod records;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use conclude::{Conclusion, conclude};
pub use connect::SIMULATED_SPEED;
pub use discover::{DEFAULT_MAX_AGE, from_cache as discovered_from_cache};
pub use recall::{mark_adopted, recall};
pub use records::{Merged, merge, recorded_map};

use crate::cursor::model::{Secret, Webhook};
use crate::cursor::{ApiError, Client, ConfigError};
use crate::exec::{
    AnyBackend, Cancelled, ExecConfig, Execution, Halt, PollConfig, Recall, Reporter, RunEvent,
    WebhookListener, cancel_run,
};
use crate::plan::{Action, Options, Plan, PlanError};
use crate::sim::Simulator;
use crate::spec::{Api, ApiVersion, Loaded};
use crate::state::{
    Counts, InstanceRecord, InstanceState, LearnedLimit, RunRecord, RunState, Snapshot, StateError,
    StoreHandle, Timestamp, Write, remove_snapshot, webhook_secret, write_snapshot,
};

/// How often `status` in another terminal sees the records of a running apply.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);

/// Settings of the executor a user may change; unset ones take the defaults (faster ones
/// against the simulator, slower polling when webhooks say when to read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Shortest interval between two status reads of one agent.
    pub poll_interval: Option<Duration>,
    /// First wait before relaunching a failed attempt.
    pub retry_backoff: Option<Duration>,
    /// After a follow-up, how long a FINISHED status must be fresh to count.
    pub follow_up_grace: Option<Duration>,
    /// How long the API may stay out of reach before the run stops.
    pub outage_budget: Option<Duration>,
}

impl Tuning {
    /// The executor's settings for a run `simulate`d or not, with webhooks or not.
    pub fn exec_config(&self, simulate: bool, webhooks: bool) -> ExecConfig {
        let mut config = ExecConfig::default();
        if simulate {
            config.poll = PollConfig {
                min: Duration::from_millis(100),
                max: Duration::from_secs(1),
            };
            config.relaunch_backoff = Duration::from_millis(500);
            config.follow_up_grace = Duration::from_secs(1);
        }
        if webhooks && self.poll_interval.is_none() {
            // Deliveries say when to read: polling is only a safety net.
            config.poll = PollConfig {
                min: Duration::from_secs(60),
                max: Duration::from_secs(300),
            };
        }
        if let Some(min) = self.poll_interval {
            config.poll = PollConfig {
                min,
                max: config.poll.max.max(min),
            };
        }
        config.relaunch_backoff = self.retry_backoff.unwrap_or(config.relaunch_backoff);
        config.follow_up_grace = self.follow_up_grace.unwrap_or(config.follow_up_grace);
        config.outage_budget = self.outage_budget.unwrap_or(config.outage_budget);
        config
    }
}

/// `--webhook-listen` and `--webhook-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhooks {
    /// The address to receive deliveries on.
    pub listen: SocketAddr,
    /// The public URL that reaches it (its path is the one listened on).
    pub url: url::Url,
}

/// What the user asked of one apply.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The workflow file's name, as given.
    pub file: String,
    /// The run key, instead of the workflow's `run_key`.
    pub run_key: Option<String>,
    /// Against a simulator started in process.
    pub simulate: bool,
    /// Most agents at once, instead of the workflow's `concurrency`.
    pub max_concurrency: Option<u32>,
    /// Refuse to start if more agents than this would be launched.
    pub max_agents: Option<usize>,
    /// Receive webhooks.
    pub webhooks: Option<Webhooks>,
    /// Refresh the repository list of discover fleets even if the cache is young.
    pub refresh_repos: bool,
    /// Share the run with other runners, each instance claimed through a lease this long.
    pub join: Option<Duration>,
    /// The executor's settings.
    pub tuning: Tuning,
    /// The states whose instances `retry` relaunches (none for `apply`).
    pub retry: Vec<InstanceState>,
}

/// Why an apply did not start or could not record its end.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The workflow cannot be planned.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Plan(Vec<PlanError>),
    /// The state cannot be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A simulated run continued for real, or the reverse.
    #[error("run {run} was {was}; a {is} apply cannot continue it: use --run with another key")]
    SimulationMismatch {
        /// The run.
        run: String,
        /// `simulated` or `real`.
        was: &'static str,
        /// The other.
        is: &'static str,
    },
    /// The run's agents live on another API than this apply would use.
    #[error(
        "run {run} was started on {was}, and this apply would use {is}: its agents live there. Set {how} to continue it, or use --run with another key"
    )]
    ApiMismatch {
        /// The run.
        run: String,
        /// Where its agents live.
        was: String,
        /// Where this apply would go.
        is: String,
        /// What to set to go there.
        how: String,
    },
    /// Webhooks on an API that has none.
    #[error(
        "webhooks exist only on API v0 (v1 and the Agent Platform have none); this run uses {0}: drop --webhook-url, or set CURSOR_API_VERSION=v0"
    )]
    WebhooksUnsupported(String),
    /// `--webhook-listen` cannot be bound.
    #[error("cannot listen for webhooks on {addr}: {source}")]
    WebhookListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The webhook secret cannot be kept.
    #[error("cannot keep the webhook secret in {dir}: {source}")]
    WebhookSecret {
        /// The state directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// Tasks name environment variables that are not set.
    #[error("{}", .0.iter().map(|p| format!("task {p}")).collect::<Vec<_>>().join("\n"))]
    EnvUnset(Vec<String>),
    /// More agents than `--max-agents` would be launched.
    #[error(
        "this apply would launch {count} agent(s), more than --max-agents {max}; nothing was launched"
    )]
    TooManyAgents {
        /// Agents this apply would launch.
        count: usize,
        /// The ceiling.
        max: usize,
    },
    /// The client cannot be configured from the environment.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The simulator cannot start.
    #[error("cannot start the simulator: {0}")]
    Simulator(std::io::Error),
    /// The first call, made before anything is launched, did not get an answer.
    #[error("cannot reach {url}: {error}")]
    Unreachable {
        /// The API's root.
        url: String,
        /// How the call failed, after the client's retries.
        error: ApiError,
    },
    /// The first call got an answer that says the API cannot be used.
    #[error("the API at {url} refused the first call: {error}")]
    Refused {
        /// The API's root.
        url: String,
        /// The refusal.
        error: ApiError,
    },
    /// Discover fleets cannot be resolved and no cached list stands in.
    #[error("cannot resolve discover fleets: {0}")]
    Discover(ApiError),
    /// The run is new to this state, and the API cannot say whether an earlier apply
    /// launched its agents: launching could make them twice.
    #[error(
        "cannot look for launches an earlier apply of this run made (so as not to launch them twice): {0}"
    )]
    Recall(ApiError),
}

impl ApplyError {
    /// Whether the API cannot be used (as opposed to bad input).
    pub fn is_api_unusable(&self) -> bool {
        matches!(
            self,
            ApplyError::Config(_)
                | ApplyError::Simulator(_)
                | ApplyError::Discover(_)
                | ApplyError::Recall(_)
                | ApplyError::Unreachable { .. }
                | ApplyError::Refused { .. }
        )
    }
}

/// The time a run's templates see: its first apply's, so `run.date` and hashes stay put.
pub fn now_or(existing: Option<&RunRecord>) -> SystemTime {
    existing.map_or_else(crate::plan::now, |run| run.started_at.time())
}

/// An apply checked and ready to start: nothing is written yet.
pub struct Prepared {
    plan: Plan,
    existing: Option<RunRecord>,
    merged: Merged,
    recall: Recall,
    client: Client,
    backend: Arc<AnyBackend>,
    simulator: Option<Simulator>,
    webhooks: Option<(Webhooks, tokio::net::TcpListener)>,
    request: Request,
    source: String,
}

/// Checks everything `request` asks of `loaded` against the state, connects, resolves
/// discover fleets and plans; `say` tells of waits on the way. Nothing of the run is written.
pub async fn prepare(
    store: &StoreHandle,
    loaded: &Loaded,
    request: Request,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Prepared, ApplyError> {
    let workflow = &loaded.workflow;
    // The run: its key from --run or run_key; an existing run keeps its start time, so
    // `run.date` and every spec hash stay what they were.
    let options = Options {
        run_key: request.run_key.clone(),
        ..Options::default()
    };
    let mut first = Plan::build(workflow, &options).map_err(ApplyError::Plan)?;
    if request.simulate {
        first.run = first.run.simulated();
    }
    let id = first.run.to_string();
    // A shared database locks each run; a directory was taken whole when it was opened.
    match request.join {
        Some(lease) => store.join_run(&id, lease).await?,
        None => store.lock_run(&id).await?,
    }
    let existing = store.read(move |s| s.run(&id)).await?;
    if let Some(run) = &existing {
        check_continuable(run, &first.api, request.simulate)?;
    }
    if request.webhooks.is_some() && first.api != Api::Cursor(ApiVersion::V0) {
        return Err(ApplyError::WebhooksUnsupported(first.api.to_string()));
    }
    let webhooks = match &request.webhooks {
        Some(hooks) => Some((hooks.clone(), bind(hooks.listen).await?)),
        None => None,
    };
    let (client, simulator) = connect::connect(&first.api, request.simulate, store).await?;
    if simulator.is_none() {
        connect::preflight(&first.api, &client).await?;
    }
    let discovered =
        discover::resolve(say, workflow, store, &client, request.refresh_repos).await?;
    let options = Options {
        run_key: Some(first.run_context.key.clone()),
        now: now_or(existing.as_ref()),
        discovered,
    };
    let mut plan = Plan::build(workflow, &options).map_err(ApplyError::Plan)?;
    plan.run = first.run.clone();
    check_env(&plan)?;
    if let Some(n) = request.max_concurrency {
        plan.concurrency = n;
    }
    let id = first.run.to_string();
    // A simulated run cannot be continued (its simulator is gone): it starts over.
    let recorded = if request.simulate {
        Vec::new()
    } else {
        store.read(move |s| s.instances(&id)).await?
    };
    plan.diff(&recorded_map(&recorded, &request.retry));
    let merged = merge(&plan, &recorded);
    let backend = Arc::new(AnyBackend::new(&plan.api, client.clone()));
    // A simulated run's simulator is new: nothing of it can be found.
    let recall = if simulator.is_none() {
        recall(&mut plan, &merged.records, &backend)
            .await
            .map_err(ApplyError::Recall)?
    } else {
        Recall::new()
    };
    let prepared = Prepared {
        plan,
        existing,
        merged,
        recall,
        client,
        backend,
        simulator,
        webhooks,
        request,
        source: loaded.file.text().to_owned(),
    };
    if let Some(max) = prepared.request.max_agents {
        let count = prepared.new_agents();
        if count > max {
            return Err(ApplyError::TooManyAgents { count, max });
        }
    }
    Ok(prepared)
}

/// `--webhook-listen`, bound before anything is written.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ApplyError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApplyError::WebhookListen { addr, source })
}

/// Refuses a plan whose tasks name environment variables that are not set, each said once.
fn check_env(plan: &Plan) -> Result<(), ApplyError> {
    let unset: BTreeSet<String> = plan
        .instances
        .iter()
        .filter_map(|i| {
            i.options
                .env_values()
                .err()
                .map(|e| format!("{}: {e}", i.task))
        })
        .collect();
    if unset.is_empty() {
        return Ok(());
    }
    Err(ApplyError::EnvUnset(unset.into_iter().collect()))
}

/// Refuses to continue `run` on another API or simulation setting than its own.
fn check_continuable(run: &RunRecord, api: &Api, simulate: bool) -> Result<(), ApplyError> {
    if run.simulated != simulate {
        let (was, is) = if run.simulated {
            ("simulated", "real")
        } else {
            ("real", "simulated")
        };
        return Err(ApplyError::SimulationMismatch {
            run: run.id.clone(),
            was,
            is,
        });
    }
    if &run.api != api {
        let how = match &run.api {
            Api::Cursor(v) => format!("CURSOR_API_VERSION={v} (or `api: {{version: {v}}}`)"),
            Api::Platform(p) => format!(
                "`api: {{backend: litellm-agent-platform, url: {}, agent_id: {}}}`",
                p.url, p.agent_id
            ),
        };
        return Err(ApplyError::ApiMismatch {
            run: run.id.clone(),
            was: run.api.to_string(),
            is: api.to_string(),
            how,
        });
    }
    Ok(())
}

impl Prepared {
    /// The plan, diffed against the state.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Instances to launch, relaunch, adopt, continue and keep ([`Action::ALL`]'s order).
    pub fn actions(&self) -> [usize; 5] {
        Action::ALL.map(|action| {
            self.plan
                .instances
                .iter()
                .filter(|i| i.action == action)
                .count()
        })
    }

    /// Agents this apply launches (retries may add more): new and relaunched instances, and
    /// continued ones no agent was launched for yet (pending when a run was interrupted, or
    /// blocked by a need `retry` relaunches). What a confirmation asks about.
    pub fn new_agents(&self) -> usize {
        self.plan
            .instances
            .iter()
            .zip(&self.merged.records)
            .filter(|(instance, record)| match instance.action {
                Action::Launch | Action::Relaunch => true,
                Action::Continue => record.agent_id.is_none() && record.launch.is_none(),
                Action::Adopt | Action::Keep => false,
            })
            .count()
    }

    /// The in-process simulator's URL, when simulated.
    pub fn simulator_url(&self) -> Option<String> {
        self.simulator.as_ref().map(Simulator::url)
    }

    /// Records the run and its instances (and the webhook secret first), then sets up the
    /// execution: `report` hears its events, `interrupt` stops it launching.
    pub async fn start(
        self,
        store: &StoreHandle,
        report: Reporter,
        interrupt: CancellationToken,
    ) -> Result<Started, ApplyError> {
        let webhook = match &self.webhooks {
            Some((hooks, _)) => Some(webhook_of(store, &self.plan.run.to_string(), hooks)?),
            None => None,
        };
        let run = self.run_record();
        store.write(self.first_writes(&run)).await?;
        let Prepared {
            plan,
            merged,
            recall,
            client,
            backend,
            simulator,
            webhooks,
            request,
            ..
        } = self;
        let mut config = request
            .tuning
            .exec_config(request.simulate, webhook.is_some());
        config.webhook = webhook;
        config.lease = request.join;
        let execution = Execution::new(
            Arc::new(plan),
            merged.records,
            store.clone(),
            backend.clone(),
            config.clone(),
            interrupt,
            report,
            recall,
        );
        let (listener, webhook_path) = match (webhooks, config.webhook) {
            (Some((hooks, socket)), Some(webhook)) => {
                let secret = webhook
                    .secret
                    .expect("a secret of our own")
                    .expose()
                    .to_owned();
                let path = hooks.url.path().to_owned();
                let listener = WebhookListener::serve(socket, &path, secret, execution.poller())
                    .map_err(|source| ApplyError::WebhookListen {
                        addr: hooks.listen,
                        source,
                    })?;
                (Some(listener), path)
            }
            _ => (None, String::new()),
        };
        Ok(Started {
            execution,
            backend,
            run,
            client,
            simulator,
            listener,
            webhook_path,
            store: store.clone(),
        })
    }

    /// The run as this apply records it: an existing run keeps its file and start time.
    fn run_record(&self) -> RunRecord {
        let existing = self.existing.as_ref();
        RunRecord {
            id: self.plan.run.to_string(),
            workflow: self.plan.workflow.clone(),
            key: self.plan.run_context.key.clone(),
            file: existing.map_or_else(|| self.request.file.clone(), |r| r.file.clone()),
            source: self.source.clone(),
            state: RunState::Running,
            simulated: self.request.simulate,
            api: self.plan.api.clone(),
            started_at: existing.map_or_else(Timestamp::now, |r| r.started_at),
            finished_at: None,
        }
    }

    /// The first writes of the run: why instances relaunch, their records, the run, its
    /// `apply` event.
    fn first_writes(&self, run: &RunRecord) -> Vec<Write> {
        let id = &run.id;
        let requeued = self.merged.requeued.iter();
        let mut writes: Vec<Write> = requeued
            .map(|(key, event)| Write::Event(id.clone(), event.log(key)))
            .collect();
        let changed = self.merged.changed.iter().cloned();
        writes.extend(changed.map(|r| Write::Instance(id.clone(), r)));
        writes.push(Write::Run(run.clone()));
        let event = RunEvent::Applied {
            actions: self.actions(),
        };
        writes.push(Write::Event(id.clone(), event.log()));
        writes
    }
}

/// The webhook every launch of `run` passes, with the run's secret (made on first use and
/// kept in the state directory).
fn webhook_of(store: &StoreHandle, run: &str, hooks: &Webhooks) -> Result<Webhook, ApplyError> {
    let secret =
        webhook_secret(store.dir(), run, crate::cursor::webhook::new_secret).map_err(|source| {
            ApplyError::WebhookSecret {
                dir: store.dir().display().to_string(),
                source,
            }
        })?;
    Ok(Webhook {
        url: hooks.url.to_string(),
        secret: Some(Secret::new(secret)),
    })
}

/// A recorded run, executing.
pub struct Started {
    execution: Arc<Execution<AnyBackend>>,
    backend: Arc<AnyBackend>,
    run: RunRecord,
    client: Client,
    simulator: Option<Simulator>,
    listener: Option<WebhookListener>,
    webhook_path: String,
    store: StoreHandle,
}

impl Started {
    /// The counts per state, as they change.
    pub fn counts(&self) -> watch::Receiver<Counts> {
        self.execution.counts()
    }

    /// The instances whose agents work, with how long they have, longest first, when asked.
    pub fn running(&self) -> impl Fn() -> Vec<(String, Duration)> + Send + 'static {
        let execution = self.execution.clone();
        move || {
            let mut running: Vec<(String, Duration)> = execution
                .records()
                .into_iter()
                .filter(|r| r.state.has_live_agent())
                .map(|r| {
                    (
                        r.key,
                        r.started_at.map(Timestamp::elapsed).unwrap_or_default(),
                    )
                })
                .collect();
            running.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            running
        }
    }

    /// How long calls have waited on the API's quotas so far, when asked.
    pub fn quota_clock(&self) -> impl Fn() -> Duration + Send + 'static {
        let client = self.client.clone();
        move || client.quotas().waited()
    }

    /// Where webhooks are received, when they are: the address, and the path.
    pub fn webhook_address(&self) -> Option<(SocketAddr, &str)> {
        let listener = self.listener.as_ref()?;
        Some((listener.addr(), self.webhook_path.as_str()))
    }

    /// How many instances have an agent that may be working.
    pub fn live_agents(&self) -> usize {
        self.execution.counts().borrow().live()
    }

    /// Runs until every instance settled or a halt, keeping a snapshot of the records for
    /// `status` in another terminal meanwhile.
    pub async fn execute(&self) -> Option<Halt> {
        // A shared database is read by others as it is: only a directory needs snapshots.
        if !self.store.needs_snapshots() {
            return self.execution.execute().await;
        }
        let snapshots = {
            let (execution, dir, run) = (
                self.execution.clone(),
                self.store.dir().to_owned(),
                self.run.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let snapshot = Snapshot {
                        run: run.clone(),
                        instances: sorted(execution.records()),
                    };
                    let dir = dir.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || write_snapshot(&dir, &snapshot)).await;
                    tokio::time::sleep(SNAPSHOT_EVERY).await;
                }
            })
        };
        let halt = self.execution.execute().await;
        snapshots.abort();
        remove_snapshot(self.store.dir(), &self.run.id);
        halt
    }

    /// Records how the apply ended (or cancels the run), and stops the simulator.
    pub async fn finish(self, conclusion: &Conclusion) -> Finished {
        let mut run = self.run;
        let (mut cancelled, mut not_recorded) = (None, None);
        if let Some(state) = conclusion.run_state() {
            run.state = state;
            if matches!(state, RunState::Succeeded | RunState::Failed) {
                run.finished_at = Some(Timestamp::now());
            }
            let mut writes = vec![
                Write::Run(run.clone()),
                Write::Event(run.id.clone(), RunEvent::Ended(state).log()),
            ];
            let quotas = self.client.quotas();
            if let Some(at) = quotas.last_repositories_call() {
                writes.push(Write::LastRepositoriesCall(at.into()));
            }
            if let Some(calls_per_minute) = quotas.named_limit() {
                writes.push(Write::LearnedLimit(LearnedLimit {
                    api: self.client.base_url().to_string(),
                    calls_per_minute,
                    at: Timestamp::now(),
                }));
            }
            not_recorded = self.store.write(writes).await.err();
        } else {
            match cancel_run(&self.store, self.backend.as_ref(), &run.id).await {
                Ok(done) => cancelled = Some(done),
                Err(error) => not_recorded = Some(error),
            }
        }
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
        Finished {
            records: sorted(self.execution.records()),
            run,
            cancelled,
            not_recorded,
        }
    }
}

/// How an apply ended, recorded.
pub struct Finished {
    /// The run record as written.
    pub run: RunRecord,
    /// Its instances, in key order.
    pub records: Vec<InstanceRecord>,
    /// What the cancel did, when the run was cancelled.
    pub cancelled: Option<Cancelled>,
    /// Why the end could not be recorded, if it could not.
    pub not_recorded: Option<StateError>,
}

/// Instances in key order, as the store lists them.
fn sorted(mut records: Vec<InstanceRecord>) -> Vec<InstanceRecord> {
    records.sort_by(|a, b| a.key.cmp(&b.key));
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_set_by_the_user_wins_over_every_default() {
        let none = Tuning::default();
        assert_eq!(
            none.exec_config(false, false).poll.min,
            Duration::from_millis(250)
        );
        assert_eq!(
            none.exec_config(true, false).poll.min,
            Duration::from_millis(100)
        );
        let hooked = none.exec_config(false, true);
        assert_eq!(hooked.poll.min, Duration::from_secs(60));
        let set = Tuning {
            poll_interval: Some(Duration::from_millis(15)),
            retry_backoff: Some(Duration::from_millis(30)),
            follow_up_grace: None,
            outage_budget: Some(Duration::from_secs(5)),
        };
        let config = set.exec_config(true, true);
        assert_eq!(config.outage_budget, Duration::from_secs(5));
        assert_eq!(config.poll.min, Duration::from_millis(15));
        assert_eq!(config.poll.max, Duration::from_secs(1), "the simulator's");
        assert_eq!(config.relaunch_backoff, Duration::from_millis(30));
        assert_eq!(config.follow_up_grace, Duration::from_secs(1));
    }
}
