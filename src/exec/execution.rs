//! An execution: the scheduler over the DAG, and the life of each instance as a loop over its
//! state (see `README.md` beside this file for the lifecycle and the crash invariants).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backend::{AgentView, Backend, Recall};
use super::event::{InstanceEvent, Progress};
use super::launch::Launching;
use super::poller::{PollConfig, Poller};
use super::schedule::{Countdown, out_of_reach, prefer};
use super::wait::{Ending, Watching};
use crate::cursor::{AgentId, ApiError};
use crate::plan::{AgentOutput, Instance, NeedContext, Plan, RunId};
use crate::spec::Condition;
use crate::state::{
    BranchOutput, Counts, InstanceRecord, InstanceState, StateError, StoreHandle, Write,
};

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
    /// How long the API may stay out of reach (every call failing to connect, or with a 5xx)
    /// before the run stops, resumable.
    pub outage_budget: Duration,
    /// Set when this runner shares the run with others (`apply --join`): each instance is
    /// claimed through a lease this long, renewed every third of it.
    pub lease: Option<Duration>,
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
            outage_budget: Duration::from_secs(120),
            lease: None,
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
    /// This runner's lease of the instance ran out: another runner of the shared run
    /// continues it. Handled where the instance was claimed; the run goes on.
    LeaseLost(String),
}

/// How often the executor looks whether the API is still out of reach.
const OUTAGE_CHECK: Duration = Duration::from_secs(1);

/// Stops the whole run on errors no instance can get past: a refused key, a spent budget.
pub(super) fn halt_on(error: &ApiError) -> Result<(), Halt> {
    match error {
        ApiError::Auth { .. } => Err(Halt::Fatal(error.to_string())),
        ApiError::UsageLimit { .. } => Err(Halt::UsageLimit(error.to_string())),
        _ => Ok(()),
    }
}

/// The pause before retry `tries` (1-based) of an attempt: `base` doubled with each retry,
/// jittered by `jitter` (in [0.5, 1)) so that failed agents do not all come back at once.
pub(super) fn backoff(base: Duration, tries: u32, jitter: f64) -> Duration {
    let exponent = tries.saturating_sub(1).min(8);
    (base * 2u32.pow(exponent)).mul_f64(jitter)
}

/// Why an instance must not run, if its canaries or needs say so.
pub(super) fn refusal(
    instance: &Instance,
    state_of: impl Fn(usize) -> InstanceState,
) -> Option<String> {
    let succeeded = |n: &usize| state_of(*n) == InstanceState::Succeeded;
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
    (!met).then(|| format!("`if: {}` is not met by its needs", instance.condition))
}

/// Receives what an execution tells.
pub type Reporter = Arc<dyn Fn(&Progress) + Send + Sync>;

/// An execution of one plan for one run.
pub struct Execution<B: Backend> {
    pub(super) plan: Arc<Plan>,
    pub(super) run: RunId,
    pub(super) store: StoreHandle,
    pub(super) backend: Arc<B>,
    poller: Poller,
    /// One record per plan instance, in plan order.
    records: Mutex<Vec<InstanceRecord>>,
    /// The counts per state. Never sent to while `records` is locked: a reader may hold a
    /// borrow of the counts while it takes the records (the live view does).
    counts: watch::Sender<Counts>,
    index_of: HashMap<String, usize>,
    slots: Semaphore,
    pub(super) interrupt: CancellationToken,
    stop_polling: CancellationToken,
    pub(super) config: ExecConfig,
    report: Reporter,
    /// Whether the run said it could not read token usage.
    told_tokens_unreadable: AtomicBool,
    /// Launches earlier applies made, found in the API for a run whose records were lost;
    /// each is taken by its instance's first attempt.
    recall: Mutex<Recall>,
    /// This runner's leases, when it shares the run with others.
    pub(super) shared: Option<super::shared::Leases>,
}

