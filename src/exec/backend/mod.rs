//! The agent backend: what the executor needs from an API, whatever it is. Each is one
//! implementation (`v0.rs`, `v1.rs`, and `platform.rs` for the LiteLLM Agent Platform);
//! [`AnyBackend`] picks one at run time.

mod platform;
mod v0;
mod v1;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use platform::Platform;
pub use v0::V0;
pub use v1::V1;

use crate::cursor::model::Webhook;
use crate::cursor::model::v1::GitBranch;
use crate::cursor::{AgentId, AgentStatus, ApiError, Client, Outage};
use crate::plan::{AgentOptions, Target};
use crate::spec::{Api, ApiVersion};

/// Agents created this long before an intent still count as its launch: clocks differ.
const CLOCK_SLACK: Duration = Duration::from_secs(600);

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// `https://github.com/owner/name`.
    pub repository: String,
    /// The ref to start from.
    pub git_ref: Option<String>,
    /// The branch to push to.
    pub branch: String,
    /// The rendered prompt.
    pub prompt: String,
    /// The model.
    pub model: Option<String>,
    /// Pull request settings.
    pub target: Target,
    /// Where to post status changes (v0).
    pub webhook: Option<Webhook>,
    /// v1: the deterministic agent id of this attempt (none when `env_vars` forbid it).
    pub agent_id: Option<AgentId>,
    /// v1: the agent's name, unique to the instance and attempt.
    pub name: String,
    /// v1 settings.
    pub options: AgentOptions,
    /// When the launch intent was written: agents created before it are not this launch's.
    pub since: SystemTime,
}

/// Walks pages of agents, newest first, until `visit` says so or agents created before
/// `oldest` (less the clock slack) come. `page` fetches the page after a cursor. Returns the
/// pages read.
async fn sweep<A, Fut>(
    oldest: SystemTime,
    mut page: impl FnMut(Option<String>) -> Fut,
    created: impl Fn(&A) -> Option<SystemTime>,
    mut visit: impl FnMut(A) -> bool,
) -> Result<usize, ApiError>
where
    Fut: Future<Output = Result<(Vec<A>, Option<String>), ApiError>>,
{
    let floor = oldest
        .checked_sub(CLOCK_SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let (agents, next) = page(cursor.take()).await?;
        pages += 1;
        let mut past_floor = false;
        for agent in agents {
            past_floor |= created(&agent).is_some_and(|c| c < floor);
            if visit(agent) {
                return Ok(pages);
            }
        }
        match next {
            Some(next) if !past_floor => cursor = Some(next),
            _ => return Ok(pages),
        }
    }
}

/// The API's limit on agent names.
const MAX_NAME: usize = 100;
/// The longest end of a name: ` #` and a `u32` attempt, ` @` and 8 characters of spec hash.
const MAX_NAME_END: usize = 2 + 10 + 2 + 8;

/// The name of a launch's agent: unique to run, instance, attempt and spec, readable in
/// Cursor's list, at most 100 characters (a long one keeps its start and a hash of the
/// whole). The API echoes it back, so an agent found by id or name is checked against the
/// spec it was launched with: `@` and the spec hash's first 8 characters end it.
pub fn agent_name(run: &str, instance: &str, attempt: u32, spec_hash: &str) -> String {
    let spec: String = spec_hash.chars().take(8).collect();
    format!("{} #{attempt} @{spec}", name_stem(run, instance))
}

/// The part of every agent name of one instance of a run that does not change with the
/// attempt or the spec.
fn name_stem(run: &str, instance: &str) -> String {
    use sha2::Digest as _;
    let name = format!("{run} {instance}");
    if name.chars().count() + MAX_NAME_END <= MAX_NAME {
        return name;
    }
    let hash = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..6]);
    let room = MAX_NAME - MAX_NAME_END - hash.len() - 2;
    let keep: String = name.chars().take(room).collect();
    format!("{keep} ~{hash}")
}

