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
use crate::cursor::model::{
    Agent, AgentId, AgentStatus, AgentTarget, LaunchRequest, Message, Source, Webhook,
};

/// How an agent's current work ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    Error,
    Expired,
}

/// One simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgent {
    id: AgentId,
    name: String,
    source: Source,
    target: AgentTarget,
    created: SystemTime,
    creating_until: SystemTime,
    busy_until: SystemTime,
    outcome: Outcome,
    stopped: Option<SystemTime>,
    pr_number: u64,
    prompts: Vec<(SystemTime, String)>,
    /// The webhook to notify.
    pub webhook: Option<Webhook>,
    /// The last status the webhook was told about, and how many prompts the agent had then
    /// (a follow-up ends in FINISHED again, and that is news).
    notified: Option<(AgentStatus, usize)>,
}

impl SimAgent {
    /// The status at `now`.
    pub fn status(&self, now: SystemTime) -> AgentStatus {
        if self.stopped.is_some() {
            // What v0 reports after a stop is not documented; the simulator answers a status
            // orchestrate does not know, so that clients prove they keep unknown statuses.
            return AgentStatus::Unknown("STOPPED".to_owned());
        }
        if now < self.creating_until {
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

    /// The agent as the API shows it at `now`.
    pub fn view(&self, now: SystemTime) -> Agent {
        let status = self.status(now);
        let finished = status == AgentStatus::Finished;
        let mut target = self.target.clone();
        if finished && target.auto_create_pr == Some(true) {
            target.pr_url = Some(format!(
                "{}/pull/{}",
                self.source.repository, self.pr_number
            ));
        }
        Agent {
            id: self.id.clone(),
            name: Some(self.name.clone()),
            summary: finished.then(|| {
                format!(
                    "Done: {}",
                    first_line(&self.prompts.last().expect("a prompt").1)
                )
            }),
            status,
            source: Some(self.source.clone()),
            target: Some(target),
            created_at: Some(humantime::format_rfc3339_millis(self.created).to_string()),
        }
    }

    /// The conversation at `now`: each prompt, and its answer once the work it asked for ended.
    pub fn messages(&self, now: SystemTime) -> Vec<Message> {
        let mut messages = Vec::new();
        for (index, (sent, text)) in self.prompts.iter().enumerate() {
            messages.push(Message {
                id: format!("msg_{:03}", messages.len() + 1),
                kind: "user_message".into(),
                text: text.clone(),
            });
            let answered = self
                .prompts
                .get(index + 1)
                .map_or(self.busy_until, |(next, _)| *next);
            if now >= answered && now >= *sent && self.stopped.is_none_or(|s| s >= answered) {
                messages.push(Message {
                    id: format!("msg_{:03}", messages.len() + 1),
                    kind: "assistant_message".into(),
                    text: format!("I worked on: {}", first_line(text)),
                });
            }
        }
        messages
    }
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(80).collect()
}

/// Counters tests read through `GET /__sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Calls per route (`GET /v0/agents/{id}`), rejected ones included.
    pub calls: BTreeMap<String, u64>,
    /// Launches per `repository#branch`.
    pub launches: BTreeMap<String, u64>,
    /// Follow-ups accepted per agent.
    pub follow_ups: BTreeMap<String, u64>,
    /// Requests refused because they exceeded a documented quota, per route.
    pub quota_violations: BTreeMap<String, u64>,
    /// Faults injected, per kind.
    pub faults: BTreeMap<String, u64>,
    /// Agents created.
    pub agents: u64,
    /// Webhook deliveries attempted.
    pub webhook_deliveries: u64,
}

impl Stats {
    /// Requests refused for exceeding a quota, over every route.
    pub fn total_quota_violations(&self) -> u64 {
        self.quota_violations.values().sum()
    }
}

/// Sliding windows of call times, one per quota.
#[derive(Debug, Default)]
struct Windows {
    calls: VecDeque<SystemTime>,
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
    /// Launch bodies as received, webhook secrets masked.
    pub launch_bodies: Vec<LaunchRequest>,
    all_calls: Windows,
    repositories_calls: Windows,
    /// Requests left in the current 429 burst.
    pub burst_left: u32,
}

/// Why a request to an agent cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such agent.
    NotFound,
    /// The agent is working; try later.
    Busy,
    /// The agent is in a state that does not allow it.
    NotAllowed(String),
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
            launch_bodies: Vec::new(),
            all_calls: Windows::default(),
            repositories_calls: Windows::default(),
            burst_left: 0,
        }
    }

    /// Admits a call to the overall quota and, for the repositories endpoint, its own.
    pub fn admit(&mut self, repositories: bool, now: SystemTime) -> Result<(), Duration> {
        if repositories {
            let rates = self.config.repositories_quota.clone();
            self.repositories_calls.admit(&rates, now)?;
        }
        if let Some(rate) = self.config.calls_quota {
            self.all_calls.admit(&[rate], now)?;
        }
        Ok(())
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
            self.stats
                .faults
                .entry("agent_error".into())
                .and_modify(|n| *n += 1)
                .or_insert(1);
            Outcome::Error
        } else if draw < self.config.faults.agent_error + self.config.faults.agent_expire {
            self.stats
                .faults
                .entry("agent_expire".into())
                .and_modify(|n| *n += 1)
                .or_insert(1);
            Outcome::Expired
        } else {
            Outcome::Finished
        }
    }

    /// Creates an agent for a valid launch.
    pub fn launch(&mut self, request: LaunchRequest, now: SystemTime) -> Agent {
        self.next += 1;
        let number = self.next;
        let id = AgentId(format!(
            "bc_{:012x}",
            self.rng.random::<u64>() & 0xffff_ffff_ffff
        ));
        let slug: String = first_line(&request.prompt.text)
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
        let requested = request.target.clone().unwrap_or_default();
        let branch = requested.branch_name.clone().unwrap_or_else(|| {
            format!("cursor/{}-{:04x}", slug.trim_matches('-'), number & 0xffff)
        });
        let creating = self.config.creating.div_f64(self.config.speed);
        let work = self.work_time();
        let outcome = self.outcome();
        let agent = SimAgent {
            name: first_line(&request.prompt.text),
            target: AgentTarget {
                branch_name: Some(branch.clone()),
                url: Some(format!("https://cursor.com/agents?id={id}")),
                pr_url: None,
                auto_create_pr: Some(requested.auto_create_pr.unwrap_or(false)),
                open_as_cursor_github_app: Some(
                    requested.open_as_cursor_github_app.unwrap_or(false),
                ),
                skip_reviewer_request: Some(requested.skip_reviewer_request.unwrap_or(false)),
            },
            source: request.source.clone(),
            created: now,
            creating_until: now + creating,
            busy_until: now + creating + work,
            outcome,
            stopped: None,
            pr_number: 1000 + number,
            prompts: vec![(now, request.prompt.text.clone())],
            webhook: request.webhook.clone(),
            notified: None,
            id: id.clone(),
        };
        let key = format!("{}#{branch}", request.source.repository);
        *self.stats.launches.entry(key).or_default() += 1;
        self.stats.agents += 1;
        let mut recorded = request;
        if let Some(webhook) = &mut recorded.webhook {
            webhook.secret = webhook
                .secret
                .as_ref()
                .map(|_| crate::cursor::model::Secret::new("***"));
        }
        self.launch_bodies.push(recorded);
        let view = agent.view(now);
        self.by_id.insert(id, number);
        self.agents.insert(number, agent);
        view
    }

    /// The agent with `id`, unless deleted.
    pub fn agent(&self, id: &AgentId) -> Option<&SimAgent> {
        self.agents.get(self.by_id.get(id)?)
    }

    fn agent_mut(&mut self, id: &AgentId) -> Option<&mut SimAgent> {
        self.agents.get_mut(self.by_id.get(id)?)
    }

    /// Sends a follow-up: a finished agent goes back to work.
    pub fn follow_up(
        &mut self,
        id: &AgentId,
        text: String,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let status = self.agent(id).ok_or(Refusal::NotFound)?.status(now);
        match status {
            AgentStatus::Creating | AgentStatus::Running => return Err(Refusal::Busy),
            AgentStatus::Finished => {}
            other => {
                return Err(Refusal::NotAllowed(format!(
                    "agent is {other}; only a FINISHED agent takes a follow-up"
                )));
            }
        }
        let work = self.work_time();
        let outcome = self.outcome();
        let agent = self.agent_mut(id).expect("checked");
        agent.busy_until = now + work;
        agent.outcome = outcome;
        agent.prompts.push((now, text));
        *self.stats.follow_ups.entry(id.0.clone()).or_default() += 1;
        Ok(())
    }

    /// Stops a working agent.
    pub fn stop(&mut self, id: &AgentId, now: SystemTime) -> Result<(), Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        match agent.status(now) {
            AgentStatus::Creating | AgentStatus::Running => {
                agent.stopped = Some(now);
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

    /// A page of agents, newest first, starting after the agent `cursor` names.
    pub fn page(
        &self,
        limit: usize,
        cursor: Option<&AgentId>,
        now: SystemTime,
    ) -> (Vec<Agent>, Option<String>) {
        let start = match cursor.and_then(|c| self.by_id.get(c)) {
            Some(&number) => number,
            None => u64::MAX,
        };
        let mut page: Vec<&SimAgent> = self
            .agents
            .range(..start)
            .rev()
            .map(|(_, a)| a)
            .take(limit + 1)
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = more.then(|| page.last().map(|a| a.id.0.clone())).flatten();
        (page.into_iter().map(|a| a.view(now)).collect(), next)
    }

    /// Agents whose webhook has not been told their latest FINISHED or ERROR status; marks
    /// them told.
    pub fn due_webhooks(&mut self, now: SystemTime) -> Vec<(Webhook, Agent)> {
        let mut due = Vec::new();
        for agent in self.agents.values_mut() {
            let Some(webhook) = agent.webhook.clone() else {
                continue;
            };
            let status = agent.status(now);
            let notify = matches!(status, AgentStatus::Finished | AgentStatus::Error);
            let news = Some((status, agent.prompts.len()));
            if notify && agent.notified != news {
                agent.notified = news;
                due.push((webhook, agent.view(now)));
            }
        }
        due
    }
}
