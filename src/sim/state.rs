//! What the simulator remembers: agents and their timelines, quota windows, statistics.
//!
//! An agent's status is never stored: it follows from its timeline and the time of the
//! question, so a simulator sped up a thousand times costs no background work.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::SimConfig;
use crate::cursor::Rate;
use crate::cursor::model::v1::{self, RunId};
use crate::cursor::model::{
    Agent, AgentId, AgentStatus, AgentTarget, LaunchRequest, Message, Source, Webhook,
};

/// How a run's work ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    Error,
    Expired,
}

/// Which API made an agent: it decides the shape of ids and what the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/v0`.
    V0,
    /// `/v1`.
    V1,
    /// The LiteLLM Agent Platform's `/session` (`cursor` runtime).
    Platform,
}

/// One prompt's work: the first prompt of an agent, or a follow-up.
#[derive(Debug, Clone)]
struct SimRun {
    id: RunId,
    prompt: String,
    started: SystemTime,
    creating_until: SystemTime,
    busy_until: SystemTime,
    outcome: Outcome,
    cancelled: Option<SystemTime>,
}

impl SimRun {
    fn status(&self, now: SystemTime) -> AgentStatus {
        if self.cancelled.is_some() {
            AgentStatus::Cancelled
        } else if now < self.creating_until {
            AgentStatus::Creating
        } else if now < self.busy_until {
            AgentStatus::Running
        } else {
            match self.outcome {
                Outcome::Finished => AgentStatus::Finished,
                Outcome::Error => AgentStatus::Error,
                Outcome::Expired => AgentStatus::Expired,
            }
        }
    }

    /// The last moment, up to `now`, at which its status changed.
    fn changed(&self, now: SystemTime) -> SystemTime {
        [
            Some(self.started),
            Some(self.creating_until),
            Some(self.busy_until),
            self.cancelled,
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t <= now)
        .max()
        .unwrap_or(self.started)
    }
}

/// One simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    id: AgentId,
    name: String,
    source: Source,
    target: AgentTarget,
    /// v1: the pull request it was asked to work on.
    existing_pr: Option<String>,
    created: SystemTime,
    pr_number: u64,
    runs: Vec<SimRun>,
    archived: bool,
    /// What v0 shows once it is stopped.
    stopped_status: AgentStatus,
    /// The webhook to notify.
    pub webhook: Option<Webhook>,
    /// The last status the webhook was told about, and how many runs the agent had then
    /// (a follow-up ends in FINISHED again, and that is news).
    notified: Option<(AgentStatus, usize)>,
}

impl SimAgent {
    fn latest(&self) -> &SimRun {
        self.runs.last().expect("an agent has a run")
    }

    fn run(&self, id: &RunId) -> Option<&SimRun> {
        self.runs.iter().find(|r| &r.id == id)
    }

    /// The v0 status at `now`: its latest run's; after a stop, what the simulator was told
    /// to show (what v0 shows then is not documented).
    pub fn status(&self, now: SystemTime) -> AgentStatus {
        match self.latest().status(now) {
            AgentStatus::Cancelled => self.stopped_status.clone(),
            status => status,
        }
    }

    fn pr_url(&self, finished: bool) -> Option<String> {
        self.existing_pr.clone().or_else(|| {
            (finished && self.target.auto_create_pr == Some(true))
                .then(|| format!("{}/pull/{}", self.source.repository, self.pr_number))
        })
    }

    /// The agent as v0 shows it at `now`.
    pub fn view(&self, now: SystemTime) -> Agent {
        let status = self.status(now);
        let finished = status == AgentStatus::Finished;
        let mut target = self.target.clone();
        target.pr_url = self.pr_url(finished);
        Agent {
            id: self.id.clone(),
            name: Some(self.name.clone()),
            summary: finished.then(|| result_of(&self.latest().prompt)),
            status,
            source: Some(self.source.clone()),
            target: Some(target),
            created_at: Some(rfc3339(self.created)),
        }
    }