/// The stem, attempt and spec hash prefix of a name [`agent_name`] made.
fn parse_name(name: &str) -> Option<(&str, u32, &str)> {
    let (rest, spec) = name.rsplit_once(" @")?;
    let (stem, attempt) = rest.rsplit_once(" #")?;
    let hex = !spec.is_empty() && spec.chars().all(|c| c.is_ascii_hexdigit());
    Some((stem, attempt.parse().ok()?, spec)).filter(|_| hex)
}

/// One instance of a run new to this state, as recall looks for it.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The instance key.
    pub key: String,
    /// `https://github.com/owner/name`.
    pub repository: String,
    /// The branch of its first attempt (v0).
    pub branch: String,
}

/// The latest launch of an instance that an earlier apply made, found in the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalled {
    /// The attempt it was.
    pub attempt: u32,
    /// Its agent.
    pub id: AgentId,
    /// The start of the spec hash it was launched with, where the API echoes it (v1's
    /// name); `None`: checked against the prompt when it is rendered (v0).
    pub spec: Option<String>,
}

impl Recalled {
    /// Whether it may be the launch of an instance whose spec hash is `spec_hash`.
    pub fn may_be(&self, spec_hash: &str) -> bool {
        self.spec
            .as_ref()
            .is_none_or(|s| spec_hash.starts_with(s.as_str()))
    }
}

/// What recall found: the latest launch of each instance that has one.
pub type Recall = HashMap<String, Recalled>;

/// Keeps `found` in `recall` unless a later attempt of its instance is there already.
fn keep_latest(recall: &mut Recall, key: &str, found: Recalled) {
    match recall.get(key) {
        Some(known) if known.attempt >= found.attempt => {}
        _ => {
            recall.insert(key.to_owned(), found);
        }
    }
}

/// An agent as the executor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    /// Its id.
    pub id: AgentId,
    /// Its status.
    pub status: AgentStatus,
    /// Its branch.
    pub branch: Option<String>,
    /// Its pull request.
    pub pr_url: Option<String>,
    /// Its summary.
    pub summary: Option<String>,
    /// Its page.
    pub url: Option<String>,
    /// v1: how long its run took, once ended.
    pub duration: Option<Duration>,
    /// v1: every branch its run pushed, with pull requests.
    pub branches: Vec<GitBranch>,
}

/// The statuses of several agents; an agent the API no longer has maps to its error.
pub type Statuses = HashMap<AgentId, Result<AgentView, ApiError>>;

