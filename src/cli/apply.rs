//! `orchestrate apply FILE`: run or continue a workflow until every instance settles.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::progress::LiveView;
use super::{Exit, Output, discover};
use crate::cursor::model::{Secret, Webhook};
use crate::cursor::{ApiKey, AuthScheme, Client, ClientConfig, ConfigError};
use crate::exec::{
    AnyBackend, ExecConfig, Execution, Halt, PollConfig, Progress, WebhookListener, cancel_run,
};
use crate::plan::{Action, Options, Plan, Recorded};
use crate::report::{GithubActions, Report};
use crate::sim::{SimConfig, Simulator};
use crate::spec::{self, Api, ApiVersion, Loaded, SourceFile};
use crate::state::Snapshot as LiveSnapshot;
use crate::state::{
    Event, InstanceRecord, InstanceState, LearnedLimit, RunRecord, RunState, Store, StoreHandle,
    Timestamp, Write, remove_snapshot, webhook_secret, write_snapshot,
};

/// `orchestrate apply` options.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The workflow file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Run key: continue or start the run with this key instead of the workflow's `run_key`.
    #[arg(long, value_name = "KEY")]
    pub run: Option<String>,
    /// Launch without asking (required when not in a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Run against a simulator started in process: no key, no cost, agents take seconds.
    #[arg(long)]
    pub simulate: bool,
    /// Most agents active at once, overriding the workflow's `concurrency`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// Refuse to start if the run would launch more agents than this (a cost guard; retries
    /// may add more).
    #[arg(long, value_name = "N")]
    pub max_agents: Option<usize>,
    /// Receive Cursor's webhooks on this address (with --webhook-url); statuses are then
    /// read as soon as an agent changes, and polling slows down to a safety net.
    #[arg(long, value_name = "ADDR", requires = "webhook_url")]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// The public URL that reaches --webhook-listen (its path is the one listened on).
    #[arg(long, value_name = "URL", requires = "webhook_listen")]
    pub webhook_url: Option<url::Url>,
    /// Refresh the repository list of discover fleets even if the cache is young.
    #[arg(long)]
    pub refresh_repos: bool,
    /// Shortest interval between two status reads of one agent (default 250ms; reads are
    /// paced by its age and the durations seen).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Tuning")]
    pub poll_interval: Option<Duration>,
    /// First wait before relaunching a failed attempt (it doubles each time).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Tuning")]
    pub retry_backoff: Option<Duration>,
    /// After a follow-up, how long a FINISHED status must be fresh to count if RUNNING was
    /// never seen.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Tuning")]
    pub follow_up_grace: Option<Duration>,
}

/// What a workflow comes from: a file, or the text a run recorded.
pub struct Source {
    /// The name to report it under.
    pub name: String,
    /// Its text, when it is not read from `name`.
    pub text: Option<String>,
}

/// Runs `apply`.
pub async fn run(out: &Output, state_dir: &std::path::Path, args: ApplyArgs) -> Exit {
    let source = Source {
        name: args.file.display().to_string(),
        text: None,
    };
    apply(out, state_dir, &args, source, false).await
}

/// Applies a workflow; `retry_failed` relaunches the failed and timed-out instances of the run.
pub async fn apply(
    out: &Output,
    state_dir: &std::path::Path,
    args: &ApplyArgs,
    source: Source,
    retry_failed: bool,
) -> Exit {
    let loaded = match &source.text {
        Some(text) => spec::load_source(SourceFile::new(source.name.clone(), text.as_str())),
        None => spec::load(std::path::Path::new(&source.name)),
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            out.load_error(&error);
            return Exit::Invalid;
        }
    };
    let store = match StoreHandle::open(state_dir) {
        Ok(store) => store,
        Err(error) => {
            out.error(&error.to_string());
            return Exit::Invalid;
        }
    };
    match Applier::prepare(out, &store, &loaded, args, retry_failed).await {
        Ok(applier) => applier.execute(out, &store, &loaded, args, &source).await,
        Err(exit) => exit,
    }
}

/// Everything `apply` sets up before launching.
struct Applier {
    plan: Plan,
    existing: Option<RunRecord>,
    recorded: Vec<InstanceRecord>,
    client: Client,
    simulator: Option<Simulator>,
    retry_failed: bool,
    /// `--webhook-listen`, bound.
    webhook_socket: Option<tokio::net::TcpListener>,
}

