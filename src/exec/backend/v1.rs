//! The v1 backend: a durable agent with one run per prompt. The executor's "agent status" is
//! the status of the agent's current run. Launches carry a deterministic `agentId`, so a resend
//! is refused with `agent_id_conflict` rather than duplicated; without one (a task with
//! `env_vars`) a launch is found again by its unique name.
//!
//! Statuses come from the runs, never from an agent's `updatedAt` (nothing says it moves with
//! a run). Each followed run's event stream is read in the background, up to
//! [`MAX_STREAMS`] at once: a poll costs no call while a stream tells, and its `result` event
//! carries what a read of the ended run would (text, duration, branches). A prompt costs two
//! calls, the launch (or the follow-up) and the stream, and a third, a read, only when the
//! stream ended without a result. A run without a stream (over the bound, or its stream
//! expired or unusable) is read with `GET` at each poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use super::{
    AgentView, Backend, CLOCK_SLACK, LaunchSpec, Recall, Recalled, Statuses, Wanted, keep_latest,
    name_stem, parse_name,
};
use crate::cursor::model::v1::{
    Agent, AgentRunId, CreateAgentRequest, ModelParam, ModelSpec, RepoSpec, Run, RunEvent,
    RunResult,
};
use crate::cursor::model::{AgentStatus, Prompt, Secret};
use crate::cursor::{AgentId, ApiError, Client, MAX_PAGE};

/// Most run streams open at once; runs beyond are read with `GET` at each poll. Generous:
/// an open stream costs a connection (or an HTTP/2 stream) and no calls, a `GET` costs a call
/// per poll; the concurrency cap keeps the number of running agents near this at most.
pub const MAX_STREAMS: usize = 512;
/// A stream silent this long (the API sends heartbeats) is taken as broken.
const SILENCE: Duration = Duration::from_secs(60);
/// The first wait before reconnecting a broken stream; doubled up to [`MAX_RECONNECT`].
const FIRST_RECONNECT: Duration = Duration::from_millis(50);
const MAX_RECONNECT: Duration = Duration::from_secs(10);
/// Broken connections in a row after which a stream is given up for `GET`s.
const MAX_BREAKS: u32 = 8;

/// What a run's stream has told so far: a reducer over its events.
#[derive(Debug, Default, Clone, PartialEq)]
struct Told {
    /// The id of the last numbered event: a reconnect continues after it.
    last_event: Option<String>,
    /// The run's status, as last told.
    status: Option<AgentStatus>,
    /// The run ended (a terminal status, `result`, `error` or `done`).
    ended: bool,
    /// Its outputs, from the `result` event; without, the ended run is read once.
    result: Option<RunResult>,
    /// The stream cannot tell more (expired, gone, refused, broken too often): read the run.
    unusable: bool,
}

impl Told {
    fn read(&mut self, id: Option<String>, event: &RunEvent) {
        if id.is_some() {
            self.last_event = id;
        }
        match event {
            RunEvent::Status(status) => {
                self.ended |= status.is_terminal();
                self.status = Some(status.clone());
            }
            RunEvent::Result(result) => {
                self.ended = true;
                self.status = Some(result.status.clone());
                self.result = Some(result.clone());
            }
            RunEvent::Error(_) | RunEvent::Done => self.ended = true,
            RunEvent::Other => {}
        }
    }

