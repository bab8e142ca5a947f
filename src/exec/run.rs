//! Running a plan: a scheduler over the DAG and the life of each instance.
//!
//! Every transition is written to the store and flushed before it is acted on. A launch is
//! preceded by a launch intent; an answer that may have been lost (a dropped connection, a
//! 5xx, a crash) is resolved by looking for the agent by repository and branch before
//! launching again. A follow-up is preceded by its intent and confirmed against the
//! conversation the same way. So a run can be killed at any moment and applied again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backend::{AgentView, Backend, LaunchSpec, agent_name};
use super::poller::{PollConfig, Poller};
use crate::cursor::model::v1::agent_id_for;
use crate::cursor::{AgentId, AgentStatus, ApiError};
use crate::plan::{AgentOutput, Field, Instance, NeedContext, Plan};
use crate::spec::Condition;
use crate::state::{
    Attempt, BranchOutput, Event, FollowUpIntent, InstanceRecord, InstanceState, LaunchIntent,
    StoreHandle, Timestamp, Write,
};

/// Consecutive reads of the same unknown status after which it counts as the end (DESIGN.md:
/// an unknown status is not terminal until it stops changing).
const UNKNOWN_STATUS_READS: u32 = 10;

/// How many times an uncertain launch is looked for and tried again before the instance
/// fails.
const MAX_UNCERTAIN_LAUNCHES: u32 = 6;

/// Crash-safety tests need a process to die at the worst moments: right after an API call
/// answered and before the answer is stored. `ORCHESTRATE_CRASH_AFTER=launch:3` (or
/// `follow_up:N`) aborts the process right after the third launch call returns.
fn crash_point(point: &str) {
    static PLAN: std::sync::OnceLock<Option<(String, usize)>> = std::sync::OnceLock::new();
    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let plan = PLAN.get_or_init(|| {
        let spec = std::env::var("ORCHESTRATE_CRASH_AFTER").ok()?;
        let (name, count) = spec.split_once(':')?;
        Some((name.to_owned(), count.parse().ok()?))
    });
    if let Some((name, count)) = plan {
        if name == point && SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *count {
            std::process::abort();
        }
    }
}

/// Settings of an execution.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// How often statuses are read.
    pub poll: PollConfig,
    /// The first wait before a relaunch; it doubles with each one.
    pub relaunch_backoff: Duration,
    /// After a follow-up, a FINISHED status read this long after it counts even if RUNNING
    /// was never seen (the agent may have been quicker than the poll).
    pub follow_up_grace: Duration,
    /// A webhook to pass with every launch.
    pub webhook: Option<crate::cursor::model::Webhook>,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            // The floor and ceiling of each agent's read interval: in between, reads are
            // paced by the agent's age and the durations seen (see `exec::pace`).
            poll: PollConfig {
                min: Duration::from_millis(250),
                max: Duration::from_secs(60),
            },
            relaunch_backoff: Duration::from_secs(30),
            follow_up_grace: Duration::from_secs(30),
            webhook: None,
        }
    }
}

/// Why an execution stopped before every instance settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// Ctrl-C: nothing more is launched; running agents go on.
    Interrupted,
    /// The API cannot be used (authentication) or the state cannot be written.
    Fatal(String),
    /// The API's spending ceiling is reached: nothing more can be launched until it is raised.
    UsageLimit(String),
}

/// What happened, for the user.
#[derive(Debug, Clone)]
pub enum Progress {
    /// An agent was launched (or found launched).
    Launched {
        /// The instance.
        key: String,
        /// Its agent.
        agent: String,
    },
    /// A follow-up was sent.
    FollowUp {
        /// The instance.
        key: String,
        /// Which (1-based).
        number: u32,
    },
    /// An attempt ended badly and another comes.
    Retrying {
        /// The instance.
        key: String,
        /// Why.
        reason: String,
        /// In how long.
        after: Duration,
    },
    /// Something the user should know, said once per run (an output the API does not give).
    Notice {
        /// What.
        message: String,
    },
    /// An instance settled.
    Settled {
        /// The instance.
        key: String,
        /// How.
        state: InstanceState,
        /// Pull request, error or reason.
        detail: String,
    },
}

/// Receives progress.
pub type Reporter = Arc<dyn Fn(Progress) + Send + Sync>;

