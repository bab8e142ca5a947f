//! What the store keeps: runs, instances, events, cache entries. Each record is JSON with its
//! format version in `"v"`, so a later release can read it and this one can refuse a newer.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The record format this release writes and the newest it reads.
pub const RECORD_VERSION: u32 = 1;

/// A point in time, as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// As a `SystemTime`.
    pub fn time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// RFC 3339, to the second.
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_seconds(self.time()).to_string()
    }

    /// Time since this moment (zero if it is in the future).
    pub fn elapsed(self) -> Duration {
        SystemTime::now()
            .duration_since(self.time())
            .unwrap_or_default()
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Self(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// An apply is working on it, or was killed while it was.
    Running,
    /// Every instance succeeded.
    Succeeded,
    /// Every instance settled, some not successfully.
    Failed,
    /// Stopped by Ctrl-C; `apply` continues it.
    Interrupted,
    /// Cancelled: its agents were stopped.
    Cancelled,
}

impl RunState {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
            RunState::Cancelled => "cancelled",
        }
    }
}

/// One run of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `workflow/key`.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The run key.
    pub key: String,
    /// The workflow file as given to the first apply.
    pub file: String,
    /// The workflow's text at the last apply, so `retry` and `status` need no file.
    pub source: String,
    /// Where it is.
    pub state: RunState,
    /// Whether it ran against the in-process simulator.
    #[serde(default)]
    pub simulated: bool,
    /// Where its agents live: a Cursor API version or an Agent Platform (absent in records
    /// from before v1: v0).
    #[serde(default = "legacy_api")]
    pub api: crate::spec::Api,
    /// When the first apply started; `run.date` comes from it on every re-apply.
    pub started_at: Timestamp,
    /// When it last settled.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
}

fn legacy_api() -> crate::spec::Api {
    crate::spec::Api::Cursor(crate::spec::ApiVersion::V0)
}

/// Where an instance is (DESIGN.md section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(usize)] // indexes `Counts`, in the order of `ALL`
pub enum InstanceState {
    /// Waiting for its needs or a free slot.
    Pending,
    /// Will not run: a need did not end as its `if` requires.
    Blocked,
    /// Its launch is in flight.
    Launching,
    /// Its agent works on the prompt.
    Running,
    /// Its agent works on a follow-up.
    FollowingUp,
    /// Done, every follow-up sent.
    Succeeded,
    /// Its agent ended in ERROR or EXPIRED, or the API refused it, with no retry left.
    Failed,
    /// It ran longer than its timeout (its agent was stopped), with no retry left.
    TimedOut,
    /// Cancelled by the user; its agent was stopped.
    Cancelled,
    /// Not run because the run was cancelled first.
    Skipped,
}

impl InstanceState {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Blocked => "blocked",
            InstanceState::Launching => "launching",
            InstanceState::Running => "running",
            InstanceState::FollowingUp => "following_up",
            InstanceState::Succeeded => "succeeded",
            InstanceState::Failed => "failed",
            InstanceState::TimedOut => "timed_out",
            InstanceState::Cancelled => "cancelled",
            InstanceState::Skipped => "skipped",
        }
    }

    /// Whether the instance will not change again in this run (unless relaunched).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            InstanceState::Blocked
                | InstanceState::Succeeded
                | InstanceState::Failed
                | InstanceState::TimedOut
                | InstanceState::Cancelled
                | InstanceState::Skipped
        )
    }

    /// Whether an agent of it may be working now.
    pub fn has_live_agent(self) -> bool {
        matches!(
            self,
            InstanceState::Launching | InstanceState::Running | InstanceState::FollowingUp
        )
    }

    /// All states, for counts.
    pub const ALL: [InstanceState; 10] = [
        InstanceState::Pending,
        InstanceState::Blocked,
        InstanceState::Launching,
        InstanceState::Running,
        InstanceState::FollowingUp,
        InstanceState::Succeeded,
        InstanceState::Failed,
        InstanceState::TimedOut,
        InstanceState::Cancelled,
        InstanceState::Skipped,
    ];
}

/// Written and flushed before a launch call, so that a crash between the call and its
/// answer leaves a trace to reconcile from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchIntent {
    /// The attempt this launch is.
    pub attempt: u32,
    /// When the intent was written (agents created before it are not this launch's).
    pub at: Timestamp,
    /// The repository URL.
    pub repository: String,
    /// The branch, unique to this instance and attempt (v0; empty on v1).
    pub branch: String,
    /// v1: the agent id sent with the launch, so a resend is refused instead of duplicated.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// v1: the agent's name, unique to this instance and attempt (found by it when there is
    /// no agent id).
    #[serde(default)]
    pub name: Option<String>,
}