impl<B: Backend> Execution<B> {
    /// An execution of `plan` over `records` (one per plan instance, in plan order).
    #[allow(clippy::too_many_arguments)] // each is a distinct collaborator, set once
    pub fn new(
        plan: Arc<Plan>,
        records: Vec<InstanceRecord>,
        store: StoreHandle,
        backend: Arc<B>,
        config: ExecConfig,
        interrupt: CancellationToken,
        report: Reporter,
        recall: Recall,
    ) -> Arc<Self> {
        let stop_polling = CancellationToken::new();
        let poller = Poller::start(backend.clone(), config.poll, stop_polling.clone());
        let index_of = plan
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (inst.key.to_string(), i))
            .collect();
        let (counts, _) = watch::channel(Counts::of(&records));
        let lease = config.lease;
        Arc::new(Self {
            slots: Semaphore::new(plan.concurrency as usize),
            run: plan.run.clone(),
            plan,
            store,
            backend,
            poller,
            records: Mutex::new(records),
            counts,
            index_of,
            interrupt,
            stop_polling,
            config,
            report,
            told_tokens_unreadable: AtomicBool::new(false),
            recall: Mutex::new(recall),
            shared: lease.map(super::shared::Leases::new),
        })
    }

    /// The shared poller (a webhook receiver wakes it).
    pub fn poller(&self) -> Poller {
        self.poller.clone()
    }

    /// The records now.
    pub fn records(&self) -> Vec<InstanceRecord> {
        self.records.lock().expect("not poisoned").clone()
    }

    /// The counts per state, changed with every event that moves an instance.
    pub fn counts(&self) -> watch::Receiver<Counts> {
        self.counts.subscribe()
    }

    pub(super) fn state(&self, index: usize) -> InstanceState {
        self.records.lock().expect("not poisoned")[index].state
    }

    /// The index of the instance with `key`.
    pub(super) fn index_of(&self, key: &str) -> Option<usize> {
        self.index_of.get(key).copied()
    }

    /// Each instance's key and state now, without copying its record.
    pub(super) fn states(&self) -> Vec<(String, String)> {
        let records = self.records.lock().expect("not poisoned");
        records
            .iter()
            .map(|r| (r.key.clone(), r.state.as_str().to_owned()))
            .collect()
    }

    /// Instance `index`'s record now.
    pub(super) fn record(&self, index: usize) -> InstanceRecord {
        self.records.lock().expect("not poisoned")[index].clone()
    }

    /// Runs until every instance settled, or a halt.
    pub async fn execute(self: &Arc<Self>) -> Option<Halt> {
        let needs: Vec<&[usize]> = self
            .plan
            .instances
            .iter()
            .map(|i| i.needs.as_slice())
            .collect();
        let settled = self
            .records()
            .iter()
            .map(|r| r.state.is_settled())
            .collect();
        let mut countdown = Countdown::new(&needs, settled);
        let mut tasks = JoinSet::new();
        let _sharing = self
            .shared
            .as_ref()
            .map(|_| (self.renew_leases(), self.follow_run()));
        let mut halt: Option<Halt> = None;
        let mut reach = tokio::time::interval(OUTAGE_CHECK);
        reach.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A halted run starts nothing new.
            while let Some(index) = halt.is_none().then(|| countdown.next_ready()).flatten() {
                let this = self.clone();
                tasks.spawn(async move { (index, this.drive(index).await) });
            }
            let joined = tokio::select! {
                joined = tasks.join_next() => joined,
                _ = reach.tick(), if halt.is_none() => {
                    if let Some(stop) = out_of_reach(self.backend.outage(), self.config.outage_budget) {
                        halt = Some(prefer(halt, stop));
                        self.interrupt.cancel();
                    }
                    continue;
                }
            };
            let Some(joined) = joined else {
                break;
            };
            let stop = match joined {
                Ok((index, Ok(()))) => {
                    countdown.settled(index);
                    continue;
                }
                Ok((_, Err(stop))) => stop,
                Err(panic) => Halt::Fatal(format!("an instance task failed: {panic}")),
            };
            halt = Some(prefer(halt, stop));
            self.interrupt.cancel();
        }
        self.stop_polling.cancel();
        halt
    }

    /// The one way an instance changes: its record is kept, flushed with the event to the
    /// store's log, counted, and the event is told to the reporter.
    pub(super) async fn emit(
        &self,
        index: usize,
        record: &InstanceRecord,
        event: InstanceEvent,
    ) -> Result<(), Halt> {
        self.keep(index, record.clone());
        let run = self.run.to_string();
        let mut writes = vec![
            Write::Instance(run.clone(), record.clone()),
            Write::Event(run.clone(), event.log(&record.key)),
        ];
        if self.shared.is_some() {
            let settles = matches!(event, InstanceEvent::Settled { .. });
            writes = super::shared::fenced(&run, &record.key, writes, settles);
        }
        self.store.write(writes).await.map_err(|e| match e {
            StateError::LeaseLost { .. } => Halt::LeaseLost(e.to_string()),
            e => Halt::Fatal(e.to_string()),
        })?;
        (self.report)(&Progress::Instance {
            key: record.key.clone(),
            event,
        });
        Ok(())
    }

    /// Keeps `record` as instance `index`'s, and counts its move.
    pub(super) fn keep(&self, index: usize, record: InstanceRecord) {
        let after = record.state;
        let before = std::mem::replace(
            &mut self.records.lock().expect("not poisoned")[index],
            record,
        )
        .state;
        if before != after {
            self.counts
                .send_modify(|counts| counts.moved(before, after));
        }
    }

    /// Settles the instance in `state`.
    pub(super) async fn settle(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        state: InstanceState,
        detail: String,
    ) -> Result<(), Halt> {
        record.settle(state);
        self.emit(index, record, InstanceEvent::Settled { state, detail })
            .await
    }

    /// Settles the instance in `state` with `why` as its error.
    pub(super) async fn fail(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        state: InstanceState,
        why: String,
    ) -> Result<(), Halt> {
        record.error = Some(why.clone());
        self.settle(index, record, state, why).await
    }

    /// What the templates of instance `index` see: its needs' outputs, and its own agent's.
    pub(super) fn context(
        &self,
        index: usize,
        agent: Option<AgentOutput>,
    ) -> crate::plan::Context<'_> {
        let records = self.records.lock().expect("not poisoned");
        self.plan.context(
            index,
            |need: &Instance| {
                let record = &records[self.index_of[need.key.as_str()]];
                NeedContext::new(need, record.state.as_str(), output_of(record))
            },
            agent,
        )
    }

    /// A place under this runner's concurrency cap, once one is free.
    pub(super) async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Halt> {
        tokio::select! {
            () = self.interrupt.cancelled() => Err(Halt::Interrupted),
            slot = self.slots.acquire() => Ok(slot.expect("the semaphore is never closed")),
        }
    }

    /// Waits `wait`, unless the run is interrupted first.
    pub(super) async fn pause(&self, wait: Duration) -> Result<(), Halt> {
        tokio::select! {
            () = self.interrupt.cancelled() => Err(Halt::Interrupted),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// The life of one instance: here, or claimed from (and shared with) other runners.
    async fn drive(self: Arc<Self>, index: usize) -> Result<(), Halt> {
        if self.shared.is_some() {
            self.drive_shared(index).await
        } else {
            self.drive_here(index, false).await
        }
    }

    /// The life of one instance in this runner, from wherever its record says it is;
    /// `placed` when the caller already holds its place under the cap.
    pub(super) async fn drive_here(
        self: &Arc<Self>,
        index: usize,
        placed: bool,
    ) -> Result<(), Halt> {
        let mut record = self.record(index);
        if record.state == InstanceState::Pending {
            let instance = &self.plan.instances[index];
            if let Some(detail) = refusal(instance, |n| self.state(n)) {
                return self
                    .settle(index, &mut record, InstanceState::Blocked, detail)
                    .await;
            }
        }
        let _slot = if placed {
            None
        } else {
            Some(self.slot().await?)
        };
        let recalled = self
            .recall
            .lock()
            .expect("not poisoned")
            .remove(&record.key);
        if let Some(found) = recalled.filter(|_| record.state == InstanceState::Pending) {
            self.recall(index, &mut record, found).await?;
        }
        let mut launching = Launching {
            uncertain: record.state == InstanceState::Launching,
            lost: 0,
        };
        loop {
            match record.state {
                InstanceState::Pending => {
                    self.begin_attempt(index, &mut record, &mut launching)
                        .await?;
                }
                InstanceState::Launching => {
                    self.launch(index, &mut record, &mut launching).await?;
                }
                InstanceState::Running | InstanceState::FollowingUp => {
                    let ending = self.wait(index, &record).await?;
                    self.ended(index, &mut record, ending).await?;
                }
                _ => return Ok(()),
            }
        }
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
            .unwrap_or_else(crate::state::Timestamp::now);
        let sent_at = record.follow_up_sent_at.map(crate::state::Timestamp::time);
        let mut receiver = self.poller.watch(
            &id,
            started.time(),
            sent_at.unwrap_or_else(|| started.time()),
        );
        let deadline = instance
            .timeout
            .map(|t| tokio::time::Instant::now() + t.saturating_sub(started.elapsed()));
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let mut watching = Watching::new(sent_at, self.config.follow_up_grace);
        let mut asked = false;
        loop {
            tokio::select! {
                () = self.interrupt.cancelled() => return Err(Halt::Interrupted),
                () = &mut timeout => return Ok(Ending::TimedOut),
                changed = receiver.changed() => if changed.is_err() { return Err(Halt::Interrupted) },
            }
            let Some(snapshot) = receiver.borrow_and_update().clone() else {
                continue;
            };
            if let Some(ending) = watching.observe(&snapshot) {
                return Ok(ending);
            }
            // A follow-up quicker than the reads: its agent reads FINISHED and was never
            // seen working. Its conversation, asked once, saves waiting out the grace.
            if watching.unsure() && !asked {
                asked = true;
                let prompt = record.follow_ups_sent + 1;
                let answered = tokio::select! {
                    () = self.interrupt.cancelled() => return Err(Halt::Interrupted),
                    answered = self.backend.answered(&id, prompt) => answered,
                };
                match answered {
                    Ok(Some(true)) => watching.answered(std::time::SystemTime::now()),
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, "the conversation was not read"),
                }
            }
        }
    }

    /// Acts on how the current agent ended: follow-ups, success, a retry or the end.
    async fn ended(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        ending: Ending,
    ) -> Result<(), Halt> {
        match ending {
            Ending::Finished(agent) => {
                keep_outputs(record, &agent);
                if self.follow_up(index, record, &agent).await? {
                    return Ok(());
                }
                self.succeeded(index, record).await
            }
            Ending::Failed(why) => {
                self.end_attempt(index, record, &why, InstanceState::Failed)
                    .await
            }
            Ending::TimedOut => {
                if let Some(id) = record.agent_id.clone() {
                    self.emit(index, record, InstanceEvent::Stopping).await?;
                    if let Err(error) = self.backend.stop(&AgentId(id)).await {
                        halt_on(&error)?;
                    }
                }
                let timeout = self.plan.instances[index]
                    .timeout
                    .map(|t| humantime::format_duration(t).to_string())
                    .unwrap_or_default();
                let why = format!("timed out after {timeout}");
                self.end_attempt(index, record, &why, InstanceState::TimedOut)
                    .await
            }
            Ending::Deleted => {
                let detail = "the agent was deleted".to_owned();
                self.settle(index, record, InstanceState::Failed, detail)
                    .await
            }
        }
    }

    /// Every follow-up is dealt with: the attempt succeeded.
    async fn succeeded(&self, index: usize, record: &mut InstanceRecord) -> Result<(), Halt> {
        record.end_attempt("succeeded");
        if let Some(id) = &record.agent_id {
            let id = AgentId(id.clone());
            self.poller.forget(&id);
            // Usage is a report, not an outcome: a failed read fails nothing, and is said
            // once.
            match self.backend.tokens(&id).await {
                Ok(tokens) => record.tokens = tokens,
                Err(error) => self.tokens_unreadable(&error),
            }
        }
        let detail = record
            .pr_url
            .clone()
            .unwrap_or_else(|| "no pull request".into());
        self.settle(index, record, InstanceState::Succeeded, detail)
            .await
    }

    /// Says, the first time only, that token counts cannot be read (for example 403
    /// `feature_unavailable` where usage is not offered).
    fn tokens_unreadable(&self, error: &ApiError) {
        tracing::debug!(%error, "token usage not read");
        if !self.told_tokens_unreadable.swap(true, Ordering::Relaxed) {
            (self.report)(&Progress::Notice(format!(
                "token usage is not reported for this run: {error}"
            )));
        }
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
        let retries = self.plan.instances[index].retries;
        record.end_attempt(why);
        if let Some(id) = &record.agent_id {
            self.poller.forget(&AgentId(id.clone()));
        }
        if record.tries > retries {
            return self.fail(index, record, state, why.to_owned()).await;
        }
        record.error = Some(why.to_owned());
        let after = backoff(
            self.config.relaunch_backoff,
            record.tries,
            rand::rng().random_range(0.5..1.0),
        );
        record.state = InstanceState::Pending;
        let event = InstanceEvent::Retrying {
            reason: why.to_owned(),
            retry: (record.tries, retries),
            after,
        };
        self.emit(index, record, event).await?;
        self.pause(after).await
    }
}