/// How an attempt's agent ended.
enum Ending {
    Finished(AgentView),
    Failed(String),
    TimedOut,
    Deleted,
}

/// An execution of one plan for one run.
pub struct Execution<B: Backend> {
    plan: Arc<Plan>,
    run: String,
    store: StoreHandle,
    backend: Arc<B>,
    poller: Poller,
    records: Mutex<Vec<InstanceRecord>>,
    index_of: HashMap<String, usize>,
    slots: Semaphore,
    interrupt: CancellationToken,
    stop_polling: CancellationToken,
    config: ExecConfig,
    report: Reporter,
    /// Whether the run said it could not read token usage.
    told_tokens_unreadable: std::sync::atomic::AtomicBool,
}

impl<B: Backend> Execution<B> {
    /// An execution of `plan` over `records` (one per plan instance, in plan order).
    #[allow(clippy::too_many_arguments)] // each is a distinct collaborator, set once
    pub fn new(
        plan: Arc<Plan>,
        run: String,
        records: Vec<InstanceRecord>,
        store: StoreHandle,
        backend: Arc<B>,
        config: ExecConfig,
        interrupt: CancellationToken,
        report: Reporter,
    ) -> Arc<Self> {
        let stop_polling = CancellationToken::new();
        let poller = Poller::start(backend.clone(), config.poll, stop_polling.clone());
        let index_of = plan
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (inst.key.to_string(), i))
            .collect();
        Arc::new(Self {
            slots: Semaphore::new(plan.concurrency as usize),
            plan,
            run,
            store,
            backend,
            poller,
            records: Mutex::new(records),
            index_of,
            interrupt,
            stop_polling,
            config,
            report,
            told_tokens_unreadable: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Says, the first time only, that token counts cannot be read (for example 403
    /// `feature_unavailable` where usage is not offered).
    fn tokens_unreadable(&self, error: &ApiError) {
        tracing::debug!(%error, "token usage not read");
        if !self
            .told_tokens_unreadable
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            (self.report)(Progress::Notice {
                message: format!("token usage is not reported for this run: {error}"),
            });
        }
    }

    /// The shared poller (a webhook receiver wakes it).
    pub fn poller(&self) -> Poller {
        self.poller.clone()
    }

    /// The records now.
    pub fn records(&self) -> Vec<InstanceRecord> {
        self.records.lock().expect("not poisoned").clone()
    }

    fn state(&self, index: usize) -> InstanceState {
        self.records.lock().expect("not poisoned")[index].state
    }

    /// Runs until every instance settled, or a halt.
    pub async fn execute(self: &Arc<Self>) -> Option<Halt> {
        let count = self.plan.instances.len();
        let settled: Vec<bool> = self
            .records
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|r| r.state.is_settled())
            .collect();
        // Each instance counts its needs still unsettled; when one settles, its dependents count
        // down, and those reaching zero are ready. No rescan of the whole plan per event.
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
        let mut waiting = vec![0usize; count];
        for (index, instance) in self.plan.instances.iter().enumerate() {
            for &need in &instance.needs {
                dependents[need].push(index);
                waiting[index] += usize::from(!settled[need]);
            }
        }
        let mut ready: VecDeque<usize> = (0..count).filter(|&i| waiting[i] == 0).collect();
        let mut tasks = JoinSet::new();
        let mut halt: Option<Halt> = None;
        loop {
            while let Some(index) = ready.pop_front() {
                // Kept instances are settled already; a halted run starts nothing new.
                if settled[index] || halt.is_some() {
                    continue;
                }
                let this = self.clone();
                tasks.spawn(async move { (index, this.drive(index).await) });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((index, Ok(()))) => {
                    for &dependent in &dependents[index] {
                        waiting[dependent] -= 1;
                        if waiting[dependent] == 0 {
                            ready.push_back(dependent);
                        }
                    }
                }
                Ok((_, Err(stop))) => {
                    if halt.is_none() || matches!(stop, Halt::Fatal(_)) {
                        halt = Some(stop);
                    }
                    self.interrupt.cancel();
                }
                Err(panic) => {
                    halt = Some(Halt::Fatal(format!("an instance task failed: {panic}")));
                    self.interrupt.cancel();
                }
            }
        }
        self.stop_polling.cancel();
        halt
    }

    async fn save(
        &self,
        index: usize,
        record: &InstanceRecord,
        kind: &str,
        detail: impl Into<String>,
    ) -> Result<(), Halt> {
        self.records.lock().expect("not poisoned")[index] = record.clone();
        let event = Event::instance(&record.key, kind, detail);
        self.store
            .write(vec![
                Write::Instance(self.run.clone(), record.clone()),
                Write::Event(self.run.clone(), event),
            ])
            .await
            .map_err(|e| Halt::Fatal(e.to_string()))
    }

    async fn settle(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        state: InstanceState,
        detail: String,
    ) -> Result<(), Halt> {
        record.state = state;
        record.finished_at = Some(Timestamp::now());
        self.save(index, record, state.as_str(), detail.clone())
            .await?;
        (self.report)(Progress::Settled {
            key: record.key.clone(),
            state,
            detail,
        });
        Ok(())
    }

    /// Why the instance must not run, if its needs or canaries say so.
    fn refusal(&self, index: usize) -> Option<String> {
        let instance = &self.plan.instances[index];
        let succeeded = |n: &usize| self.state(*n) == InstanceState::Succeeded;
        if !instance.canaries.iter().all(succeeded) {
            return Some("a canary of its rollout did not succeed".to_owned());
        }
        let needs: Vec<usize> = instance.task_needs().collect();
        let met = match instance.condition {
            _ if needs.is_empty() => true,
            Condition::AllSucceeded => needs.iter().all(succeeded),
            Condition::AnySucceeded => needs.iter().any(succeeded),
            Condition::Always => true,
        };
        (!met).then(|| {
            format!(
                "`if: {}` is not met by its needs",
                condition_word(instance.condition)
            )
        })
    }

    fn output_of(record: &InstanceRecord) -> AgentOutput {
        AgentOutput {
            id: record.agent_id.clone().unwrap_or_default(),
            status: record.status.clone().unwrap_or_default(),
            summary: record.summary.clone().unwrap_or_default(),
            branch: record.branch.clone(),
            pr_url: record.pr_url.clone().unwrap_or_default(),
            url: record.url.clone().unwrap_or_default(),
        }
    }

    fn context(&self, index: usize, agent: Option<AgentOutput>) -> crate::plan::Context<'_> {
        let records = self.records.lock().expect("not poisoned");
        self.plan.context(
            index,
            |need: &Instance| {
                let record = &records[self.index_of[need.key.as_str()]];
                NeedContext::new(need, record.state.as_str(), Self::output_of(record))
            },
            agent,
        )
    }