/// Written and flushed before a follow-up call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpIntent {
    /// Which follow-up (0-based).
    pub index: u32,
    /// The rendered text sent.
    pub text: String,
    /// When.
    pub at: Timestamp,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1, 2, ...
    pub number: u32,
    /// Its agent.
    pub agent_id: Option<String>,
    /// `succeeded`, `error`, `expired`, `timed_out`, `failed: ...`.
    pub outcome: String,
    /// When it ended.
    pub at: Timestamp,
}

/// One task instance of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `task[owner/name]`.
    pub key: String,
    /// Its task.
    pub task: String,
    /// Its repository URL.
    pub repository: String,
    /// Where it is.
    pub state: InstanceState,
    /// Hash of the resolved spec it last ran with.
    pub spec_hash: String,
    /// The attempt number of the current agent, over the instance's life (0 before the first
    /// launch); every attempt has its own branch.
    pub attempt: u32,
    /// Launches made for the current spec: retries are counted against it.
    #[serde(default)]
    pub tries: u32,
    /// Ended attempts.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// The launch in flight or done for the current attempt.
    #[serde(default)]
    pub launch: Option<LaunchIntent>,
    /// The current attempt's agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The branch the current attempt pushes to.
    pub branch: String,
    /// The last status the API reported.
    #[serde(default)]
    pub status: Option<String>,
    /// The agent's summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// The pull request.
    #[serde(default)]
    pub pr_url: Option<String>,
    /// The agent's page.
    #[serde(default)]
    pub url: Option<String>,
    /// Follow-ups dealt with (sent, or skipped by their `if`).
    #[serde(default)]
    pub follow_ups_done: u32,
    /// Follow-ups sent to the current agent.
    #[serde(default)]
    pub follow_ups_sent: u32,
    /// The follow-up in flight.
    #[serde(default)]
    pub follow_up: Option<FollowUpIntent>,
    /// Its agent was found, not launched, by this record (a lost answer, a lost state): the
    /// follow-ups it may have had already are confirmed against it before any is sent.
    #[serde(default)]
    pub adopted: bool,
    /// When the last follow-up was accepted.
    #[serde(default)]
    pub follow_up_sent_at: Option<Timestamp>,
    /// When the current attempt's agent was launched.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it settled.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// Why it failed, in words.
    #[serde(default)]
    pub error: Option<String>,
    /// v1: how long the agent's last run took.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// v1: the branch and pull request per repository the agent pushed.
    #[serde(default)]
    pub branches: Vec<BranchOutput>,
    /// v1: tokens the agent used.
    #[serde(default)]
    pub tokens: Option<u64>,
}

/// A branch an agent pushed, and its pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchOutput {
    /// The repository, as the API names it.
    pub repository: String,
    /// The branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// The pull request.
    #[serde(default)]
    pub pr_url: Option<String>,
}

impl InstanceRecord {
    /// How long the current agent has worked: until it settled, or until now.
    pub fn elapsed(&self) -> Option<Duration> {
        let start = self.started_at?;
        let end = self
            .finished_at
            .map_or_else(SystemTime::now, Timestamp::time);
        end.duration_since(start.time()).ok()
    }

    /// Tokens used, for people: `12.3k`, or `-` where the API does not tell.
    pub fn tokens_text(&self) -> String {
        match self.tokens {
            None => "-".to_owned(),
            Some(n) if n < 1000 => n.to_string(),
            #[allow(clippy::cast_precision_loss)] // a display rounded to 0.1k
            Some(n) => format!("{:.1}k", n as f64 / 1000.0),
        }
    }

    /// A fresh, pending instance.
    pub fn pending(key: &str, task: &str, repository: &str, branch: &str, spec_hash: &str) -> Self {
        Self {
            key: key.to_owned(),
            task: task.to_owned(),
            repository: repository.to_owned(),
            state: InstanceState::Pending,
            spec_hash: spec_hash.to_owned(),
            attempt: 0,
            tries: 0,
            attempts: Vec::new(),
            launch: None,
            agent_id: None,
            branch: branch.to_owned(),
            status: None,
            summary: None,
            pr_url: None,
            url: None,
            follow_ups_done: 0,
            follow_ups_sent: 0,
            follow_up: None,
            adopted: false,
            follow_up_sent_at: None,
            started_at: None,
            finished_at: None,
            error: None,
            duration_ms: None,
            branches: Vec::new(),
            tokens: None,
        }
    }