/// The operations the executor needs. Each API version implements it; nothing in `exec/`
/// depends on which one is behind it.
pub trait Backend: Send + Sync + 'static {
    /// Launches an agent.
    fn launch(&self, spec: &LaunchSpec)
    -> impl Future<Output = Result<AgentView, ApiError>> + Send;

    /// Whether [`Backend::find_launched`] can find the agent of a launch whose answer was lost.
    /// When it cannot, such a launch is never sent again on its own: that could make a
    /// second paid agent.
    fn finds_launches(&self) -> bool {
        true
    }

    /// The agent an earlier send of `spec` made, if any. A backend whose launches are
    /// idempotent may answer `None`: sending `spec` again then finds the agent itself.
    fn find_launched(
        &self,
        spec: &LaunchSpec,
    ) -> impl Future<Output = Result<Option<AgentView>, ApiError>> + Send;

    /// Whether [`Backend::recall`] can find a run's launches without its records. When it
    /// cannot (the default), a lost state launches the run again.
    fn recalls(&self) -> bool {
        false
    }

    /// The agents earlier applies of `run` launched for `wanted`, found without any record
    /// of them (a lost, pruned or new state): the latest attempt of each, in one sweep of the
    /// agent list.
    fn recall(
        &self,
        _run: &str,
        _wanted: &[Wanted],
    ) -> impl Future<Output = Result<Recall, ApiError>> + Send {
        async { Ok(Recall::new()) }
    }

    /// The agent `id` that recall found, if it is the launch `spec`: checked against its
    /// repository and the identity the API echoes back.
    fn recalled(
        &self,
        _id: &AgentId,
        _spec: &LaunchSpec,
    ) -> impl Future<Output = Result<Option<AgentView>, ApiError>> + Send {
        async { Ok(None) }
    }

    /// The statuses of `ids`, the oldest created around `oldest`, in as few calls as it can.
    fn statuses(
        &self,
        ids: &[AgentId],
        oldest: SystemTime,
    ) -> impl Future<Output = Result<Statuses, ApiError>> + Send;

    /// Sends a follow-up.
    fn follow_up(
        &self,
        id: &AgentId,
        text: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Whether the agent received `text` as its follow-up number `sent_before + 1`.
    fn follow_up_received(
        &self,
        id: &AgentId,
        text: &str,
        sent_before: u32,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;

    /// Whether the agent's conversation shows an answer to its prompt number `prompt` (1 is
    /// the launch's, 2 the first follow-up's); `None` where the API keeps no conversation to
    /// tell it by.
    fn answered(
        &self,
        id: &AgentId,
        prompt: u32,
    ) -> impl Future<Output = Result<Option<bool>, ApiError>> + Send {
        let _ = (id, prompt);
        async { Ok(None) }
    }

    /// Stops an agent.
    fn stop(&self, id: &AgentId) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Tokens the agent used, where the API tells.
    fn tokens(&self, id: &AgentId) -> impl Future<Output = Result<Option<u64>, ApiError>> + Send;

    /// Signalled when the backend learns, without a call, that a status changed (a run's
    /// event stream said so): the poller reads statuses then instead of at its next tick.
    fn news(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// The pace the API's budget allows, once the server has said: reads keep to it.
    fn pace(&self) -> Option<crate::cursor::Pace> {
        None
    }

    /// Whether reading every agent waited on costs no more calls than reading one (one list
    /// page holds them all): then a read that is due takes them all along.
    fn reads_together(&self) -> bool {
        false
    }

    /// How long the API has been out of reach, if it is now.
    fn outage(&self) -> Option<Outage> {
        None
    }
}

/// The backend a run uses, chosen at run time.
#[derive(Debug)]
pub enum AnyBackend {
    /// Cursor API v0.
    V0(V0),
    /// Cursor API v1.
    V1(V1),
    /// The LiteLLM Agent Platform.
    Platform(Platform),
}

impl AnyBackend {
    /// The backend of `api` over `client` (which must point at that API).
    pub fn new(api: &Api, client: Client) -> Self {
        match api {
            Api::Cursor(ApiVersion::V0) => AnyBackend::V0(V0::new(client)),
            Api::Cursor(ApiVersion::V1) => AnyBackend::V1(V1::new(client)),
            Api::Platform(platform) => {
                AnyBackend::Platform(Platform::new(client, platform.agent_id.clone()))
            }
        }
    }
}

/// Forwards each call to the chosen backend.
macro_rules! forward {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            AnyBackend::V0($backend) => $call.await,
            AnyBackend::V1($backend) => $call.await,
            AnyBackend::Platform($backend) => $call.await,
        }
    };
}

impl Backend for AnyBackend {
    fn pace(&self) -> Option<crate::cursor::Pace> {
        match self {
            AnyBackend::V0(b) => b.pace(),
            AnyBackend::V1(b) => b.pace(),
            AnyBackend::Platform(b) => b.pace(),
        }
    }

    fn news(&self) -> Option<Arc<tokio::sync::Notify>> {
        match self {
            AnyBackend::V0(b) => b.news(),
            AnyBackend::V1(b) => b.news(),
            AnyBackend::Platform(b) => b.news(),
        }
    }

    fn reads_together(&self) -> bool {
        match self {
            AnyBackend::V0(b) => b.reads_together(),
            AnyBackend::V1(b) => b.reads_together(),
            AnyBackend::Platform(b) => b.reads_together(),
        }
    }

    fn outage(&self) -> Option<Outage> {
        match self {
            AnyBackend::V0(b) => b.outage(),
            AnyBackend::V1(b) => b.outage(),
            AnyBackend::Platform(b) => b.outage(),
        }
    }

    fn finds_launches(&self) -> bool {
        match self {
            AnyBackend::V0(b) => b.finds_launches(),
            AnyBackend::V1(b) => b.finds_launches(),
            AnyBackend::Platform(b) => b.finds_launches(),
        }
    }