    /// What an answer that opened no stream means: try again later (throttled, a passing
    /// fault, `stream_unavailable` just after a start), or read the run instead.
    fn refused(&mut self, error: &ApiError) -> Retry {
        if error.is_retryable() {
            Retry::Later
        } else {
            // 410 `stream_expired`, 404, 401/403, 400: the stream will not tell; `GET` will.
            self.unusable = true;
            Retry::Never
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Retry {
    Later,
    Never,
}

/// What the backend knows of an agent it watches.
#[derive(Debug, Default)]
struct Known {
    /// The run the executor waits on.
    run: Option<AgentRunId>,
    /// What that run's stream told.
    told: Arc<Mutex<Told>>,
    /// The reader of that stream, while one runs.
    reader: Option<JoinHandle<()>>,
    /// The run's view once it ended and was read: it holds from then on.
    ended: Option<AgentView>,
    /// The agent's page.
    url: Option<String>,
}

/// The v1 API.
#[derive(Debug)]
pub struct V1 {
    client: Client,
    known: Mutex<HashMap<AgentId, Known>>,
    /// Places for open streams.
    streams: Arc<Semaphore>,
    /// Told when a stream reports a change.
    news: Arc<Notify>,
}

impl Drop for V1 {
    fn drop(&mut self) {
        for known in self.known.lock().expect("not poisoned").values_mut() {
            if let Some(reader) = known.reader.take() {
                reader.abort();
            }
        }
    }
}

impl V1 {
    /// A backend over `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: Mutex::default(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            news: Arc::new(Notify::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Known>> {
        self.known.lock().expect("not poisoned")
    }

    /// Follows `run` of `id` from now on (a launch, a follow-up, or a resume).
    fn follow(&self, id: &AgentId, run: AgentRunId) {
        let mut known = self.known();
        let entry = known.entry(id.clone()).or_default();
        if entry.run.as_ref() != Some(&run) {
            if let Some(reader) = entry.reader.take() {
                reader.abort();
            }
            entry.run = Some(run);
            entry.told = Arc::default();
            entry.ended = None;
        }
    }

    /// Makes sure the followed run's stream is read, if a place is free and it can tell.
    fn watch(&self, id: &AgentId) {
        let mut known = self.known();
        let Some(entry) = known.get_mut(id) else {
            return;
        };
        let Some(run) = entry.run.clone() else { return };
        let reading = entry.reader.as_ref().is_some_and(|r| !r.is_finished());
        let done = {
            let told = entry.told.lock().expect("not poisoned");
            told.ended || told.unusable
        };
        if reading || done || entry.ended.is_some() {
            return;
        }
        let Ok(place) = self.streams.clone().try_acquire_owned() else {
            return; // Every place is taken: this run is read with `GET`.
        };
        let task = read_stream(
            self.client.clone(),
            id.clone(),
            run,
            entry.told.clone(),
            self.news.clone(),
        );
        entry.reader = Some(tokio::spawn(async move {
            task.await;
            drop(place);
        }));
    }

    /// The run the executor waits on: the one followed, else the agent's latest.
    async fn current_run(&self, id: &AgentId) -> Result<AgentRunId, ApiError> {
        if let Some(run) = self.known().get(id).and_then(|k| k.run.clone()) {
            return Ok(run);
        }
        let agent = self.client.v1_agent(id).await?;
        let run = latest_run(&agent)?;
        self.follow(id, run.clone());
        Ok(run)
    }

    /// Reads `run` of `agent`; an ended run's view is kept for good.
    async fn read(&self, id: &AgentId, run: &AgentRunId) -> Result<AgentView, ApiError> {
        let read = self.client.v1_run(id, run).await?;
        let mut known = self.known();
        let entry = known.entry(id.clone()).or_default();
        let view = view(id, &read, entry.url.clone());
        if entry.run.as_ref() == Some(run) && read.status.is_terminal() {
            entry.ended = Some(view.clone());
        }
        Ok(view)
    }

    /// An agent as found (by id or by name): its latest run, read.
    async fn adopt(&self, agent: &Agent) -> Result<AgentView, ApiError> {
        let run = latest_run(agent)?;
        self.follow(&agent.id, run.clone());
        self.known()
            .entry(agent.id.clone())
            .or_default()
            .url
            .clone_from(&agent.url);
        self.read(&agent.id, &run).await
    }

    /// The status of one agent: from what its stream told, else read.
    async fn status(&self, id: &AgentId) -> Result<AgentView, ApiError> {
        let run = self.current_run(id).await?;
        self.watch(id);
        let (told, reading, ended, url) = {
            let known = self.known();
            let entry = known.get(id).expect("followed above");
            let told = entry.told.lock().expect("not poisoned").clone();
            let reading = entry.reader.as_ref().is_some_and(|r| !r.is_finished());
            (told, reading, entry.ended.clone(), entry.url.clone())
        };
        if let Some(view) = ended {
            return Ok(view);
        }
        if let Some(result) = told.result {
            let view = view(
                id,
                &Run {
                    status: result.status,
                    result: result.text,
                    duration_ms: result.duration_ms,
                    git: result.git,
                    ..Run::of(run)
                },
                url,
            );
            self.known().entry(id.clone()).or_default().ended = Some(view.clone());
            return Ok(view);
        }
        if reading && !told.ended && !told.unusable {
            // Until the stream's first event, the run is as the launch answered: starting.
            let status = told.status.unwrap_or(AgentStatus::Creating);
            return Ok(view(
                id,
                &Run {
                    status,
                    ..Run::of(run)
                },
                url,
            ));
        }
        self.read(id, &run).await
    }

    /// Walks `GET /v1/agents` pages, newest first, until `visit` says so or agents older than
    /// `oldest` come. Returns the pages read.
    async fn sweep(
        &self,
        oldest: SystemTime,
        visit: impl FnMut(Agent) -> bool,
    ) -> Result<usize, ApiError> {
        super::sweep(
            oldest,
            |cursor| {
                let client = self.client.clone();
                async move {
                    let page = client
                        .v1_agents(Some(MAX_PAGE), cursor.as_deref(), true)
                        .await?;
                    Ok((page.items, page.next_cursor))
                }
            },
            Agent::created,
            visit,
        )
        .await
    }
}

/// Reads a run's events until it ends, reconnecting after the last event read.
async fn read_stream(
    client: Client,
    id: AgentId,
    run: AgentRunId,
    told: Arc<Mutex<Told>>,
    news: Arc<Notify>,
) {
    let mut wait = FIRST_RECONNECT;
    let mut breaks = 0;
    loop {
        let last = told.lock().expect("not poisoned").last_event.clone();
        match client.v1_stream(&id, &run, last.as_deref()).await {
            Ok(mut events) => loop {
                match tokio::time::timeout(SILENCE, events.next()).await {
                    Ok(Some(Ok((event_id, event)))) => {
                        wait = FIRST_RECONNECT;
                        breaks = 0;
                        let mut told = told.lock().expect("not poisoned");
                        let before = (told.status.clone(), told.ended);
                        told.read(event_id, &event);
                        if (told.status.clone(), told.ended) != before {
                            news.notify_one();
                        }
                        if told.ended {
                            return;
                        }
                    }
                    Ok(Some(Err(error))) => {
                        tracing::debug!(agent = %id, %error, "run stream broke");
                        break;
                    }
                    // Ended or silent: reconnect from the last event.
                    Ok(None) | Err(_) => break,
                }
            },
            Err(error) => {
                tracing::debug!(agent = %id, %error, "cannot open the run stream");
                if told.lock().expect("not poisoned").refused(&error) == Retry::Never {
                    news.notify_one();
                    return;
                }
            }
        }
        breaks += 1;
        if breaks >= MAX_BREAKS {
            told.lock().expect("not poisoned").unusable = true;
            news.notify_one();
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RECONNECT);
    }
}

fn latest_run(agent: &Agent) -> Result<AgentRunId, ApiError> {
    agent.latest_run_id.clone().ok_or_else(|| ApiError::Decode {
        message: format!("agent {} has no latestRunId", agent.id),
    })
}

fn view(id: &AgentId, run: &Run, url: Option<String>) -> AgentView {
    let branches = run.git.clone().unwrap_or_default().branches;
    let first = branches.first();
    AgentView {
        id: id.clone(),
        status: run.status.clone(),
        branch: first.and_then(|b| b.branch.clone()),
        pr_url: first.and_then(|b| b.pr_url.clone()),
        summary: run.result.clone(),
        url: url.or_else(|| Some(format!("https://cursor.com/agents/{id}"))),
        duration: run.duration_ms.map(Duration::from_millis),
        branches,
    }
}

/// Status reads of one sweep in flight at once.
const READS_AT_ONCE: usize = 16;

/// Whether `agent` is the agent of the launch `spec`: its repository, and its name, which
/// carries the run, instance, attempt and spec hash.
fn is_launch_of(agent: &Agent, spec: &LaunchSpec) -> bool {
    let same_repository = agent
        .repos
        .first()
        .is_some_and(|r| r.url.eq_ignore_ascii_case(&spec.repository));
    same_repository && agent.name.as_deref() == Some(spec.name.as_str())
}

impl Backend for V1 {
    fn outage(&self) -> Option<crate::cursor::Outage> {
        self.client.outage()
    }

    fn pace(&self) -> Option<crate::cursor::Pace> {
        self.client.quotas().pace()
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, ApiError> {
        let options = &spec.options;
        // `apply` checked the references before launching anything; one unset since is
        // refused like a bad request, before anything is sent.
        let env = options.env_values().map_err(|unset| ApiError::BadRequest {
            code: Some("env_var_unset".into()),
            message: unset.to_string(),
        })?;
        let request = CreateAgentRequest {
            prompt: Prompt::text(&spec.prompt),
            model: spec.model.as_ref().map(|id| ModelSpec {
                id: id.clone(),
                params: options
                    .model_params
                    .iter()
                    .flatten()
                    .map(|(id, value)| ModelParam {
                        id: id.clone(),
                        value: crate::spec::param_text(value).unwrap_or_default(),
                    })
                    .collect(),
            }),
            name: Some(spec.name.clone()),
            repos: vec![RepoSpec {
                url: spec.repository.clone(),
                starting_ref: spec.git_ref.clone(),
                pr_url: options.pr_url.clone(),
            }],
            work_on_current_branch: options.work_on_current_branch,
            auto_create_pr: Some(spec.target.auto_create_pr),
            skip_reviewer_request: Some(spec.target.skip_reviewer_request),
            env_vars: env.map(|vars| {
                vars.into_iter()
                    .map(|(name, value)| (name, Secret::new(value)))
                    .collect()
            }),
            mcp_servers: options.mcp_servers.clone(),
            mode: options.mode.map(|m| m.as_str().to_owned()),
            agent_id: spec.agent_id.clone(),
        };
        match self.client.v1_create_agent(&request).await {
            Ok(created) => {
                let id = created.agent.id.clone();
                let url = created.agent.url.clone();
                self.follow(&id, created.run.id.clone());
                let view = view(&id, &created.run, url.clone());
                self.known().entry(id.clone()).or_default().url = url;
                self.watch(&id);
                Ok(view)
            }
            // `agent_id_conflict`: an earlier send made it; the executor adopts it through
            // `find_launched`, which checks it is this launch.
            Err(error) => Err(error),
        }
    }

    async fn find_launched(&self, spec: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        // With an agent id, one read: the id is this launch's (run, instance, attempt, spec),
        // and the agent is still checked against it.
        if let Some(id) = &spec.agent_id {
            return self.recalled(id, spec).await;
        }
        let floor = spec
            .since
            .checked_sub(CLOCK_SLACK)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // List items are summaries, without repositories: match on the unique name, then
        // read each candidate to check its repository.
        let mut candidates = Vec::new();
        self.sweep(spec.since, |agent| {
            if agent.name.as_deref() == Some(spec.name.as_str())
                && agent.created().is_none_or(|c| c >= floor)
            {
                candidates.push(agent.id);
            }
            false
        })
        .await?;
        for id in candidates {
            let agent = self.client.v1_agent(&id).await?;
            if is_launch_of(&agent, spec) {
                return self.adopt(&agent).await.map(Some);
            }
        }
        Ok(None)
    }

    fn recalls(&self) -> bool {
        true
    }

    async fn recall(&self, run: &str, wanted: &[Wanted]) -> Result<Recall, ApiError> {
        // Every launch's name carries the run, instance, attempt and spec hash.
        let stems: HashMap<String, &str> = wanted
            .iter()
            .map(|w| (name_stem(run, &w.key), w.key.as_str()))
            .collect();
        let mut recall = Recall::new();
        self.sweep(SystemTime::UNIX_EPOCH, |agent| {
            let named = agent.name.as_deref().and_then(parse_name);
            if let Some((key, (_, attempt, spec))) = named.and_then(|n| Some((*stems.get(n.0)?, n)))
            {
                let found = Recalled {
                    attempt,
                    id: agent.id.clone(),
                    spec: Some(spec.to_owned()),
                };
                keep_latest(&mut recall, key, found);
            }
            false
        })
        .await?;
        Ok(recall)
    }

    async fn recalled(
        &self,
        id: &AgentId,
        spec: &LaunchSpec,
    ) -> Result<Option<AgentView>, ApiError> {
        match self.client.v1_agent(id).await {
            Ok(agent) if is_launch_of(&agent, spec) => self.adopt(&agent).await.map(Some),
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn statuses(&self, ids: &[AgentId], oldest: SystemTime) -> Result<Statuses, ApiError> {
        // Agents whose run is not known yet (a resume): their latest runs from the listing,
        // a page for up to 100 agents, rather than one read each.
        let unknown: std::collections::HashSet<&AgentId> = {
            let known = self.known();
            ids.iter()
                .filter(|id| known.get(*id).is_none_or(|k| k.run.is_none()))
                .collect()
        };
        if unknown.len() > 1 {
            let mut found = 0;
            self.sweep(oldest, |agent| {
                if let (true, Some(run)) = (unknown.contains(&agent.id), agent.latest_run_id) {
                    self.follow(&agent.id, run);
                    found += 1;
                }
                found == unknown.len()
            })
            .await?;
        }
        // Several at once: a read that is retried does not hold up the others.
        let reads: Vec<_> = ids
            .iter()
            .map(|id| Box::pin(async move { (id, self.status(id).await) }))
            .collect();
        let mut reads = futures_util::stream::iter(reads).buffer_unordered(READS_AT_ONCE);
        let mut statuses = Statuses::new();
        while let Some((id, read)) = reads.next().await {
            match read {
                Ok(view) => statuses.insert(id.clone(), Ok(view)),
                Err(error @ ApiError::NotFound { .. }) => statuses.insert(id.clone(), Err(error)),
                Err(error) => return Err(error),
            };
        }
        Ok(statuses)
    }

    fn news(&self) -> Option<Arc<Notify>> {
        Some(self.news.clone())
    }

    async fn follow_up(&self, id: &AgentId, text: &str) -> Result<(), ApiError> {
        let run = self.client.v1_create_run(id, Prompt::text(text)).await?;
        self.follow(id, run.id);
        self.watch(id);
        Ok(())
    }

    async fn follow_up_received(
        &self,
        id: &AgentId,
        _text: &str,
        sent_before: u32,
    ) -> Result<bool, ApiError> {
        // Runs hold no prompt text; orchestrate alone prompts its agents, so the count tells:
        // the first prompt plus each follow-up received is one run.
        let mut runs: Vec<Run> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .client
                .v1_runs(id, Some(MAX_PAGE), cursor.as_deref())
                .await?;
            runs.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let received = runs.len() >= 2 + sent_before as usize;
        if received {
            self.follow(id, runs[0].id.clone());
        }
        Ok(received)
    }

    async fn stop(&self, id: &AgentId) -> Result<(), ApiError> {
        let run = match self.current_run(id).await {
            Ok(run) => run,
            Err(ApiError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        match self.client.v1_cancel_run(id, &run).await {
            // Already ended, or gone: nothing to stop.
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(error) if error.conflict_code() == Some("run_not_cancellable") => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn tokens(&self, id: &AgentId) -> Result<Option<u64>, ApiError> {
        Ok(Some(
            self.client.v1_usage(id).await?.total_usage.total_tokens,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(events: &[(&str, &str)]) -> Told {
        let mut told = Told::default();
        for (n, (kind, data)) in events.iter().enumerate() {
            let id = (n > 0).then(|| format!("e{n}"));
            told.read(id, &RunEvent::parse(kind, data).unwrap());
        }
        told
    }

    #[test]
    fn a_run_is_running_then_ends_with_its_result() {
        let running = told(&[
            ("status", r#"{"runId": "run-1", "status": "CREATING"}"#),
            ("status", r#"{"runId": "run-1", "status": "RUNNING"}"#),
            ("heartbeat", "{}"),
        ]);
        assert_eq!(running.status, Some(AgentStatus::Running));
        assert!(!running.ended);
        assert_eq!(running.last_event.as_deref(), Some("e2"));
        let ended = told(&[
            ("status", r#"{"runId": "run-1", "status": "RUNNING"}"#),
            (
                "result",
                r#"{"runId": "run-1", "status": "FINISHED", "text": "Done"}"#,
            ),
        ]);
        assert_eq!(ended.status, Some(AgentStatus::Finished));
        assert!(ended.ended);
        assert_eq!(ended.result.unwrap().text.as_deref(), Some("Done"));
    }

    #[test]
    fn the_replayed_status_has_no_id_and_keeps_the_resume_point() {
        let mut told = told(&[
            ("status", r#"{"runId": "run-1", "status": "CREATING"}"#),
            ("status", r#"{"runId": "run-1", "status": "RUNNING"}"#),
        ]);
        // A reconnect replays `status` first, without an id.
        told.read(None, &RunEvent::Status(AgentStatus::Running));
        assert_eq!(told.last_event.as_deref(), Some("e1"));
    }

    #[test]
    fn errors_and_done_end_the_run_and_a_terminal_status_does_too() {
        assert!(told(&[("error", r#"{"message": "boom"}"#)]).ended);
        assert!(told(&[("done", "")]).ended);
        assert!(told(&[("status", r#"{"runId": "r", "status": "CANCELLED"}"#)]).ended);
        assert!(RunEvent::parse("status", "not json").is_err());
        assert_eq!(RunEvent::parse("tool_call", "{}").unwrap(), RunEvent::Other);
    }

    #[test]
    fn an_expired_stream_is_read_instead_and_an_unavailable_one_is_tried_again() {
        let expired = ApiError::from_status(
            410,
            None,
            r#"{"error": {"code": "stream_expired", "message": "gone"}}"#,
        );
        let mut told = Told::default();
        assert_eq!(told.refused(&expired), Retry::Never);
        assert!(told.unusable);
        let unavailable = ApiError::from_status(
            404,
            None,
            r#"{"error": {"code": "stream_unavailable", "message": "not yet"}}"#,
        );
        let mut told = Told::default();
        assert_eq!(told.refused(&unavailable), Retry::Later);
        assert!(!told.unusable);
    }
}