    /// Starts the attempt `intent` describes: what the previous agent reported is dropped, and
    /// the instance is launching until the call answers. The caller flushes it before the call.
    pub fn begin_attempt(&mut self, intent: LaunchIntent) {
        debug_assert_eq!(
            intent.attempt,
            self.attempt + 1,
            "attempts are numbered in turn"
        );
        self.attempt = intent.attempt;
        self.tries += 1;
        self.branch.clone_from(&intent.branch);
        self.launch = Some(intent);
        self.state = InstanceState::Launching;
        self.agent_id = None;
        (self.status, self.summary, self.pr_url, self.url) = (None, None, None, None);
        (self.follow_ups_done, self.follow_ups_sent) = (0, 0);
        (self.follow_up, self.follow_up_sent_at) = (None, None);
        self.adopted = false;
        self.started_at = None;
        (self.duration_ms, self.tokens) = (None, None);
        self.branches.clear();
    }

    /// Numbers the next attempt after `attempt`: earlier applies, whose records were lost,
    /// launched the ones up to it.
    pub fn skip_to(&mut self, attempt: u32) {
        self.attempt = self.attempt.max(attempt);
    }

    /// The current attempt's agent is known: it works on the prompt.
    pub fn running(&mut self, agent: &str, status: String, url: Option<String>) {
        self.agent_id = Some(agent.to_owned());
        self.status = Some(status);
        self.url = url;
        self.state = InstanceState::Running;
        self.started_at = Some(Timestamp::now());
    }

    /// Closes the current attempt in the history with `outcome` (`succeeded`, or why not).
    pub fn end_attempt(&mut self, outcome: impl Into<String>) {
        self.attempts.push(Attempt {
            number: self.attempt,
            agent_id: self.agent_id.clone(),
            outcome: outcome.into(),
            at: Timestamp::now(),
        });
    }

    /// Settles the instance in `state` now.
    pub fn settle(&mut self, state: InstanceState) {
        debug_assert!(state.is_settled(), "{state:?} is not a settled state");
        self.state = state;
        self.finished_at = Some(Timestamp::now());
    }

    /// Settles the instance in `state` (failed, timed out) with `why` as its error.
    pub fn fail(&mut self, state: InstanceState, why: &str) {
        self.error = Some(why.to_owned());
        self.settle(state);
    }
}

/// How many instances are in each state, counted once for every view that shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([usize; InstanceState::ALL.len()]);

impl Counts {
    /// The counts of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a InstanceRecord>) -> Self {
        let mut counts = Self::default();
        for record in records {
            counts.add(record.state);
        }
        counts
    }

    /// One more instance in `state`.
    pub fn add(&mut self, state: InstanceState) {
        self.0[state as usize] += 1;
    }

    /// An instance moved from `from` to `to`.
    pub fn moved(&mut self, from: InstanceState, to: InstanceState) {
        self.0[from as usize] = self.0[from as usize].saturating_sub(1);
        self.0[to as usize] += 1;
    }

    /// Instances in `state`.
    pub fn get(&self, state: InstanceState) -> usize {
        self.0[state as usize]
    }

    /// Instances in all.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// Instances that will not change again in this run.
    pub fn settled(&self) -> usize {
        self.matching(InstanceState::is_settled)
    }

    /// Instances whose agent may be working.
    pub fn live(&self) -> usize {
        self.matching(InstanceState::has_live_agent)
    }

    fn matching(&self, which: fn(InstanceState) -> bool) -> usize {
        InstanceState::ALL
            .into_iter()
            .filter(|s| which(*s))
            .map(|s| self.get(s))
            .sum()
    }

    /// The non-zero counts with their state, in lifecycle order.
    pub fn nonzero(&self) -> impl Iterator<Item = (InstanceState, usize)> + '_ {
        InstanceState::ALL
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|(_, n)| *n > 0)
    }
}

/// `{"running": 3, "succeeded": 2}`: the non-zero counts by state word.
impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        for (state, n) in self.nonzero() {
            map.serialize_entry(state.as_str(), &n)?;
        }
        map.end()
    }
}

