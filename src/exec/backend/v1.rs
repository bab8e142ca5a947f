//! The v1 backend: a durable agent with one run per prompt. The executor's "agent status" is
//! the status of the agent's current run. Launches carry a deterministic `agentId`, so a resend
//! is refused with `agent_id_conflict` rather than duplicated; without one (a task with
//! `env_vars`) a launch is found again by its unique name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use super::{AgentView, Backend, CLOCK_SLACK, LaunchSpec, Statuses};
use crate::cursor::model::v1::{
    Agent, CreateAgentRequest, ModelParam, ModelSpec, RepoSpec, Run, RunId,
};
use crate::cursor::model::{Prompt, Secret};
use crate::cursor::{AgentId, ApiError, Client, MAX_PAGE};

/// What the backend knows of an agent it watches.
#[derive(Debug, Default)]
struct Known {
    /// The run the executor waits on.
    run: Option<RunId>,
    /// The agent's `updatedAt` when `view` was read: unchanged, the view still holds.
    updated_at: Option<String>,
    /// The last view read.
    view: Option<AgentView>,
    /// The agent's page.
    url: Option<String>,
}

/// The v1 API.
#[derive(Debug)]
pub struct V1 {
    client: Client,
    known: Mutex<HashMap<AgentId, Known>>,
    /// Pages the last sweep of `GET /v1/agents` needed, as in v0.
    last_sweep_pages: AtomicUsize,
}

impl V1 {
    /// A backend over `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: Mutex::default(),
            last_sweep_pages: AtomicUsize::new(1),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Known>> {
        self.known.lock().expect("not poisoned")
    }

    /// Follows `run` of `id` from now on (a launch, a follow-up, or a resume).
    fn follow(&self, id: &AgentId, run: RunId) {
        let mut known = self.known();
        let entry = known.entry(id.clone()).or_default();
        if entry.run.as_ref() != Some(&run) {
            entry.run = Some(run);
            entry.updated_at = None;
            entry.view = None;
        }
    }

    /// The run the executor waits on: the one followed, else the agent's latest.
    async fn current_run(&self, id: &AgentId) -> Result<RunId, ApiError> {
        if let Some(run) = self.known().get(id).and_then(|k| k.run.clone()) {
            return Ok(run);
        }
        let agent = self.client.v1_agent(id).await?;
        let run = latest_run(&agent)?;
        self.follow(id, run.clone());
        Ok(run)
    }

    /// Reads `run` of `agent` and remembers the view.
    async fn read(
        &self,
        id: &AgentId,
        run: &RunId,
        updated_at: Option<String>,
    ) -> Result<AgentView, ApiError> {
        let read = self.client.v1_run(id, run).await?;
        let mut known = self.known();
        let entry = known.entry(id.clone()).or_default();
        let view = view(id, &read, entry.url.clone());
        entry.run = Some(run.clone());
        entry.updated_at = updated_at;
        entry.view = Some(view.clone());
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
        self.read(&agent.id, &run, None).await
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

fn latest_run(agent: &Agent) -> Result<RunId, ApiError> {
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

impl Backend for V1 {
    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, ApiError> {
        let options = &spec.options;
        // `apply` checked the references before launching anything; one unset since is
        // refused like a bad request, before anything is sent.
        let env = options
            .env_values()
            .map_err(|message| ApiError::BadRequest {
                code: Some("env_var_unset".into()),
                message,
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
                let mut known = self.known();
                let entry = known.entry(id).or_default();
                (entry.view, entry.url) = (Some(view.clone()), url);
                Ok(view)
            }
            // An earlier send made it: that agent is this launch.
            Err(error) if error.conflict_code() == Some("agent_id_conflict") => {
                let id = spec.agent_id.as_ref().ok_or(error)?;
                let agent = self.client.v1_agent(id).await?;
                self.adopt(&agent).await
            }
            Err(error) => Err(error),
        }
    }

    async fn find_launched(&self, spec: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        // With an agent id, sending the launch again is the lookup: the API answers
        // `agent_id_conflict` when it exists, and `launch` reads it then.
        if spec.agent_id.is_some() {
            return Ok(None);
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
            let same_repository = agent
                .repos
                .first()
                .is_some_and(|r| r.url.eq_ignore_ascii_case(&spec.repository));
            if same_repository {
                return self.adopt(&agent).await.map(Some);
            }
        }
        Ok(None)
    }

    async fn statuses(&self, ids: &[AgentId], oldest: SystemTime) -> Result<Statuses, ApiError> {
        let mut statuses = Statuses::new();
        // From a listing: each agent's latest run and when it last changed.
        let mut listed: HashMap<AgentId, (Option<RunId>, Option<String>)> = HashMap::new();
        if ids.len() > 1 && self.last_sweep_pages.load(Ordering::Relaxed) < ids.len() {
            let wanted: std::collections::HashSet<&AgentId> = ids.iter().collect();
            let pages = self
                .sweep(oldest, |agent| {
                    if wanted.contains(&agent.id) {
                        listed.insert(agent.id.clone(), (agent.latest_run_id, agent.updated_at));
                    }
                    listed.len() == wanted.len()
                })
                .await?;
            self.last_sweep_pages.store(pages, Ordering::Relaxed);
            // Unchanged since the last read: the view read then still holds.
            let known = self.known();
            for (id, (run, updated)) in &listed {
                if let Some(k) = known.get(id) {
                    let same = updated.is_some() && *updated == k.updated_at && *run == k.run;
                    if let (true, Some(view)) = (same, &k.view) {
                        statuses.insert(id.clone(), Ok(view.clone()));
                    }
                }
            }
        }
        for id in ids {
            if statuses.contains_key(id) {
                continue;
            }
            let (listed_run, updated) = listed.remove(id).unwrap_or_default();
            let followed = self.known().get(id).and_then(|k| k.run.clone());
            let run = match followed.or(listed_run) {
                Some(run) => Ok(run),
                None => self.current_run(id).await,
            };
            let read = match run {
                Ok(run) => self.read(id, &run, updated).await,
                Err(error) => Err(error),
            };
            match read {
                Ok(view) => statuses.insert(id.clone(), Ok(view)),
                Err(error @ ApiError::NotFound { .. }) => statuses.insert(id.clone(), Err(error)),
                Err(error) => return Err(error),
            };
        }
        Ok(statuses)
    }

    async fn follow_up(&self, id: &AgentId, text: &str) -> Result<(), ApiError> {
        let run = self.client.v1_create_run(id, Prompt::text(text)).await?;
        self.follow(id, run.id);
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