    fn recalls(&self) -> bool {
        match self {
            AnyBackend::V0(b) => b.recalls(),
            AnyBackend::V1(b) => b.recalls(),
            AnyBackend::Platform(b) => b.recalls(),
        }
    }

    async fn recall(&self, run: &str, wanted: &[Wanted]) -> Result<Recall, ApiError> {
        forward!(self, b => b.recall(run, wanted))
    }

    async fn recalled(
        &self,
        id: &AgentId,
        spec: &LaunchSpec,
    ) -> Result<Option<AgentView>, ApiError> {
        forward!(self, b => b.recalled(id, spec))
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, ApiError> {
        forward!(self, b => b.launch(spec))
    }

    async fn find_launched(&self, spec: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        forward!(self, b => b.find_launched(spec))
    }

    async fn statuses(&self, ids: &[AgentId], oldest: SystemTime) -> Result<Statuses, ApiError> {
        forward!(self, b => b.statuses(ids, oldest))
    }

    async fn follow_up(&self, id: &AgentId, text: &str) -> Result<(), ApiError> {
        forward!(self, b => b.follow_up(id, text))
    }

    async fn follow_up_received(
        &self,
        id: &AgentId,
        text: &str,
        sent_before: u32,
    ) -> Result<bool, ApiError> {
        forward!(self, b => b.follow_up_received(id, text, sent_before))
    }

    async fn stop(&self, id: &AgentId) -> Result<(), ApiError> {
        forward!(self, b => b.stop(id))
    }

    async fn tokens(&self, id: &AgentId) -> Result<Option<u64>, ApiError> {
        forward!(self, b => b.tokens(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_unique_and_short() {
        assert_eq!(
            agent_name("sweep/default", "bump[acme/api]", 2, "0123456789abcdef"),
            "sweep/default bump[acme/api] #2 @01234567"
        );
        let long = "x".repeat(120);
        let (a, b) = (
            agent_name("r", &long, 1, "aa"),
            agent_name("r", &format!("{long}y"), 1, "aa"),
        );
        assert!(a.chars().count() <= 100 && b.chars().count() <= 100, "{a}");
        assert!(a.ends_with(" #1 @aa"), "{a}");
        assert_ne!(a, b);
        assert_ne!(a, agent_name("r", &long, 2, "aa"));
        assert_ne!(a, agent_name("r", &long, 1, "bb"));
    }

    #[test]
    fn a_name_gives_back_its_stem_attempt_and_spec() {
        let long = "x".repeat(120);
        for instance in ["bump[acme/api]", long.as_str()] {
            let name = agent_name("sweep/default", instance, 12, "0123456789abcdef");
            assert_eq!(
                parse_name(&name),
                Some((
                    name_stem("sweep/default", instance).as_str(),
                    12,
                    "01234567"
                ))
            );
            assert!(
                agent_name("r", instance, u32::MAX, "0123456789")
                    .chars()
                    .count()
                    <= 100
            );
        }
        assert_eq!(parse_name("hand-made agent"), None);
        assert_eq!(
            parse_name("fix #12 @ bugs"),
            None,
            "no spec hash after ` @`"
        );
        assert_eq!(parse_name("fix #a @0123"), None, "no attempt after ` #`");
    }

    #[test]
    fn recall_keeps_the_latest_attempt_and_checks_spec_prefixes() {
        let found = |attempt, spec: Option<&str>| Recalled {
            attempt,
            id: AgentId(format!("bc-{attempt}")),
            spec: spec.map(str::to_owned),
        };
        let mut recall = Recall::new();
        for attempt in [2, 3, 1] {
            keep_latest(&mut recall, "k", found(attempt, Some("abcd")));
        }
        assert_eq!(recall["k"].attempt, 3);
        assert!(recall["k"].may_be("abcdef12"));
        assert!(!recall["k"].may_be("abce0000"));
        assert!(found(1, None).may_be("anything"), "checked by prompt later");
    }
}