    /// The agent as v1 shows it at `now`: metadata, and its latest run's id.
    pub fn view_v1(&self, now: SystemTime) -> v1::Agent {
        let latest = self.latest();
        // The published enum has no IDLE (seen live): the simulator keeps to the file.
        let status = if self.archived { "ARCHIVED" } else { "ACTIVE" };
        v1::Agent {
            id: self.id.clone(),
            name: Some(self.name.clone()),
            status: Some(status.to_owned()),
            env: Some(v1::AgentEnv {
                kind: "cloud".into(),
                name: None,
            }),
            repos: vec![v1::RepoSpec {
                url: self.source.repository.clone(),
                starting_ref: self.source.git_ref.clone(),
                pr_url: self.existing_pr.clone(),
            }],
            latest_run_id: Some(latest.id.clone()),
            url: self.target.url.clone(),
            created_at: Some(rfc3339(self.created)),
            updated_at: Some(rfc3339(latest.changed(now))),
        }
    }

    /// A run as v1 shows it at `now`; `full` adds what lists leave out.
    fn run_view(&self, run: &SimRun, now: SystemTime, full: bool) -> v1::Run {
        let status = run.status(now);
        let ended = status.is_terminal();
        let finished = status == AgentStatus::Finished;
        let end = run.cancelled.unwrap_or(run.busy_until);
        v1::Run {
            id: run.id.clone(),
            agent_id: Some(self.id.clone()),
            created_at: Some(rfc3339(run.started)),
            updated_at: Some(rfc3339(run.changed(now))),
            duration_ms: (full && ended).then(|| {
                u64::try_from(
                    end.duration_since(run.started)
                        .unwrap_or_default()
                        .as_millis(),
                )
                .unwrap_or(u64::MAX)
            }),
            result: (full && finished).then(|| result_of(&run.prompt)),
            git: finished.then(|| v1::Git {
                branches: vec![v1::GitBranch {
                    repo_url: self
                        .source
                        .repository
                        .trim_start_matches("https://")
                        .to_owned(),
                    branch: self.target.branch_name.clone(),
                    pr_url: self.pr_url(true),
                }],
            }),
            status,
        }
    }

    /// The conversation at `now`: each prompt, and its answer once its run ended.
    pub fn messages(&self, now: SystemTime) -> Vec<Message> {
        let mut messages = Vec::new();
        for run in &self.runs {
            messages.push(Message {
                id: format!("msg_{:03}", messages.len() + 1),
                kind: "user_message".into(),
                text: run.prompt.clone(),
            });
            if now >= run.busy_until && run.cancelled.is_none() {
                messages.push(Message {
                    id: format!("msg_{:03}", messages.len() + 1),
                    kind: "assistant_message".into(),
                    text: format!("I worked on: {}", first_line(&run.prompt)),
                });
            }
        }
        messages
    }