/// `3 running, 1 pending, 2 succeeded`.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .nonzero()
            .map(|(state, n)| format!("{n} {}", state.as_str()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// One line of a run's append-only log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// The instance it is about, if any.
    #[serde(default)]
    pub instance: Option<String>,
    /// What happened, as a short word (`launch_intent`, `launched`, `relaunch`, ...).
    pub kind: String,
    /// Details for people.
    #[serde(default)]
    pub detail: String,
}

impl Event {
    /// An event about `instance`.
    pub fn instance(instance: &str, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            at: Timestamp::now(),
            instance: Some(instance.to_owned()),
            kind: kind.to_owned(),
            detail: detail.into(),
        }
    }

    /// An event about the run.
    pub fn run(kind: &str, detail: impl Into<String>) -> Self {
        Self {
            at: Timestamp::now(),
            instance: None,
            kind: kind.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A calls-per-minute limit an API named in a 429, remembered so that the next run against
/// it keeps to the limit from its first call instead of finding it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedLimit {
    /// The API root it was learned from: another API (a proxy, another region) has its own.
    pub api: String,
    /// Calls per minute.
    pub calls_per_minute: u32,
    /// When it was learned.
    pub at: Timestamp,
}

impl LearnedLimit {
    /// How long a learned limit is believed: team limits change with plans, and a limit that
    /// rose is never named again by a 429.
    pub const BELIEVED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    /// The limit, if it was learned from `api` recently enough to start from.
    pub fn for_api(&self, api: &str, now: Timestamp) -> Option<u32> {
        let age = std::time::Duration::from_millis(now.0.saturating_sub(self.at.0));
        (self.api == api && age < Self::BELIEVED).then_some(self.calls_per_minute)
    }
}

/// The cached repository list of the API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryCache {
    /// When it was fetched.
    pub fetched_at: Timestamp,
    /// `https://github.com/owner/name` of each repository.
    pub repositories: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(attempt: u32) -> LaunchIntent {
        LaunchIntent {
            attempt,
            at: Timestamp(1),
            repository: "https://github.com/acme/api".into(),
            branch: format!("b-{attempt}"),
            agent_id: None,
            name: None,
        }
    }

    #[test]
    fn a_new_attempt_forgets_what_the_last_agent_reported_but_not_the_history() {
        let mut record = InstanceRecord::pending("t[acme/api]", "t", "r", "b", "h");
        record.begin_attempt(intent(1));
        record.running(
            "bc-1",
            "FINISHED".into(),
            Some("https://cursor.com/a".into()),
        );
        (record.summary, record.pr_url, record.follow_ups_done) =
            (Some("s".into()), Some("p".into()), 2);
        record.end_attempt("the agent ended in ERROR");
        record.begin_attempt(intent(2));
        assert_eq!(
            (record.attempt, record.tries, record.branch.as_str()),
            (2, 2, "b-2")
        );
        assert_eq!(record.state, InstanceState::Launching);
        assert_eq!(
            (
                record.agent_id.as_ref(),
                record.summary.as_ref(),
                record.pr_url.as_ref()
            ),
            (None, None, None)
        );
        assert_eq!(record.follow_ups_done, 0);
        assert_eq!(record.attempts.len(), 1);
        assert_eq!(record.attempts[0].agent_id.as_deref(), Some("bc-1"));
    }

    #[test]
    fn counts_follow_moves_and_say_only_what_is_there() {
        for (i, state) in InstanceState::ALL.into_iter().enumerate() {
            assert_eq!(state as usize, i, "ALL is in declaration order");
        }
        let mut records = vec![InstanceRecord::pending("a", "t", "r", "b", "h"); 3];
        records[0].state = InstanceState::Running;
        records[1].fail(InstanceState::Failed, "why");
        let mut counts = Counts::of(&records);
        assert_eq!(counts.to_string(), "1 pending, 1 running, 1 failed");
        assert_eq!((counts.total(), counts.settled(), counts.live()), (3, 1, 1));
        counts.moved(InstanceState::Running, InstanceState::Succeeded);
        assert_eq!(counts.to_string(), "1 pending, 1 succeeded, 1 failed");
        assert_eq!(records[1].error.as_deref(), Some("why"));
        assert!(records[1].finished_at.is_some());
    }

    #[test]
    fn a_learned_limit_is_believed_for_its_api_for_a_day() {
        let limit = LearnedLimit {
            api: "https://api.cursor.com/".into(),
            calls_per_minute: 30,
            at: Timestamp(1_000),
        };
        let hour = Timestamp(1_000 + 3_600_000);
        assert_eq!(limit.for_api("https://api.cursor.com/", hour), Some(30));
        assert_eq!(limit.for_api("http://proxy:4000/cursor", hour), None);
        let later = Timestamp(1_000 + 25 * 3_600_000);
        assert_eq!(limit.for_api("https://api.cursor.com/", later), None);
    }
}