    fn branch_for(&self, index: usize, attempt: u32) -> String {
        let base = &self.plan.instances[index].branch;
        // Empty where the agent names its own branch.
        if attempt <= 1 || base.is_empty() {
            base.clone()
        } else {
            format!("{base}-attempt-{attempt}")
        }
    }

    async fn pause(&self, wait: Duration) -> Result<(), Halt> {
        tokio::select! {
            () = self.interrupt.cancelled() => Err(Halt::Interrupted),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// Stops the whole run on errors no instance can get past: a refused key, a spent budget.
    fn halt_on(error: &ApiError) -> Result<(), Halt> {
        match error {
            ApiError::Auth { .. } => Err(Halt::Fatal(error.to_string())),
            ApiError::UsageLimit { .. } => Err(Halt::UsageLimit(error.to_string())),
            _ => Ok(()),
        }
    }

    /// The life of one instance, from wherever its record says it is.
    async fn drive(self: Arc<Self>, index: usize) -> Result<(), Halt> {
        let instance = &self.plan.instances[index];
        let mut record = self.records.lock().expect("not poisoned")[index].clone();
        if record.state == InstanceState::Pending {
            if let Some(detail) = self.refusal(index) {
                return self
                    .settle(index, &mut record, InstanceState::Blocked, detail)
                    .await;
            }
        }
        let _slot = tokio::select! {
            () = self.interrupt.cancelled() => return Err(Halt::Interrupted),
            slot = self.slots.acquire() => slot.expect("the semaphore is never closed"),
        };
        // Whether the launch intent in the record may already have made an agent.
        let mut uncertain = record.state == InstanceState::Launching;
        let mut uncertain_launches = 0;
        loop {
            match record.state {
                InstanceState::Pending => {
                    if self.interrupt.is_cancelled() {
                        return Err(Halt::Interrupted);
                    }
                    record.attempt += 1;
                    record.tries += 1;
                    record.branch = self.branch_for(index, record.attempt);
                    // Where the API takes a client-chosen id, a resend of this launch is refused
                    // instead of duplicated; the API does not allow one with env_vars.
                    let agent_id = instance
                        .options
                        .env_vars
                        .is_none()
                        .then(|| agent_id_for(&self.run, &record.key, record.attempt).0);
                    record.launch = Some(LaunchIntent {
                        attempt: record.attempt,
                        at: Timestamp::now(),
                        repository: record.repository.clone(),
                        branch: record.branch.clone(),
                        agent_id,
                        name: Some(agent_name(&self.run, &record.key, record.attempt)),
                    });
                    record.state = InstanceState::Launching;
                    record.agent_id = None;
                    (record.status, record.summary, record.pr_url, record.url) =
                        (None, None, None, None);
                    (
                        record.follow_ups_done,
                        record.follow_ups_sent,
                        record.follow_up,
                    ) = (0, 0, None);
                    record.follow_up_sent_at = None;
                    record.started_at = None;
                    (record.duration_ms, record.tokens) = (None, None);
                    record.branches.clear();
                    let detail = format!("attempt {} on branch {}", record.attempt, record.branch);
                    self.save(index, &record, "launch_intent", detail).await?;
                    uncertain = false;
                }
                InstanceState::Launching => {
                    let intent = record
                        .launch
                        .clone()
                        .expect("a launching instance has an intent");
                    let prompt = {
                        let context = self.context(index, None);
                        self.plan
                            .templates
                            .render(Field::Prompt(&instance.task), &context)
                    };
                    let prompt = match prompt {
                        Ok(prompt) => prompt,
                        Err(error) => {
                            let detail = format!("cannot render the prompt: {error}");
                            return self
                                .settle(index, &mut record, InstanceState::Failed, detail)
                                .await;
                        }
                    };
                    let spec = LaunchSpec {
                        repository: intent.repository.clone(),
                        git_ref: instance.git_ref.clone(),
                        branch: intent.branch.clone(),
                        prompt,
                        model: instance.model.clone(),
                        target: instance.target,
                        webhook: self.config.webhook.clone(),
                        agent_id: intent.agent_id.clone().map(AgentId),
                        name: intent.name.clone().unwrap_or_default(),
                        options: instance.options.clone(),
                        since: intent.at.time(),
                    };
                    if uncertain && !self.backend.finds_launches() {
                        // The launch may have made an agent that cannot be looked up: sending
                        // it again could make a second one. The user decides.
                        record.attempts.push(Attempt {
                            number: record.attempt,
                            agent_id: None,
                            outcome: "launch outcome unknown".into(),
                            at: Timestamp::now(),
                        });
                        let detail = "launch outcome unknown: its answer was lost, and this backend cannot look the agent up; check the platform, then `orchestrate retry --failed` launches it again".to_owned();
                        record.error = Some(detail.clone());
                        return self
                            .settle(index, &mut record, InstanceState::Failed, detail)
                            .await;
                    }
                    if uncertain {
                        match self.backend.find_launched(&spec).await {
                            Ok(Some(agent)) => {
                                self.adopt(
                                    index,
                                    &mut record,
                                    &agent,
                                    "found the agent of an earlier launch",
                                )
                                .await?;
                                continue;
                            }
                            Ok(None) => {}
                            Err(error) => {
                                Self::halt_on(&error)?;
                                self.pause(self.config.poll.min).await?;
                                continue;
                            }
                        }
                    }
                    let launched = self.backend.launch(&spec).await;
                    crash_point("launch");
                    match launched {
                        Ok(agent) => self.adopt(index, &mut record, &agent, "launched").await?,
                        Err(error) => {
                            Self::halt_on(&error)?;
                            if error.surely_not_processed() && error.is_retryable() {
                                // Throttled, or the connection never opened: nothing was
                                // launched, and the same launch will go through later.
                                self.pause(self.config.relaunch_backoff).await?;
                                continue;
                            }
                            if error.surely_not_processed() {
                                // The API refused it (400): sending it again will not help.
                                record.attempts.push(Attempt {
                                    number: record.attempt,
                                    agent_id: None,
                                    outcome: format!("refused: {error}"),
                                    at: Timestamp::now(),
                                });
                                record.error = Some(error.to_string());
                                return self
                                    .settle(
                                        index,
                                        &mut record,
                                        InstanceState::Failed,
                                        error.to_string(),
                                    )
                                    .await;
                            }
                            uncertain_launches += 1;
                            if uncertain_launches >= MAX_UNCERTAIN_LAUNCHES {
                                let detail = format!("could not launch: {error}");
                                record.error = Some(detail.clone());
                                return self
                                    .settle(index, &mut record, InstanceState::Failed, detail)
                                    .await;
                            }
                            // The agent may exist: look for it before launching again.
                            uncertain = true;
                            let event =
                                Event::instance(&record.key, "launch_uncertain", error.to_string());
                            self.store
                                .write(vec![Write::Event(self.run.clone(), event)])
                                .await
                                .map_err(|e| Halt::Fatal(e.to_string()))?;
                            self.pause(self.config.poll.min).await?;
                        }
                    }
                }
                InstanceState::Running | InstanceState::FollowingUp => {
                    let ending = self.wait(index, &record).await?;
                    match ending {
                        Ending::Finished(agent) => {
                            record.status = Some(agent.status.to_string());
                            record.summary = agent.summary.clone().or(record.summary.take());
                            record.pr_url = agent.pr_url.clone().or(record.pr_url.take());
                            record.url = agent.url.clone().or(record.url.take());
                            Self::keep_outputs(&mut record, &agent);
                            if self.follow_up(index, &mut record, &agent).await? {
                                continue;
                            }
                            record.attempts.push(Attempt {
                                number: record.attempt,
                                agent_id: record.agent_id.clone(),
                                outcome: "succeeded".into(),
                                at: Timestamp::now(),
                            });
                            if let Some(id) = &record.agent_id {
                                let id = AgentId(id.clone());
                                self.poller.forget(&id);
                                // Usage is a report, not an outcome: a failed read fails nothing,
                                // and is said once.
                                match self.backend.tokens(&id).await {
                                    Ok(tokens) => record.tokens = tokens,
                                    Err(error) => self.tokens_unreadable(&error),
                                }
                            }
                            let detail = record
                                .pr_url
                                .clone()
                                .unwrap_or_else(|| "no pull request".into());
                            return self
                                .settle(index, &mut record, InstanceState::Succeeded, detail)
                                .await;
                        }
                        Ending::Failed(why) => {
                            self.end_attempt(index, &mut record, &why, InstanceState::Failed)
                                .await?;
                        }
                        Ending::TimedOut => {
                            if let Some(id) = record.agent_id.clone() {
                                self.save(index, &record, "stop", "timeout: stopping the agent")
                                    .await?;
                                if let Err(error) = self.backend.stop(&AgentId(id)).await {
                                    Self::halt_on(&error)?;
                                }
                            }
                            let timeout = instance
                                .timeout
                                .map(|t| humantime::format_duration(t).to_string())
                                .unwrap_or_default();
                            self.end_attempt(
                                index,
                                &mut record,
                                &format!("timed out after {timeout}"),
                                InstanceState::TimedOut,
                            )
                            .await?;
                        }
                        Ending::Deleted => {
                            let detail = "the agent was deleted".to_owned();
                            return self
                                .settle(index, &mut record, InstanceState::Failed, detail)
                                .await;
                        }
                    }
                    if record.state.is_settled() {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// What a finished agent reported beyond its status: its branch (v1 agents name it), the
    /// branches per repository, how long its run took.
    fn keep_outputs(record: &mut InstanceRecord, agent: &AgentView) {
        if let Some(branch) = &agent.branch {
            record.branch.clone_from(branch);
        }
        if !agent.branches.is_empty() {
            record.branches = agent
                .branches
                .iter()
                .map(|b| BranchOutput {
                    repository: b.repo_url.clone(),
                    branch: b.branch.clone(),
                    pr_url: b.pr_url.clone(),
                })
                .collect();
        }
        if let Some(duration) = agent.duration {
            record.duration_ms = u64::try_from(duration.as_millis()).ok();
        }
    }

    async fn adopt(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        agent: &AgentView,
        how: &str,
    ) -> Result<(), Halt> {
        record.agent_id = Some(agent.id.0.clone());
        record.status = Some(agent.status.to_string());
        record.url.clone_from(&agent.url);
        record.state = InstanceState::Running;
        record.started_at = Some(Timestamp::now());
        self.save(index, record, "launched", format!("{how}: {}", agent.id))
            .await?;
        (self.report)(Progress::Launched {
            key: record.key.clone(),
            agent: agent.id.0.clone(),
        });
        Ok(())
    }

    /// Ends the current attempt badly: relaunches after a backoff when retries remain, else
    /// settles in `state`.
    async fn end_attempt(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        why: &str,
        state: InstanceState,
    ) -> Result<(), Halt> {
        let instance = &self.plan.instances[index];
        record.attempts.push(Attempt {
            number: record.attempt,
            agent_id: record.agent_id.clone(),
            outcome: why.to_owned(),
            at: Timestamp::now(),
        });
        if let Some(id) = &record.agent_id {
            self.poller.forget(&AgentId(id.clone()));
        }
        record.error = Some(why.to_owned());
        if record.tries > instance.retries {
            return self.settle(index, record, state, why.to_owned()).await;
        }
        let exponent = record.tries.saturating_sub(1).min(8);
        let ceiling = self.config.relaunch_backoff * 2u32.pow(exponent);
        let after = ceiling.mul_f64(rand::rng().random_range(0.5..1.0));
        record.state = InstanceState::Pending;
        self.save(
            index,
            record,
            "relaunch",
            format!(
                "{why}; retry {} of {} in {after:.1?}",
                record.tries, instance.retries
            ),
        )
        .await?;
        (self.report)(Progress::Retrying {
            key: record.key.clone(),
            reason: why.to_owned(),
            after,
        });
        self.pause(after).await
    }

    /// Waits until the current agent ends (or times out).
    async fn wait(&self, index: usize, record: &InstanceRecord) -> Result<Ending, Halt> {
        let instance = &self.plan.instances[index];
        let id = AgentId(
            record
                .agent_id
                .clone()
                .expect("a running instance has an agent"),
        );
        let started = record
            .started_at
            .or(record.launch.as_ref().map(|l| l.at))
            .unwrap_or_else(Timestamp::now);
        let sent_at = record.follow_up_sent_at.map(Timestamp::time);
        let mut receiver = self.poller.watch(
            &id,
            started.time(),
            sent_at.unwrap_or_else(|| started.time()),
        );
        let deadline = instance
            .timeout
            .map(|t| tokio::time::Instant::now() + t.saturating_sub(started.elapsed()));
        let mut seen_working = false;
        let mut unknown: Option<(String, u32)> = None;
        loop {
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.interrupt.cancelled() => return Err(Halt::Interrupted),
                () = timeout => return Ok(Ending::TimedOut),
                changed = receiver.changed() => if changed.is_err() { return Err(Halt::Interrupted) },
            }
            let Some(snapshot) = receiver.borrow_and_update().clone() else {
                continue;
            };
            let agent = match snapshot.agent {
                Ok(agent) => agent,
                Err(ApiError::NotFound { .. }) => return Ok(Ending::Deleted),
                Err(_) => continue,
            };
            // A status read before a follow-up took effect says nothing about it.
            if let Some(sent) = sent_at {
                if snapshot.at <= sent {
                    continue;
                }
                let fresh = snapshot.at.duration_since(sent).unwrap_or_default()
                    >= self.config.follow_up_grace;
                if !agent.status.is_terminal() {
                    seen_working = true;
                } else if !seen_working && !fresh {
                    continue;
                }
            }
            match &agent.status {
                AgentStatus::Finished => return Ok(Ending::Finished(agent)),
                AgentStatus::Error => return Ok(Ending::Failed("the agent ended in ERROR".into())),
                AgentStatus::Expired => return Ok(Ending::Failed("the agent EXPIRED".into())),
                AgentStatus::Cancelled => {
                    return Ok(Ending::Failed("the agent's run was CANCELLED".into()));
                }
                AgentStatus::Unknown(status) => {
                    // Not terminal as far as we know, until it stops changing.
                    let same = unknown.as_ref().is_some_and(|(s, _)| s == status);
                    let reads = if same {
                        unknown.as_ref().map_or(1, |(_, n)| n + 1)
                    } else {
                        1
                    };
                    if reads == 1 {
                        tracing::warn!(agent = %agent.id, %status, "the API reports a status orchestrate does not know");
                    }
                    if reads >= UNKNOWN_STATUS_READS {
                        return Ok(Ending::Failed(format!(
                            "the agent reports `{status}`, a status orchestrate does not know, and it stopped changing"
                        )));
                    }
                    unknown = Some((status.clone(), reads));
                }
                _ => unknown = None,
            }
        }
    }

    /// Deals with the next follow-up of a finished agent. Returns whether one was sent (the
    /// agent works again) or skipped (the next may follow); false when none is left.
    async fn follow_up(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        agent: &AgentView,
    ) -> Result<bool, Halt> {
        let instance = &self.plan.instances[index];
        let id = agent.id.clone();
        if let Some(intent) = record.follow_up.clone() {
            // An earlier send may have reached the agent: the conversation tells.
            match self
                .backend
                .follow_up_received(&id, &intent.text, record.follow_ups_sent)
                .await
            {
                Ok(true) => {
                    self.follow_up_sent(index, record, intent.index).await?;
                    return Ok(true);
                }
                Ok(false) => {}
                Err(error) => {
                    Self::halt_on(&error)?;
                    self.pause(self.config.poll.min).await?;
                    return Ok(true);
                }
            }
        }
        let next = record.follow_ups_done as usize;
        let Some(follow_up) = instance.follow_ups.get(next) else {
            return Ok(false);
        };
        let output = AgentOutput {
            id: id.0.clone(),
            status: agent.status.to_string(),
            summary: agent.summary.clone().unwrap_or_default(),
            branch: agent
                .branch
                .clone()
                .unwrap_or_else(|| record.branch.clone()),
            pr_url: agent.pr_url.clone().unwrap_or_default(),
            url: agent.url.clone().unwrap_or_default(),
        };
        let (wanted, text) = {
            let context = self.context(index, Some(output));
            let wanted = match &follow_up.condition {
                Some(condition) => self.plan.templates.condition(condition, &context),
                None => Ok(true),
            };
            (
                wanted,
                self.plan
                    .templates
                    .render(Field::FollowUp(&instance.task, next), &context),
            )
        };
        let number = u32::try_from(next).unwrap_or(u32::MAX);
        match (wanted, text) {
            (Ok(false), _) => {
                record.follow_ups_done += 1;
                self.save(
                    index,
                    record,
                    "follow_up_skipped",
                    format!("follow-up {}: `if` is false", number + 1),
                )
                .await?;
                Ok(true)
            }
            (Err(error), _) | (_, Err(error)) => {
                record.follow_ups_done += 1;
                let detail = format!("follow-up {} cannot be rendered: {error}", number + 1);
                self.save(index, record, "follow_up_skipped", detail)
                    .await?;
                Ok(true)
            }
            (Ok(true), Ok(text)) => {
                record.follow_up = Some(FollowUpIntent {
                    index: number,
                    text: text.clone(),
                    at: Timestamp::now(),
                });
                self.save(
                    index,
                    record,
                    "follow_up_intent",
                    format!("follow-up {}", number + 1),
                )
                .await?;
                let sent = self.backend.follow_up(&id, &text).await;
                crash_point("follow_up");
                match sent {
                    Ok(()) => self.follow_up_sent(index, record, number).await?,
                    Err(error) => {
                        Self::halt_on(&error)?;
                        // Unknown whether it arrived: the next round reads the conversation.
                        self.pause(self.config.poll.min).await?;
                    }
                }
                Ok(true)
            }
        }
    }

    async fn follow_up_sent(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        number: u32,
    ) -> Result<(), Halt> {
        record.follow_up = None;
        record.follow_ups_done = number + 1;
        record.follow_ups_sent += 1;
        record.follow_up_sent_at = Some(Timestamp::now());
        record.state = InstanceState::FollowingUp;
        self.save(
            index,
            record,
            "follow_up_sent",
            format!("follow-up {}", number + 1),
        )
        .await?;
        (self.report)(Progress::FollowUp {
            key: record.key.clone(),
            number: number + 1,
        });
        Ok(())
    }
}

fn condition_word(condition: Condition) -> &'static str {
    match condition {
        Condition::AllSucceeded => "all_succeeded",
        Condition::AnySucceeded => "any_succeeded",
        Condition::Always => "always",
    }
}
