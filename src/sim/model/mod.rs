//! What the simulator remembers: agents and their timelines, quota windows, statistics.
//! The API views (`v0/`, `v1/`, `platform/`) read and change it through `SimState`.

mod agent;
mod quota;
mod stats;
mod timeline;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

pub use agent::{SimAgent, first_line, result_of, rfc3339};
pub use quota::{QuotaRefusal, Windows};
pub use stats::{Launch, Stats};
pub use timeline::{Outcome, SimRun};

use super::SimConfig;
use crate::cursor::model::v1::AgentRunId as RunId;
use crate::cursor::model::{AgentId, AgentTarget, Source, Webhook};

/// Which API made an agent: it decides the shape of ids and what the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `/v0`.
    V0,
    /// `/v1`.
    V1,
    /// The LiteLLM Agent Platform's `/session` (`cursor` runtime).
    Platform,
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
    pub api: Origin,
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
            .flat_map(|run| [(run.started(), 1), (run.end(), -1)])
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
        Stats::bump(&mut self.stats.errors, code);
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
            Stats::bump(&mut self.stats.faults, "agent_error");
            Outcome::Error
        } else if draw < self.config.faults.agent_error + self.config.faults.agent_expire {
            Stats::bump(&mut self.stats.faults, "agent_expire");
            Outcome::Expired
        } else {
            Outcome::Finished
        }
    }

    fn uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    pub(in crate::sim) fn new_run(
        &mut self,
        prompt: String,
        now: SystemTime,
        creating: Duration,
    ) -> SimRun {
        let id = RunId(format!("run-{}", self.uuid()));
        let work = self.work_time();
        let outcome = self.outcome();
        SimRun::new(id, prompt, now, creating, work, outcome)
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
        if new.api == Origin::V1 && self.over_usage_limit() {
            return Err(Refusal::UsageLimit);
        }
        self.next += 1;
        let number = self.next;
        let id = match (new.id, new.api) {
            (Some(id), _) => id,
            (None, Origin::V1) => AgentId(format!("bc-{}", self.uuid())),
            (None, Origin::Platform) => AgentId(format!("sess_{}", self.uuid().simple())),
            (None, Origin::V0) => AgentId(format!(
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
            Origin::V0 => format!("{}#{branch}", new.source.repository),
            Origin::V1 => format!("{}#{name}", new.source.repository),
            // A session has neither branch nor name: its repository and prompt tell it.
            Origin::Platform => format!("{}#{}", new.source.repository, new.prompt),
        };
        Stats::bump(&mut self.stats.launches, key);
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

    /// The agent with `id`, unless deleted.
    pub fn agent(&self, id: &AgentId) -> Option<&SimAgent> {
        self.agents.get(self.by_id.get(id)?)
    }

    /// Every agent, in creation order, to change.
    pub(in crate::sim) fn agents_mut(&mut self) -> impl Iterator<Item = &mut SimAgent> {
        self.agents.values_mut()
    }

    pub(in crate::sim) fn agent_mut(&mut self, id: &AgentId) -> Option<&mut SimAgent> {
        self.agents.get_mut(self.by_id.get(id)?)
    }

    pub(in crate::sim) fn add_run(&mut self, id: &AgentId, text: String, now: SystemTime) -> RunId {
        let run = self.new_run(text, now, Duration::ZERO);
        let run_id = run.id().clone();
        self.agent_mut(id).expect("checked").runs.push(run);
        Stats::bump(&mut self.stats.follow_ups, id.0.clone());
        run_id
    }

    /// Deletes an agent for good.
    pub fn delete(&mut self, id: &AgentId) -> Result<(), Refusal> {
        let number = self.by_id.remove(id).ok_or(Refusal::NotFound)?;
        self.agents.remove(&number);
        Ok(())
    }

    /// Agents newest first, starting after the agent `cursor` names: up to `limit`, and
    /// whether more follow.
    pub(in crate::sim) fn newest(
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
}

/// What the model's and the views' unit tests set up.
#[cfg(test)]
pub(in crate::sim) mod testing {
    use super::*;

    /// A launch of `repo` through `api`, with a client-chosen `id` if given.
    pub(in crate::sim) fn new_agent(api: Origin, id: Option<&str>, repo: &str) -> NewAgent {
        NewAgent {
            api,
            id: id.map(|id| AgentId(id.to_owned())),
            name: Some(format!("{repo} #1")),
            source: Source {
                repository: format!("https://github.com/acme/{repo}"),
                git_ref: None,
            },
            branch: None,
            auto_create_pr: true,
            open_as_cursor_github_app: false,
            skip_reviewer_request: false,
            existing_pr: None,
            prompt: "Bump it".into(),
            model: None,
            webhook: None,
            body: serde_json::Value::Null,
        }
    }

    /// A state whose agents create for 1 s and work 10 s, in real time.
    pub(in crate::sim) fn state() -> SimState {
        SimState::new(SimConfig {
            speed: 1.0,
            creating: Duration::from_secs(1),
            agent_duration: (Duration::from_secs(10), Duration::from_secs(10)),
            ..SimConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::state;
    use super::*;

    fn new_agent(id: Option<&str>, repo: &str) -> NewAgent {
        super::testing::new_agent(Origin::V1, id, repo)
    }

    #[test]
    fn a_client_chosen_id_makes_one_agent_and_a_resend_is_refused() {
        let mut state = state();
        let now = SystemTime::now();
        let id = state.create(new_agent(Some("bc-1"), "api"), now).unwrap();
        assert_eq!(id.0, "bc-1");
        assert_eq!(
            state.create(new_agent(Some("bc-1"), "api"), now),
            Err(Refusal::IdConflict)
        );
        assert_eq!(state.stats.agents, 1);
        assert_eq!(state.stats.launches.values().sum::<u64>(), 1);
    }

    #[test]
    fn the_peak_counts_agents_working_at_the_same_time() {
        let mut state = state();
        let start = SystemTime::now();
        state.create(new_agent(None, "a"), start).unwrap();
        state
            .create(new_agent(None, "b"), start + Duration::from_secs(5))
            .unwrap();
        // Starts after both ended (11 s of work each).
        state
            .create(new_agent(None, "c"), start + Duration::from_secs(30))
            .unwrap();
        assert_eq!(state.peak_working(), 2);
    }
}