/// What the diff needs of each recorded instance; `retry_failed` asks to relaunch the failed.
pub fn recorded_map(records: &[InstanceRecord], retry_failed: bool) -> HashMap<String, Recorded> {
    records
        .iter()
        .map(|r| {
            let ended = matches!(
                r.state,
                InstanceState::Succeeded
                    | InstanceState::Failed
                    | InstanceState::TimedOut
                    | InstanceState::Cancelled
            );
            let recorded = Recorded {
                spec_hash: r.spec_hash.clone(),
                succeeded: r.state == InstanceState::Succeeded,
                ended,
                relaunch_requested: retry_failed
                    && matches!(r.state, InstanceState::Failed | InstanceState::TimedOut),
            };
            (r.key.clone(), recorded)
        })
        .collect()
}

/// The time a run's templates see: its first apply's, so `run.date` and hashes stay put.
pub fn now_or(existing: Option<&RunRecord>) -> SystemTime {
    existing.map_or_else(crate::plan::now, |run| run.started_at.time())
}

impl Applier {
    async fn prepare(
        out: &Output,
        store: &StoreHandle,
        loaded: &Loaded,
        args: &ApplyArgs,
        retry_failed: bool,
    ) -> Result<Self, Exit> {
        let workflow = &loaded.workflow;
        let plan_error = |errors: Vec<crate::plan::PlanError>| {
            for error in errors {
                out.error(&error.to_string());
            }
            Exit::Invalid
        };
        // The run: its key from --run or run_key; an existing run keeps its start time, so
        // `run.date` and every spec hash stay what they were.
        let first = Plan::build(
            workflow,
            &Options {
                run_key: args.run.clone(),
                ..Options::default()
            },
        )
        .map_err(plan_error)?;
        let run_id = first.run.to_string();
        let id = run_id.clone();
        let existing = store.read(move |s| s.run(&id)).await.map_err(|e| {
            out.error(&e.to_string());
            Exit::Invalid
        })?;
        if let Some(run) = &existing {
            if run.simulated != args.simulate {
                let (was, is) = if run.simulated {
                    ("simulated", "real")
                } else {
                    ("real", "simulated")
                };
                out.error(&format!(
                    "run {run_id} was {was}; a {is} apply cannot continue it: use --run with another key"
                ));
                return Err(Exit::Invalid);
            }
            if run.api != first.api {
                let how = match &run.api {
                    Api::Cursor(v) => {
                        format!("CURSOR_API_VERSION={v} (or `api: {{version: {v}}}`)")
                    }
                    Api::Platform(p) => format!(
                        "`api: {{backend: litellm-agent-platform, url: {}, agent_id: {}}}`",
                        p.url, p.agent_id
                    ),
                };
                out.error(&format!(
                    "run {run_id} was started on {}, and this apply would use {}: its agents live there. Set {how} to continue it, or use --run with another key",
                    run.api, first.api
                ));
                return Err(Exit::Invalid);
            }
        }
        // Everything the flags ask is checked and bound before the first write, so that a
        // refused apply leaves nothing in the state.
        if args.webhook_url.is_some() && first.api != Api::Cursor(ApiVersion::V0) {
            out.error(&format!(
                "webhooks exist only on API v0 (v1 and the Agent Platform have none); this run uses {}: drop --webhook-url, or set CURSOR_API_VERSION=v0",
                first.api
            ));
            return Err(Exit::Invalid);
        }
        let webhook_socket = match args.webhook_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|error| {
                out.error(&format!("cannot listen for webhooks on {addr}: {error}"));
                Exit::Invalid
            })?),
            None => None,
        };
        let (client, simulator) = connect(out, args, store, &first.api).await?;
        let discovered = discover::resolve(out, workflow, store, &client, args.refresh_repos)
            .await
            .map_err(|e| {
                out.error(&e);
                Exit::ApiUnusable
            })?;
        let options = Options {
            run_key: Some(first.run_context.key.clone()),
            now: now_or(existing.as_ref()),
            discovered,
        };
        let mut plan = Plan::build(workflow, &options).map_err(plan_error)?;
        let unset: Vec<String> = plan
            .instances
            .iter()
            .filter_map(|i| {
                i.options
                    .env_values()
                    .err()
                    .map(|e| format!("{}: {e}", i.task))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unset.is_empty() {
            for problem in unset {
                out.error(&format!("task {problem}"));
            }
            return Err(Exit::Invalid);
        }
        if let Some(n) = args.max_concurrency {
            plan.concurrency = n;
        }
        let id = run_id.clone();
        // A simulated run cannot be continued (its simulator is gone): it starts over.
        let recorded = if args.simulate {
            Vec::new()
        } else {
            store.read(move |s| s.instances(&id)).await.map_err(|e| {
                out.error(&e.to_string());
                Exit::Invalid
            })?
        };
        plan.diff(&recorded_map(&recorded, retry_failed));
        Ok(Self {
            plan,
            existing,
            recorded,
            client,
            simulator,
            retry_failed,
            webhook_socket,
        })
    }

    async fn execute(
        self,
        out: &Output,
        store: &StoreHandle,
        loaded: &Loaded,
        args: &ApplyArgs,
        source: &Source,
    ) -> Exit {
        let plan = self.plan;
        let run_id = plan.run.to_string();
        let count = |action| plan.instances.iter().filter(|i| i.action == action).count();
        let (launch, relaunch, resume, keep) = (
            count(Action::Launch),
            count(Action::Relaunch),
            count(Action::Continue),
            count(Action::Keep),
        );
        out.status(&format!(
            "run {run_id}: {launch} to launch, {relaunch} to relaunch, {resume} to continue, {keep} to keep ({} at once)",
            plan.concurrency
        ));
        let new_agents = launch + relaunch;
        if let Some(max) = args.max_agents {
            if new_agents > max {
                out.error(&format!(
                    "this apply would launch {new_agents} agent(s), more than --max-agents {max}; nothing was launched"
                ));
                return Exit::Invalid;
            }
        }
        if new_agents > 0 && !args.simulate && !args.yes {
            if !std::io::stdin().is_terminal() {
                out.error(&format!(
                    "refusing to launch {new_agents} agent(s) without --yes when not in a terminal; review `orchestrate plan {}` first",
                    source.name
                ));
                return Exit::Invalid;
            }
            out.stdout(&plan.render(crate::plan::Format::Text));
            eprint!("Launch {new_agents} agent(s)? [y/N] ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                out.status("nothing launched");
                return Exit::Invalid;
            }
        }

        // Records, in plan order: new and relaunched instances start pending; continued ones
        // pick up where they were (blocked ones are looked at again); kept ones stay.
        let recorded: HashMap<&str, &InstanceRecord> =
            self.recorded.iter().map(|r| (r.key.as_str(), r)).collect();
        let mut records = Vec::with_capacity(plan.instances.len());
        let mut writes = Vec::new();
        for instance in &plan.instances {
            let hash = instance.spec_hash();
            let repository = instance
                .repo
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let previous = recorded.get(instance.key.as_str()).copied();
            let record = match (instance.action, previous) {
                (Action::Keep, Some(previous)) => previous.clone(),
                (Action::Continue, Some(previous)) => {
                    let mut record = previous.clone();
                    if matches!(
                        record.state,
                        InstanceState::Blocked | InstanceState::Skipped
                    ) {
                        record.state = InstanceState::Pending;
                    }
                    record
                }
                (Action::Relaunch, Some(previous)) => {
                    let reason = if previous.spec_hash != hash {
                        "its spec changed"
                    } else if self.retry_failed
                        && matches!(
                            previous.state,
                            InstanceState::Failed | InstanceState::TimedOut
                        )
                    {
                        "retry requested"
                    } else {
                        "a need was relaunched"
                    };
                    writes.push(Write::Event(
                        run_id.clone(),
                        Event::instance(previous.key.as_str(), "relaunch", reason),
                    ));
                    let mut record = InstanceRecord::pending(
                        instance.key.as_str(),
                        instance.task.as_str(),
                        &repository,
                        &instance.branch,
                        &hash,
                    );
                    record.attempt = previous.attempt;
                    record.attempts.clone_from(&previous.attempts);
                    record
                }
                _ => InstanceRecord::pending(
                    instance.key.as_str(),
                    instance.task.as_str(),
                    &repository,
                    &instance.branch,
                    &hash,
                ),
            };
            if instance.action != Action::Keep {
                writes.push(Write::Instance(run_id.clone(), record.clone()));
            }
            records.push(record);
        }
        let started_at = self
            .existing
            .as_ref()
            .map_or_else(Timestamp::now, |r| r.started_at);
        let run = RunRecord {
            id: run_id.clone(),
            workflow: plan.workflow.clone(),
            key: plan.run_context.key.clone(),
            file: self
                .existing
                .as_ref()
                .map_or_else(|| source.name.clone(), |r| r.file.clone()),
            source: loaded.file.text().to_owned(),
            state: RunState::Running,
            simulated: args.simulate,
            api: plan.api.clone(),
            started_at,
            finished_at: None,
        };
        writes.push(Write::Run(run.clone()));
        writes.push(Write::Event(
            run_id.clone(),
            Event::run(
                "apply",
                format!("{launch} launch, {relaunch} relaunch, {resume} continue, {keep} keep"),
            ),
        ));
        // The first writes: the webhook secret of the run, then the run.
        let webhook = match &args.webhook_url {
            Some(url) => {
                match webhook_secret(store.dir(), &run_id, crate::cursor::webhook::new_secret) {
                    Ok(secret) => Some(Webhook {
                        url: url.to_string(),
                        secret: Some(Secret::new(secret)),
                    }),
                    Err(error) => {
                        out.error(&format!(
                            "cannot keep the webhook secret in {}: {error}",
                            store.dir().display()
                        ));
                        return Exit::Invalid;
                    }
                }
            }
            None => None,
        };
        if let Err(error) = store.write(writes).await {
            out.error(&error.to_string());
            return Exit::Invalid;
        }

        let interrupt = CancellationToken::new();
        let stop_agents = Arc::new(AtomicBool::new(false));
        watch_ctrl_c(out.clone(), interrupt.clone(), stop_agents.clone());
        let backend = Arc::new(AnyBackend::new(&plan.api, self.client.clone()));
        let live = LiveView::new(
            out,
            records.iter().filter(|r| !r.state.is_settled()).count(),
        );
        let events = live.clone();
        let report = Arc::new(move |progress: Progress| events.event(&describe(&progress)));
        let mut config = exec_config(args);
        if let Some(webhook) = webhook {
            config.webhook = Some(webhook);
            if args.poll_interval.is_none() {
                config.poll = PollConfig {
                    min: Duration::from_secs(60),
                    max: Duration::from_secs(300),
                };
            }
        }
        let plan = Arc::new(plan);
        let execution = Execution::new(
            plan.clone(),
            run_id.clone(),
            records,
            store.clone(),
            backend.clone(),
            config.clone(),
            interrupt,
            report,
        );
        let _listener = match (self.webhook_socket, &config.webhook) {
            (Some(socket), Some(webhook)) => {
                let secret = webhook
                    .secret
                    .as_ref()
                    .expect("a secret of our own")
                    .expose()
                    .to_owned();
                let path = args.webhook_url.as_ref().map_or("/", |url| url.path());
                match WebhookListener::serve(socket, path, secret, execution.poller()) {
                    Ok(listener) => {
                        out.status(&format!(
                            "receiving webhooks on {} at {path}",
                            listener.addr()
                        ));
                        Some(listener)
                    }
                    Err(error) => {
                        out.error(&format!("cannot listen for webhooks: {error}"));
                        return Exit::Invalid;
                    }
                }
            }
            _ => None,
        };
        let ticker = {
            let (live, execution, client) = (live.clone(), execution.clone(), self.client.clone());
            let (dir, run) = (store.dir().to_owned(), run.clone());
            tokio::spawn(async move {
                for tick in 0u64.. {
                    let records = execution.records();
                    live.update(&records, client.quotas().waited());
                    // Every 2 s, for `status` in another terminal.
                    if tick % 8 == 0 {
                        let snapshot = LiveSnapshot {
                            run: run.clone(),
                            instances: sorted(records),
                        };
                        let _ = tokio::task::spawn_blocking({
                            let dir = dir.clone();
                            move || write_snapshot(&dir, &snapshot)
                        })
                        .await;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let halt = execution.execute().await;
        ticker.abort();
        remove_snapshot(store.dir(), &run_id);
        live.finish();
        let records = execution.records();

        // In a terminal, the first Ctrl-C leaves a moment for a second one, which also stops
        // the agents; without a terminal nobody can press it, so nobody waits.
        if halt == Some(Halt::Interrupted)
            && std::io::stdin().is_terminal()
            && !stop_agents.load(Ordering::SeqCst)
        {
            let live = records_live(&execution.records());
            if live > 0 {
                out.status(&format!(
                    "press Ctrl-C again within 5 s to also stop the {live} running agent(s)"
                ));
                for _ in 0..50 {
                    if stop_agents.load(Ordering::SeqCst) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let mut run = run;
        let exit = match &halt {
            Some(Halt::Interrupted) if stop_agents.load(Ordering::SeqCst) => {
                match cancel_run(store, backend.as_ref(), &run_id).await {
                    Ok(done) => out.status(&format!(
                        "cancelled: {} agent(s) stopped, {} instance(s) skipped",
                        done.stopped, done.skipped
                    )),
                    Err(error) => out.error(&error.to_string()),
                }
                if let Some(sim) = self.simulator {
                    sim.shutdown().await;
                }
                return Exit::TaskFailed;
            }
            Some(Halt::Interrupted) => {
                run.state = RunState::Interrupted;
                let again = if args.simulate {
                    "(a simulated run starts over)".to_owned()
                } else {
                    format!("orchestrate apply {}", source.name)
                };
                out.status(&format!(
                    "interrupted: nothing more is launched; running agents go on in the cloud.\n\
                     continue with: {again}\nstop them with: orchestrate cancel {run_id}"
                ));
                Exit::Interrupted
            }
            Some(Halt::UsageLimit(message)) => {
                run.state = RunState::Interrupted;
                out.error(message);
                out.status(&format!(
                    "paused: nothing more is launched until the usage limit is raised; running agents go on in the cloud.\n\
                     once it is raised, continue with: orchestrate apply {}",
                    source.name
                ));
                Exit::Interrupted
            }
            Some(Halt::Fatal(message)) => {
                run.state = RunState::Interrupted;
                out.error(message);
                out.status(&format!(
                    "the run can be continued once this is fixed: orchestrate apply {}",
                    source.name
                ));
                Exit::ApiUnusable
            }
            None => {
                let all_ok = records.iter().all(|r| r.state == InstanceState::Succeeded);
                run.state = if all_ok {
                    RunState::Succeeded
                } else {
                    RunState::Failed
                };
                run.finished_at = Some(Timestamp::now());
                if all_ok {
                    Exit::Success
                } else {
                    Exit::TaskFailed
                }
            }
        };
        let mut writes = vec![
            Write::Run(run.clone()),
            Write::Event(run_id.clone(), Event::run(run.state.as_str(), "")),
        ];
        if let Some(at) = self.client.quotas().last_repositories_call() {
            writes.push(Write::LastRepositoriesCall(at.into()));
        }
        if let Some(calls_per_minute) = self.client.quotas().named_limit() {
            writes.push(Write::LearnedLimit(LearnedLimit {
                api: self.client.base_url().to_string(),
                calls_per_minute,
                at: Timestamp::now(),
            }));
        }
        if let Err(error) = store.write(writes).await {
            out.error(&error.to_string());
        }
        out.status(&summary(&run_id, &records));
        if let Some(github) = GithubActions::from_env() {
            let report = Report {
                run: run.clone(),
                instances: sorted(records),
            };
            match github.publish(&report) {
                Ok(annotations) => out.stdout(&annotations),
                Err(error) => out.error(&format!(
                    "cannot write the GitHub Actions summary or outputs: {error}"
                )),
            }
        }
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
        exit
    }
}

/// The client, against the API or an in-process simulator.
async fn connect(
    out: &Output,
    args: &ApplyArgs,
    store: &StoreHandle,
    api: &Api,
) -> Result<(Client, Option<Simulator>), Exit> {
    let last_call = store
        .read(Store::last_repositories_call)
        .await
        .ok()
        .flatten()
        .map(Timestamp::time);
    if args.simulate {
        let config = SimConfig {
            speed: 60.0,
            ..SimConfig::default()
        };
        let key = config.api_key.clone();
        let simulator = Simulator::start(config, "127.0.0.1:0".parse().expect("an address"))
            .await
            .map_err(|e| {
                out.error(&format!("cannot start the simulator: {e}"));
                Exit::ApiUnusable
            })?;
        let what = match api {
            Api::Cursor(_) => "the Cursor API",
            Api::Platform(_) => "the LiteLLM Agent Platform",
        };
        out.status(&format!(
            "simulating {what} at {} (agents work 60x faster)",
            simulator.url()
        ));
        let mut config =
            ClientConfig::new(&simulator.url(), ApiKey::new(key)).expect("a valid URL");
        if let Api::Platform(_) = api {
            config.auth = AuthScheme::Bearer;
        }
        let client = Client::new(config).map_err(|_| Exit::ApiUnusable)?;
        return Ok((client, Some(simulator)));
    }
    let config = match api {
        Api::Cursor(_) => ClientConfig::from_env(),
        Api::Platform(platform) => ClientConfig::platform_from_env(&platform.url),
    };
    let config = match config {
        Ok(config) => config,
        Err(ConfigError::MissingPlatformKey) => {
            out.error(&ConfigError::MissingPlatformKey.to_string());
            out.status(&format!(
                "export LAP_MASTER_KEY (the platform's key) and run again,\n\
                 or try the workflow against the built-in simulator: orchestrate apply --simulate {}",
                args.file.display()
            ));
            return Err(Exit::ApiUnusable);
        }
        Err(ConfigError::MissingKey) => {
            out.error("CURSOR_API_KEY is not set, so no agent can be launched");
            out.status(&format!(
                "either export CURSOR_API_KEY (from https://cursor.com/settings) and run again,\n\
                 or try the workflow against the built-in simulator: orchestrate apply --simulate {}",
                args.file.display()
            ));
            return Err(Exit::ApiUnusable);
        }
        Err(error) => {
            out.error(&error.to_string());
            return Err(Exit::ApiUnusable);
        }
    };
    let client = Client::resuming(config, last_call).map_err(|e| {
        out.error(&e.to_string());
        Exit::ApiUnusable
    })?;
    let learned = store.read(Store::learned_limit).await.ok().flatten();
    if let Some(limit) =
        learned.and_then(|l| l.for_api(client.base_url().as_str(), Timestamp::now()))
    {
        client.quotas().remember_limit(limit);
    }
    Ok((client, None))
}

fn exec_config(args: &ApplyArgs) -> ExecConfig {
    let mut config = ExecConfig::default();
    if args.simulate {
        config.poll = PollConfig {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        config.relaunch_backoff = Duration::from_millis(500);
        config.follow_up_grace = Duration::from_secs(1);
    }
    if let Some(min) = args.poll_interval {
        config.poll = PollConfig {
            min,
            max: config.poll.max.max(min),
        };
    }
    if let Some(backoff) = args.retry_backoff {
        config.relaunch_backoff = backoff;
    }
    if let Some(grace) = args.follow_up_grace {
        config.follow_up_grace = grace;
    }
    config
}

/// First Ctrl-C: stop launching. Second: also stop the running agents.
fn watch_ctrl_c(out: Output, interrupt: CancellationToken, stop_agents: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        out.status("\ninterrupting: no new agents are launched");
        interrupt.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_agents.store(true, Ordering::SeqCst);
            out.status("stopping the running agents...");
        }
    });
}

fn describe(progress: &Progress) -> String {
    match progress {
        Progress::Launched { key, agent } => format!("launched  {key} ({agent})"),
        Progress::FollowUp { key, number } => format!("follow-up {key} #{number} sent"),
        Progress::Retrying { key, reason, after } => {
            format!(
                "retrying  {key}: {reason}; relaunch in {}",
                humantime::format_duration(Duration::from_secs(after.as_secs().max(1)))
            )
        }
        Progress::Settled { key, state, detail } => {
            format!("{:<9} {key}: {detail}", state.as_str())
        }
        Progress::Notice { message } => format!("note      {message}"),
    }
}

/// How many instances have an agent that may be working.
fn records_live(records: &[InstanceRecord]) -> usize {
    records.iter().filter(|r| r.state.has_live_agent()).count()
}

/// Instances in key order, as the store lists them.
fn sorted(mut records: Vec<InstanceRecord>) -> Vec<InstanceRecord> {
    records.sort_by(|a, b| a.key.cmp(&b.key));
    records
}

fn summary(run: &str, records: &[InstanceRecord]) -> String {
    let mut counts: Vec<String> = Vec::new();
    for state in InstanceState::ALL {
        let n = records.iter().filter(|r| r.state == state).count();
        if n > 0 {
            counts.push(format!("{n} {}", state.as_str()));
        }
    }
    format!(
        "run {run}: {}\nsee `orchestrate status {run}` for each instance",
        counts.join(", ")
    )
}