/// What a need's record gives its dependents' templates.
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

/// What a finished agent reported: its status, summary, pull request and page (kept from
/// earlier reads where this one is silent), its branch (v1 agents name it), the branches per
/// repository, how long its run took.
fn keep_outputs(record: &mut InstanceRecord, agent: &AgentView) {
    record.status = Some(agent.status.to_string());
    record.summary = agent.summary.clone().or(record.summary.take());
    record.pr_url = agent.pr_url.clone().or(record.pr_url.take());
    record.url = agent.url.clone().or(record.url.take());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::AgentStatus;
    use crate::exec::fake::{Call, Scripted, agent};
    use crate::plan::Options;
    use crate::spec::{self, SourceFile};

    /// What an execution of a workflow left: how it stopped, its records, the kinds of the
    /// events it logged, and the lines it told.
    struct Ran {
        halt: Option<Halt>,
        records: Vec<InstanceRecord>,
        logged: Vec<String>,
        told: Vec<String>,
    }

    /// Executes `yaml` against `backend` from fresh records, with a store of its own.
    async fn execute(yaml: &str, backend: Arc<Scripted>) -> Ran {
        // Compared on the wall clock, which paused tokio time does not move.
        execute_with(yaml, backend, Duration::from_millis(50)).await
    }

    /// The same, with `follow_up_grace` as the grace after a follow-up.
    async fn execute_with(yaml: &str, backend: Arc<Scripted>, follow_up_grace: Duration) -> Ran {
        let workflow = spec::parse(&SourceFile::new("w.yaml", yaml)).unwrap();
        let plan = Arc::new(Plan::build(&workflow, &Options::default()).unwrap());
        // The records a first apply starts from.
        let records = crate::apply::merge(&plan, &[]).records;
        let dir = tempfile::tempdir().unwrap();
        let store = StoreHandle::open(&dir.path().into()).unwrap();
        let told = Arc::new(Mutex::new(Vec::new()));
        let report: Reporter = {
            let told = told.clone();
            Arc::new(move |p: &Progress| told.lock().unwrap().extend(p.line()))
        };
        let config = ExecConfig {
            poll: PollConfig {
                min: Duration::from_millis(10),
                max: Duration::from_secs(1),
            },
            relaunch_backoff: Duration::from_secs(30),
            follow_up_grace,
            webhook: None,
            outage_budget: Duration::from_secs(120),
            lease: None,
        };
        let backend_recall = backend.recall.lock().unwrap().clone();
        let execution = Execution::new(
            plan.clone(),
            records,
            store.clone(),
            backend,
            config,
            CancellationToken::new(),
            report,
            backend_recall,
        );
        let halt = execution.execute().await;
        let run = plan.run.to_string();
        let logged = store
            .read(move |s| s.events(&run))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        let told = told.lock().unwrap().clone();
        Ran {
            halt,
            records: execution.records(),
            logged,
            told,
        }
    }

    const ONE: &str = "version: 1\nname: w\napi:\n  version: v0\ntasks:\n  t:\n    repo: https://github.com/a/x\n    prompt: go\n";

    #[tokio::test(start_paused = true)]
    async fn a_launch_whose_answer_was_lost_is_found_and_not_sent_again() {
        let backend = Arc::new(Scripted::default());
        backend.fail_next_launch(ApiError::Server {
            status: 502,
            message: "bad gateway".into(),
        });
        *backend.found.lock().unwrap() = Some(agent("bc-lost", AgentStatus::Running));
        let ran = execute(ONE, backend.clone()).await;
        assert_eq!(ran.halt, None);
        assert_eq!(ran.records[0].state, InstanceState::Succeeded);
        assert_eq!(ran.records[0].agent_id.as_deref(), Some("bc-lost"));
        let launches = backend
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Launch { .. }))
            .count();
        assert_eq!(launches, 1, "{:?}", backend.calls());
        assert_eq!(
            ran.logged,
            ["launch_intent", "launch_uncertain", "launched", "succeeded"]
        );
        assert_eq!(
            ran.told,
            [
                "uncertain t[a/x]: the API failed (HTTP 502): bad gateway; looking for its agent before launching again",
                "adopted   t[a/x] (bc-lost): launched before, not again",
                "succeeded t[a/x]: no pull request"
            ]
        );
    }

    fn launches(backend: &Scripted) -> Vec<String> {
        let calls = backend.calls().into_iter();
        calls
            .filter_map(|c| match c {
                Call::Launch { branch } => Some(branch),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_whose_records_were_lost_adopts_the_launch_recall_found() {
        let backend = Arc::new(Scripted::default());
        let found = super::super::backend::Recalled {
            attempt: 2,
            id: AgentId("bc-old".into()),
            spec: None,
        };
        backend
            .recall
            .lock()
            .unwrap()
            .insert("t[a/x]".into(), found);
        backend
            .recalled
            .lock()
            .unwrap()
            .insert("bc-old".into(), agent("bc-old", AgentStatus::Running));
        let ran = execute(ONE, backend.clone()).await;
        assert_eq!(ran.halt, None);
        let record = &ran.records[0];
        assert_eq!(record.state, InstanceState::Succeeded);
        assert_eq!(
            (record.attempt, record.agent_id.as_deref()),
            (2, Some("bc-old"))
        );
        assert!(record.adopted);
        assert!(launches(&backend).is_empty(), "{:?}", backend.calls());
        assert_eq!(ran.logged, ["launched", "succeeded"]);
        assert_eq!(
            ran.told[0],
            "adopted   t[a/x] (bc-old): launched before, not again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_recalled_launch_of_another_spec_is_followed_by_a_new_attempt() {
        for (spec, checked) in [(Some("ffffffff"), false), (None, true)] {
            let backend = Arc::new(Scripted::default());
            let found = super::super::backend::Recalled {
                attempt: 1,
                id: AgentId("bc-old".into()),
                spec: spec.map(str::to_owned),
            };
            // Nothing checks out as this launch.
            backend
                .recall
                .lock()
                .unwrap()
                .insert("t[a/x]".into(), found);
            let ran = execute(ONE, backend.clone()).await;
            let record = &ran.records[0];
            assert_eq!(record.state, InstanceState::Succeeded);
            assert_eq!(
                (record.attempt, record.agent_id.as_deref()),
                (2, Some("bc-1"))
            );
            let branches = launches(&backend);
            assert_eq!(branches.len(), 1);
            assert!(branches[0].ends_with("-attempt-2"), "{branches:?}");
            let asked = backend.calls().contains(&Call::Recalled {
                agent: "bc-old".into(),
            });
            assert_eq!(asked, checked, "a spec in the name needs no read");
            assert_eq!(
                ran.told[0],
                "found     t[a/x] (bc-old): attempt 1 has another spec; attempt 2 is a new agent"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_api_out_of_reach_past_the_budget_stops_the_run() {
        let backend = Arc::new(Scripted::default());
        backend.script("bc-1", &[AgentStatus::Running]);
        *backend.outage.lock().unwrap() = Some(crate::cursor::Outage {
            url: "https://api.cursor.com/".into(),
            lasted: Duration::from_secs(121),
            cause: "connection refused".into(),
        });
        let ran = execute(ONE, backend.clone()).await;
        let Some(Halt::Fatal(why)) = ran.halt else {
            panic!("{:?}", ran.halt)
        };
        assert!(
            why.starts_with("cannot reach https://api.cursor.com/: connection refused"),
            "{why}"
        );
        // Found at the first look, before the launch went out: nothing launched.
        assert_eq!(ran.records[0].state, InstanceState::Pending);
        assert!(backend.calls().is_empty(), "{:?}", backend.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_agent_is_relaunched_on_a_branch_of_its_own_until_retries_run_out() {
        let backend = Arc::new(Scripted::default());
        backend.script("bc-1", &[AgentStatus::Error]);
        backend.script("bc-2", &[AgentStatus::Expired]);
        let yaml = format!("{ONE}    retries: 1\n");
        let ran = execute(&yaml, backend.clone()).await;
        let record = &ran.records[0];
        assert_eq!(record.state, InstanceState::Failed);
        assert_eq!(record.error.as_deref(), Some("the agent EXPIRED"));
        let outcomes: Vec<&str> = record.attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["the agent ended in ERROR", "the agent EXPIRED"]);
        let branches: Vec<String> = backend
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Launch { branch } => Some(branch),
                _ => None,
            })
            .collect();
        assert_eq!(branches.len(), 2);
        assert_eq!(branches[1], format!("{}-attempt-2", branches[0]));
        assert!(ran.logged.contains(&"relaunch".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_up_goes_to_the_same_agent_once_it_finished_and_an_unwanted_one_is_skipped() {
        let backend = Arc::new(Scripted::default());
        backend.script(
            "bc-1",
            &[
                AgentStatus::Finished,
                AgentStatus::Running,
                AgentStatus::Finished,
            ],
        );
        let yaml = format!(
            "{ONE}    follow_ups:\n      - prompt: again\n      - prompt: never\n        if: \"agent.status == 'ERROR'\"\n"
        );
        let ran = execute(&yaml, backend.clone()).await;
        assert_eq!(ran.records[0].state, InstanceState::Succeeded);
        assert_eq!(
            backend.calls()[1],
            Call::FollowUp {
                agent: "bc-1".into(),
                text: "again".into()
            }
        );
        // Nothing else is sent (a read of the conversation may be made, depending on which
        // reads saw the agent working).
        let sent = backend
            .calls()
            .into_iter()
            .filter(|c| !matches!(c, Call::Conversation { .. }))
            .count();
        assert_eq!(sent, 2, "{:?}", backend.calls());
        assert_eq!(
            ran.logged,
            [
                "launch_intent",
                "launched",
                "follow_up_intent",
                "follow_up_sent",
                "follow_up_skipped",
                "succeeded"
            ]
        );
    }

    #[test]
    fn a_follow_up_quicker_than_the_reads_ends_when_the_conversation_answers_it() {
        let backend = Arc::new(Scripted::default());
        // FINISHED before and after the follow-up: never seen working on it.
        backend.script("bc-1", &[AgentStatus::Finished]);
        *backend.answers.lock().unwrap() = Some(true);
        let yaml = format!("{ONE}    follow_ups:\n      - prompt: again\n");
        // A grace that would outlast the test: only the conversation can end the wait. The
        // poller's clock is the wall clock, so the bound is too.
        let grace = Duration::from_secs(3_600);
        let (done, ran) = std::sync::mpsc::channel();
        let running = backend.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            let _ = done.send(runtime.block_on(execute_with(&yaml, running, grace)));
        });
        let ran = ran
            .recv_timeout(Duration::from_secs(60))
            .expect("the follow-up's end is seen without waiting out the grace");
        assert_eq!(ran.records[0].state, InstanceState::Succeeded);
        assert!(
            backend.calls().contains(&Call::Conversation {
                agent: "bc-1".into(),
                prompt: 2
            }),
            "{:?}",
            backend.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_key_halts_the_run_and_its_dependents_never_start() {
        let backend = Arc::new(Scripted::default());
        backend.fail_next_launch(ApiError::Auth {
            status: 401,
            message: "bad key".into(),
        });
        let yaml = format!(
            "{ONE}  u:\n    repo: https://github.com/a/y\n    needs: [t]\n    prompt: then\n"
        );
        let ran = execute(&yaml, backend.clone()).await;
        assert!(matches!(ran.halt, Some(Halt::Fatal(_))), "{:?}", ran.halt);
        assert_eq!(backend.calls().len(), 1);
        assert_eq!(ran.records[1].state, InstanceState::Pending);
    }

    #[test]
    fn the_backoff_doubles_with_each_retry_up_to_a_ceiling() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 1, 1.0), base);
        assert_eq!(backoff(base, 3, 1.0), base * 4);
        assert_eq!(backoff(base, 3, 0.5), base * 2);
        assert_eq!(backoff(base, 40, 1.0), base * 256, "capped at 2^8");
    }
}