    /// The Agent Platform's event log at `now`: per prompt, Cursor's events normalized as
    /// the platform does (`user.message`, `session.status_running`, `agent.tool_use`,
    /// `agent.tool_result`, `agent.message`, the final `result` as a tool result, then
    /// `session.status_idle`). Append-only as time passes, so an event's place is its id.
    pub fn platform_events(&self, now: SystemTime) -> Vec<serde_json::Value> {
        let mut log: Vec<(SystemTime, serde_json::Value)> = Vec::new();
        let text = |text: String| serde_json::json!([{"type": "text", "text": text}]);
        for (number, run) in self.runs.iter().enumerate() {
            let end = run.cancelled.unwrap_or(run.busy_until);
            let mut at = |time: SystemTime, event: serde_json::Value| {
                if time <= now && time <= end {
                    log.push((time, event));
                }
            };
            at(
                run.started,
                serde_json::json!({"type": "user.message", "content": text(run.prompt.clone())}),
            );
            at(
                run.creating_until,
                serde_json::json!({"type": "session.status_running"}),
            );
            let middle = run.creating_until
                + (run
                    .busy_until
                    .duration_since(run.creating_until)
                    .unwrap_or_default()
                    / 2);
            at(
                middle,
                serde_json::json!({"type": "agent.tool_use", "id": format!("tool_{number}"), "name": "edit_file", "input": {"path": "README.md"}}),
            );
            at(
                middle,
                serde_json::json!({"type": "agent.tool_result", "tool_use_id": format!("tool_{number}"), "content": text("edited".into()), "is_error": false}),
            );
            if let Some(cancelled) = run.cancelled.filter(|c| *c <= now) {
                log.push((cancelled, serde_json::json!({"type": "user.interrupt"})));
                log.push((cancelled, serde_json::json!({"type": "session.status_idle", "stop_reason": {"type": "interrupted"}})));
                continue;
            }
            let summary = format!("I worked on: {}", first_line(&run.prompt));
            match run.outcome {
                Outcome::Finished => {
                    let message = match self.pr_url(true) {
                        Some(pr) => format!("{summary}\nOpened {pr}"),
                        None => summary.clone(),
                    };
                    at(
                        end,
                        serde_json::json!({"type": "agent.message", "content": text(message)}),
                    );
                    at(
                        end,
                        serde_json::json!({"type": "agent.tool_result", "content": text(summary), "is_error": false}),
                    );
                }
                Outcome::Error => {
                    at(
                        end,
                        serde_json::json!({"type": "agent.tool_result", "content": text("the agent failed".into()), "is_error": true}),
                    );
                    at(
                        end,
                        serde_json::json!({"type": "session.error", "error": {"type": "agent_error", "message": "the agent failed"}}),
                    );
                }
                Outcome::Expired => {
                    at(
                        end,
                        serde_json::json!({"type": "session.status_terminated"}),
                    );
                    continue;
                }
            }
            at(
                end,
                serde_json::json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}),
            );
        }
        log.sort_by_key(|(time, _)| *time);
        log.into_iter()
            .enumerate()
            .map(|(index, (time, mut event))| {
                event["id"] = format!("evt_{:06}", index + 1).into();
                event["processed_at"] = httpdate::fmt_http_date(time).into();
                event
            })
            .collect()
    }

    /// Whether the agent works on a prompt at `now` (a platform session is `running`).
    pub fn is_busy(&self, now: SystemTime) -> bool {
        !self.latest().status(now).is_terminal()
    }

    /// Tokens its runs used by `now` (a function of the prompt, so tests can predict it).
    fn usage(&self, now: SystemTime) -> v1::Usage {
        let runs: Vec<v1::RunUsage> = self
            .runs
            .iter()
            .filter(|r| r.status(now).is_terminal())
            .map(|r| {
                let size = r.prompt.len() as u64;
                let (input_tokens, output_tokens) = (800 + 8 * size, 200 + 2 * size);
                v1::RunUsage {
                    id: r.id.clone(),
                    usage: v1::Tokens {
                        input_tokens,
                        output_tokens,
                        total_tokens: input_tokens + output_tokens,
                        ..v1::Tokens::default()
                    },
                }
            })
            .collect();
        let mut total = v1::Tokens::default();
        for run in &runs {
            total.input_tokens += run.usage.input_tokens;
            total.output_tokens += run.usage.output_tokens;
            total.total_tokens += run.usage.total_tokens;
        }
        v1::Usage {
            total_usage: total,
            runs,
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn result_of(prompt: &str) -> String {
    format!("Done: {}", first_line(prompt))
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(80).collect()
}

/// What a v1 run's stream has to tell (see [`SimState::run_stream`]).
#[derive(Debug, Clone)]
pub struct RunStream {
    /// The run's status now.
    pub status: AgentStatus,
    /// Its events so far: number, type, data.
    pub events: Vec<(u32, &'static str, serde_json::Value)>,
    /// When it ended, if it has.
    pub ended: Option<SystemTime>,
    /// When its status changes next on its own (a cancel can come sooner).
    pub next_change: Option<SystemTime>,
}

/// Counters tests read through `GET /__sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Calls per route (`GET /v0/agents/{id}`), rejected ones included.
    pub calls: BTreeMap<String, u64>,
    /// Launches per `repository#branch` (v0), `repository#name` (v1, where the agent picks
    /// its branch and orchestrate names each attempt) or `repository#prompt` (platform
    /// sessions): more than one is a duplicate agent.
    pub launches: BTreeMap<String, u64>,
    /// Follow-ups accepted per agent.
    pub follow_ups: BTreeMap<String, u64>,
    /// Requests refused because they exceeded a documented quota (the repositories
    /// endpoint's), per route: a client that keeps to the documentation has none.
    pub quota_violations: BTreeMap<String, u64>,
    /// Requests refused (429) by the general calls quota, per route: how a client learns it.
    pub throttled: BTreeMap<String, u64>,
    /// The most agents working at once (a run started and not yet ended).
    pub peak_working: u64,
    /// Faults injected, per kind.
    pub faults: BTreeMap<String, u64>,
    /// Agents created.
    pub agents: u64,
    /// Webhook deliveries attempted.
    pub webhook_deliveries: u64,
    /// v1 refusals per error code (`agent_id_conflict`, `agent_busy`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Agent Platform events sent over event streams (an event sent twice counts twice).
    pub stream_events: u64,
    /// Agent Platform event streams opened with `Last-Event-ID` (reconnects).
    pub stream_resumes: u64,
}

impl Stats {
    /// Requests refused for exceeding a documented quota, over every route.
    pub fn total_quota_violations(&self) -> u64 {
        self.quota_violations.values().sum()
    }

    /// Requests the general calls quota refused, over every route.
    pub fn total_throttled(&self) -> u64 {
        self.throttled.values().sum()
    }
}

/// Sliding windows of call times, one per quota.
#[derive(Debug, Default)]
struct Windows {
    calls: VecDeque<SystemTime>,
}

/// Why the gate refused a call for its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRefusal {
    /// Until a call would be admitted.
    pub wait: Duration,
    /// The calls the refusing quota allows per window (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Whether it is the documented repositories limit.
    pub documented: bool,
}

impl Windows {
    /// Records a call at `now` if every rate allows it; else the wait until one would.
    fn admit(&mut self, rates: &[Rate], now: SystemTime) -> Result<(), Duration> {
        let longest = rates.iter().map(|r| r.per).max().unwrap_or_default();
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() >= longest)
        {
            self.calls.pop_front();
        }
        let mut wait = Duration::ZERO;
        for rate in rates {
            let in_window: Vec<&SystemTime> = self
                .calls
                .iter()
                .filter(|t| now.duration_since(**t).unwrap_or_default() < rate.per)
                .collect();
            if in_window.len() >= rate.count as usize {
                let oldest = in_window[in_window.len() - rate.count as usize];
                let frees = *oldest + rate.per;
                wait = wait.max(frees.duration_since(now).unwrap_or_default());
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        self.calls.push_back(now);
        Ok(())
    }
}

/// A launch as the simulator received it, whichever API it came through.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Launch {
    /// `v0` or `v1`.
    pub api: String,
    /// The agent it made.
    pub agent_id: AgentId,
    /// The repository.
    pub repository: String,
    /// The ref it starts from.
    pub git_ref: Option<String>,
    /// The branch the agent pushes to (asked for on v0, picked by the agent on v1).
    pub branch: String,
    /// The model asked for.
    pub model: Option<String>,
    /// The prompt text.
    pub prompt: String,
    /// The body as sent, secrets (webhook secret, environment values) masked.
    pub body: serde_json::Value,
}

/// The simulator's whole state, behind one lock.
#[derive(Debug)]
pub struct SimState {
    /// The configuration.
    pub config: SimConfig,
    /// Agents by id, in creation order.
    agents: BTreeMap<u64, SimAgent>,
    by_id: std::collections::HashMap<AgentId, u64>,
    next: u64,
    /// Its randomness (seeded by `--faults seed=N`).
    pub rng: StdRng,
    /// Counters.
    pub stats: Stats,
    /// Launches as received.
    pub launches: Vec<Launch>,
    /// Strict mode: exchanges that broke Cursor's published API.
    pub violations: Vec<crate::contract::Violation>,
    all_calls: Windows,
    repositories_calls: Windows,
    /// Requests left in the current 429 burst.
    pub burst_left: u32,
    /// Cancelled when the simulator shuts down: open event streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Why a request to an agent cannot be done; each is one documented v1 error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such agent.
    NotFound,
    /// No such run.
    RunNotFound,
    /// The agent is working; try later.
    Busy,
    /// The agent is archived.
    Archived,
    /// The id is taken.
    IdConflict,
    /// The run already ended.
    NotCancellable,
    /// The spending ceiling is reached.
    UsageLimit,
    /// The agent is in a state that does not allow it.
    NotAllowed(String),
}

/// What a launch asks for, whichever API it came through.
pub struct NewAgent {
    /// The API.
    pub api: Api,
    /// A client-chosen id (v1).
    pub id: Option<AgentId>,
    /// Its name (v1; v0 names it after the prompt).
    pub name: Option<String>,
    /// Repository and ref.
    pub source: Source,
    /// v0: the branch asked for.
    pub branch: Option<String>,
    /// Open a pull request at the end.
    pub auto_create_pr: bool,
    /// Open it as the GitHub App (v0).
    pub open_as_cursor_github_app: bool,
    /// Do not ask for review.
    pub skip_reviewer_request: bool,
    /// v1: work on this pull request.
    pub existing_pr: Option<String>,
    /// The first prompt.
    pub prompt: String,
    /// The model.
    pub model: Option<String>,
    /// The webhook (v0).
    pub webhook: Option<Webhook>,
    /// The body, secrets masked, for `/__sim/launches`.
    pub body: serde_json::Value,
}

impl SimState {
    /// A fresh state.
    pub fn new(config: SimConfig) -> Self {
        let seed = config.faults.seed.unwrap_or_else(rand::random);
        Self {
            rng: StdRng::seed_from_u64(seed),
            config,
            agents: BTreeMap::new(),
            by_id: std::collections::HashMap::new(),
            next: 0,
            stats: Stats::default(),
            violations: Vec::new(),
            launches: Vec::new(),
            all_calls: Windows::default(),
            repositories_calls: Windows::default(),
            burst_left: 0,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Admits a call to the overall quota and, for the repositories endpoint, its own.
    pub fn admit(&mut self, repositories: bool, now: SystemTime) -> Result<(), QuotaRefusal> {
        if repositories {
            let rates = self.config.repositories_quota.clone();
            self.repositories_calls
                .admit(&rates, now)
                .map_err(|wait| QuotaRefusal {
                    wait,
                    limit: rates.iter().map(|r| r.count).min().unwrap_or(1),
                    documented: true,
                })?;
        }
        if let Some(rate) = self.config.calls_quota {
            self.all_calls
                .admit(&[rate], now)
                .map_err(|wait| QuotaRefusal {
                    wait,
                    limit: rate.count,
                    documented: false,
                })?;
        }
        Ok(())
    }

    /// The most agents that worked at once so far.
    pub fn peak_working(&self) -> u64 {
        let mut edges: Vec<(SystemTime, i64)> = self
            .agents
            .values()
            .flat_map(|agent| &agent.runs)
            .flat_map(|run| {
                [
                    (run.started, 1),
                    (run.cancelled.unwrap_or(run.busy_until), -1),
                ]
            })
            .collect();
        // An end and a start at the same instant: the end first.
        edges.sort();
        let (mut working, mut peak) = (0i64, 0i64);
        for (_, step) in edges {
            working += step;
            peak = peak.max(working);
        }
        u64::try_from(peak).unwrap_or(0)
    }

    /// Counts a v1 refusal by its code.
    pub fn count_error(&mut self, code: &str) {
        *self.stats.errors.entry(code.to_owned()).or_default() += 1;
    }

    fn work_time(&mut self) -> Duration {
        let (low, high) = self.config.agent_duration;
        let sim = if low >= high {
            low
        } else {
            self.rng.random_range(low..=high)
        };
        sim.div_f64(self.config.speed)
    }

    fn outcome(&mut self) -> Outcome {
        let draw: f64 = self.rng.random();
        if draw < self.config.faults.agent_error {
            *self.stats.faults.entry("agent_error".into()).or_default() += 1;
            Outcome::Error
        } else if draw < self.config.faults.agent_error + self.config.faults.agent_expire {
            *self.stats.faults.entry("agent_expire".into()).or_default() += 1;
            Outcome::Expired
        } else {
            Outcome::Finished
        }
    }

    fn uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    fn new_run(&mut self, prompt: String, now: SystemTime, creating: Duration) -> SimRun {
        let id = RunId(format!("run-{}", self.uuid()));
        let work = self.work_time();
        SimRun {
            id,
            prompt,
            started: now,
            creating_until: now + creating,
            busy_until: now + creating + work,
            outcome: self.outcome(),
            cancelled: None,
        }
    }

    /// Whether the spending ceiling of `--faults usage_limit=N` is reached.
    pub fn over_usage_limit(&self) -> bool {
        self.config
            .faults
            .usage_limit
            .is_some_and(|limit| self.stats.agents >= limit)
    }

    /// Creates an agent and its first run.
    pub fn create(&mut self, new: NewAgent, now: SystemTime) -> Result<AgentId, Refusal> {
        if new
            .id
            .as_ref()
            .is_some_and(|id| self.by_id.contains_key(id))
        {
            return Err(Refusal::IdConflict);
        }
        if new.api == Api::V1 && self.over_usage_limit() {
            return Err(Refusal::UsageLimit);
        }
        self.next += 1;
        let number = self.next;
        let id = match (new.id, new.api) {
            (Some(id), _) => id,
            (None, Api::V1) => AgentId(format!("bc-{}", self.uuid())),
            (None, Api::Platform) => AgentId(format!("sess_{}", self.uuid().simple())),
            (None, Api::V0) => AgentId(format!(
                "bc_{:012x}",
                self.rng.random::<u64>() & 0xffff_ffff_ffff
            )),
        };
        let slug: String = first_line(&new.prompt)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(24)
            .collect();
        let branch = new.branch.clone().unwrap_or_else(|| {
            format!("cursor/{}-{:04x}", slug.trim_matches('-'), number & 0xffff)
        });
        let creating = self.config.creating.div_f64(self.config.speed);
        let run = self.new_run(new.prompt.clone(), now, creating);
        let name = new.name.clone().unwrap_or_else(|| first_line(&new.prompt));
        let agent = SimAgent {
            id: id.clone(),
            name: name.clone(),
            target: AgentTarget {
                branch_name: Some(branch.clone()),
                url: Some(format!("https://cursor.com/agents/{id}")),
                pr_url: None,
                auto_create_pr: Some(new.auto_create_pr),
                open_as_cursor_github_app: Some(new.open_as_cursor_github_app),
                skip_reviewer_request: Some(new.skip_reviewer_request),
            },
            existing_pr: new.existing_pr,
            source: new.source.clone(),
            created: now,
            pr_number: 1000 + number,
            runs: vec![run],
            archived: false,
            stopped_status: self.config.stopped_status.clone(),
            webhook: new.webhook,
            notified: None,
        };
        let key = match new.api {
            Api::V0 => format!("{}#{branch}", new.source.repository),
            Api::V1 => format!("{}#{name}", new.source.repository),
            // A session has neither branch nor name: its repository and prompt tell it.
            Api::Platform => format!("{}#{}", new.source.repository, new.prompt),
        };
        *self.stats.launches.entry(key).or_default() += 1;
        self.stats.agents += 1;
        self.launches.push(Launch {
            api: format!("{:?}", new.api).to_lowercase(),
            agent_id: id.clone(),
            repository: new.source.repository,
            git_ref: new.source.git_ref,
            branch,
            model: new.model,
            prompt: new.prompt,
            body: new.body,
        });
        self.by_id.insert(id.clone(), number);
        self.agents.insert(number, agent);
        Ok(id)
    }

    /// Creates an agent for a valid v0 launch.
    pub fn launch(&mut self, request: LaunchRequest, now: SystemTime) -> Agent {
        let mut body = serde_json::to_value(&request).unwrap_or_default();
        if let Some(secret) = body.pointer_mut("/webhook/secret") {
            *secret = "***".into();
        }
        let target = request.target.unwrap_or_default();
        let new = NewAgent {
            api: Api::V0,
            id: None,
            name: None,
            source: request.source,
            branch: target.branch_name,
            auto_create_pr: target.auto_create_pr.unwrap_or(false),
            open_as_cursor_github_app: target.open_as_cursor_github_app.unwrap_or(false),
            skip_reviewer_request: target.skip_reviewer_request.unwrap_or(false),
            existing_pr: None,
            prompt: request.prompt.text,
            model: request.model,
            webhook: request.webhook,
            body,
        };
        let id = self
            .create(new, now)
            .expect("v0 launches are never refused here");
        self.agent(&id).expect("just made").view(now)
    }

    /// The agent with `id`, unless deleted.
    pub fn agent(&self, id: &AgentId) -> Option<&SimAgent> {
        self.agents.get(self.by_id.get(id)?)
    }

    fn agent_mut(&mut self, id: &AgentId) -> Option<&mut SimAgent> {
        self.agents.get_mut(self.by_id.get(id)?)
    }

    /// v0 follow-up: a finished agent goes back to work.
    pub fn follow_up(
        &mut self,
        id: &AgentId,
        text: String,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let status = self.agent(id).ok_or(Refusal::NotFound)?.status(now);
        // v0's 409 means "deleted or archived", never "busy": a prompt sent while the agent
        // works is taken, and the agent works on.
        match status {
            AgentStatus::Creating | AgentStatus::Running | AgentStatus::Finished => {}
            other => {
                return Err(Refusal::NotAllowed(format!(
                    "agent is {other}; only a FINISHED agent takes a follow-up"
                )));
            }
        }
        self.add_run(id, text, now);
        Ok(())
    }

    fn add_run(&mut self, id: &AgentId, text: String, now: SystemTime) -> RunId {
        let run = self.new_run(text, now, Duration::ZERO);
        let run_id = run.id.clone();
        self.agent_mut(id).expect("checked").runs.push(run);
        *self.stats.follow_ups.entry(id.0.clone()).or_default() += 1;
        run_id
    }

    /// Agent Platform follow-up: a `user.message` to an idle session starts a new turn.
    pub fn platform_follow_up(
        &mut self,
        id: &AgentId,
        text: String,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        if agent.is_busy(now) {
            return Err(Refusal::Busy);
        }
        self.add_run(id, text, now);
        Ok(())
    }

    /// v1 follow-up: a new run, unless one is active or the agent is archived.
    pub fn create_run(
        &mut self,
        id: &AgentId,
        text: String,
        now: SystemTime,
    ) -> Result<v1::Run, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        if agent.archived {
            return Err(Refusal::Archived);
        }
        if !agent.latest().status(now).is_terminal() {
            return Err(Refusal::Busy);
        }
        if self.over_usage_limit() {
            return Err(Refusal::UsageLimit);
        }
        let run = self.add_run(id, text, now);
        self.run(id, &run, now, true)
    }

    /// A run of an agent as v1 shows it (`full`: with result and duration).
    pub fn run(
        &self,
        id: &AgentId,
        run: &RunId,
        now: SystemTime,
        full: bool,
    ) -> Result<v1::Run, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        let found = agent.run(run).ok_or(Refusal::RunNotFound)?;
        Ok(agent.run_view(found, now, full))
    }

    /// v1: what a run's event stream has to tell at `now`: its status, its numbered events so
    /// far (1: RUNNING, 2: the result, 3: done), and when it ended.
    pub fn run_stream(
        &self,
        id: &AgentId,
        run: &RunId,
        now: SystemTime,
    ) -> Result<RunStream, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        let found = agent.run(run).ok_or(Refusal::RunNotFound)?;
        let view = agent.run_view(found, now, true);
        let mut events = Vec::new();
        let ran = now >= found.creating_until
            && found.cancelled.is_none_or(|c| c >= found.creating_until);
        if ran {
            let data = serde_json::json!({ "runId": run, "status": "RUNNING" });
            events.push((1, "status", data));
        }
        let ended = view
            .status
            .is_terminal()
            .then(|| found.cancelled.unwrap_or(found.busy_until));
        if ended.is_some() {
            let mut data = serde_json::json!({
                "runId": run,
                "status": view.status,
                "durationMs": view.duration_ms,
            });
            if let Some(text) = &view.result {
                data["text"] = text.clone().into();
            }
            if let Some(git) = &view.git {
                data["git"] = serde_json::to_value(git).unwrap_or_default();
            }
            events.push((2, "result", data));
            events.push((3, "done", serde_json::json!({ "runId": run })));
        }
        let next_change = [found.creating_until, found.busy_until]
            .into_iter()
            .find(|t| *t > now && found.cancelled.is_none());
        Ok(RunStream {
            status: view.status,
            events,
            ended,
            next_change,
        })
    }

    /// v1: the runs of an agent, newest first, from after `cursor`.
    pub fn runs(
        &self,
        id: &AgentId,
        limit: usize,
        cursor: Option<&RunId>,
        now: SystemTime,
    ) -> Result<v1::Page<v1::Run>, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        let mut runs = agent.runs.iter().rev().peekable();
        if let Some(cursor) = cursor {
            while runs.next_if(|r| &r.id != cursor).is_some() {}
            runs.next();
        }
        let mut items: Vec<v1::Run> = runs
            .take(limit + 1)
            .map(|r| agent.run_view(r, now, false))
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = more.then(|| items.last().map(|r| r.id.0.clone())).flatten();
        Ok(v1::Page { items, next_cursor })
    }

    /// v1: cancels an active run.
    pub fn cancel_run(
        &mut self,
        id: &AgentId,
        run: &RunId,
        now: SystemTime,
    ) -> Result<v1::Run, Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        let found = agent
            .runs
            .iter_mut()
            .find(|r| &r.id == run)
            .ok_or(Refusal::RunNotFound)?;
        if found.status(now).is_terminal() {
            return Err(Refusal::NotCancellable);
        }
        found.cancelled = Some(now);
        self.run(id, run, now, true)
    }

    /// v1: archives or unarchives (idempotent).
    pub fn set_archived(
        &mut self,
        id: &AgentId,
        archived: bool,
        now: SystemTime,
    ) -> Result<v1::Agent, Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        agent.archived = archived;
        Ok(agent.view_v1(now))
    }

    /// v1: token usage of an agent.
    pub fn usage(&self, id: &AgentId, now: SystemTime) -> Result<v1::Usage, Refusal> {
        Ok(self.agent(id).ok_or(Refusal::NotFound)?.usage(now))
    }

    /// v1: the files an agent produced: a summary per finished run.
    pub fn artifacts(
        &self,
        id: &AgentId,
        now: SystemTime,
    ) -> Result<Vec<(String, String, SystemTime)>, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        Ok(agent
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status(now) == AgentStatus::Finished)
            .map(|(n, r)| {
                (
                    format!("runs/{}/summary.md", n + 1),
                    format!("# {}\n\n{}\n", first_line(&r.prompt), result_of(&r.prompt)),
                    r.busy_until,
                )
            })
            .collect())
    }

    /// v0 stop: the active run ends.
    pub fn stop(&mut self, id: &AgentId, now: SystemTime) -> Result<(), Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        let run = agent.runs.last_mut().expect("an agent has a run");
        match run.status(now) {
            AgentStatus::Creating | AgentStatus::Running => {
                run.cancelled = Some(now);
                Ok(())
            }
            other => Err(Refusal::NotAllowed(format!(
                "agent is {other}; only a running agent can be stopped"
            ))),
        }
    }

    /// Deletes an agent for good.
    pub fn delete(&mut self, id: &AgentId) -> Result<(), Refusal> {
        let number = self.by_id.remove(id).ok_or(Refusal::NotFound)?;
        self.agents.remove(&number);
        Ok(())
    }

    /// Agents newest first, starting after the agent `cursor` names: up to `limit`, and
    /// whether more follow.
    fn newest(
        &self,
        limit: usize,
        cursor: Option<&AgentId>,
        archived: bool,
    ) -> (Vec<&SimAgent>, Option<String>) {
        let start = match cursor.and_then(|c| self.by_id.get(c)) {
            Some(&number) => number,
            None => u64::MAX,
        };
        let mut page: Vec<&SimAgent> = self
            .agents
            .range(..start)
            .rev()
            .map(|(_, a)| a)
            .filter(|a| archived || !a.archived)
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = more.then(|| page.last().map(|a| a.id.0.clone())).flatten();
        (page, next)
    }

    /// A v0 page of agents.
    pub fn page(
        &self,
        limit: usize,
        cursor: Option<&AgentId>,
        now: SystemTime,
    ) -> (Vec<Agent>, Option<String>) {
        let (page, next) = self.newest(limit, cursor, true);
        (page.into_iter().map(|a| a.view(now)).collect(), next)
    }

    /// A v1 page of agents (archived ones only when asked), optionally those on `pr_url`.
    pub fn page_v1(
        &self,
        limit: usize,
        cursor: Option<&AgentId>,
        include_archived: bool,
        pr_url: Option<&str>,
        now: SystemTime,
    ) -> v1::Page<v1::Agent> {
        let (page, next_cursor) = self.newest(limit, cursor, include_archived);
        let items = page
            .into_iter()
            .filter(|a| pr_url.is_none_or(|pr| a.pr_url(true).as_deref() == Some(pr)))
            .map(|a| v1::Agent {
                // A list item is an `AgentSummary`: no repositories.
                repos: Vec::new(),
                ..a.view_v1(now)
            })
            .collect();
        v1::Page { items, next_cursor }
    }

    /// v0 agents whose webhook has not been told their latest FINISHED or ERROR status; marks
    /// them told.
    pub fn due_webhooks(&mut self, now: SystemTime) -> Vec<(Webhook, Agent)> {
        let mut due = Vec::new();
        for agent in self.agents.values_mut() {
            let Some(webhook) = agent.webhook.clone() else {
                continue;
            };
            let status = agent.status(now);
            let notify = matches!(status, AgentStatus::Finished | AgentStatus::Error);
            let news = Some((status, agent.runs.len()));
            if notify && agent.notified != news {
                agent.notified = news;
                due.push((webhook, agent.view(now)));
            }
        }
        due
    }
}
