//! The v0 backend: one agent per launch, statuses from list pages when cheaper, launches
//! found again by repository, branch and creation time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use super::{
    AgentView, Backend, CLOCK_SLACK, LaunchSpec, Recall, Recalled, Statuses, Wanted, keep_latest,
};
use crate::cursor::model::{Agent, LaunchRequest, LaunchTarget, Message, Prompt, Source};
use crate::cursor::{AgentId, ApiError, Client, MAX_PAGE};

/// The v0 API.
#[derive(Debug)]
pub struct V0 {
    client: Client,
    /// Pages the last sweep of `GET /v0/agents` needed: when that is more than one call per
    /// agent, single reads are cheaper.
    last_sweep_pages: AtomicUsize,
}

impl V0 {
    /// A backend over `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            last_sweep_pages: AtomicUsize::new(1),
        }
    }

    /// Walks `GET /v0/agents` pages, newest first, until `done` says so or agents older than
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
                        .list_agents(Some(MAX_PAGE), cursor.as_deref())
                        .await?;
                    Ok((page.agents, page.next_cursor))
                }
            },
            Agent::created,
            visit,
        )
        .await
    }

    /// Whether the first message of agent `id`'s conversation is `prompt`: on v0 the prompt
    /// is what tells one launch on a branch from another.
    async fn first_prompt_is(&self, id: &AgentId, prompt: &str) -> Result<bool, ApiError> {
        let conversation = self.client.conversation(id).await?;
        let first = conversation
            .messages
            .iter()
            .find(|m| m.kind == "user_message");
        Ok(first.is_some_and(|m| m.text.trim() == prompt.trim()))
    }
}

/// Whether `agent` works on `repository` and pushes to `branch`.
fn on_branch(agent: &Agent, repository: &str, branch: &str) -> bool {
    agent
        .repository()
        .is_some_and(|r| r.eq_ignore_ascii_case(repository))
        && agent.branch() == Some(branch)
}

/// Whether `messages` answer prompt number `prompt`: its user message has an assistant
/// message after it.
fn answers(messages: &[Message], prompt: u32) -> bool {
    let mut users = 0;
    messages
        .iter()
        .skip_while(|m| {
            users += u32::from(m.kind == "user_message");
            users < prompt
        })
        .skip(1)
        .any(|m| m.kind == "assistant_message")
}

/// The attempt a branch is of, given the first attempt's branches of a run's instances by
/// repository (lowercase): `base` is attempt 1, `base-attempt-N` attempt N.
fn attempt_of<'a>(
    bases: &HashMap<(String, String), &'a str>,
    repository: &str,
    branch: &str,
) -> Option<(&'a str, u32)> {
    let repository = repository.to_ascii_lowercase();
    if let Some(key) = bases.get(&(repository.clone(), branch.to_owned())) {
        return Some((key, 1));
    }
    let (base, attempt) = branch.rsplit_once("-attempt-")?;
    let attempt: u32 = attempt.parse().ok().filter(|n| *n >= 2)?;
    let key = bases.get(&(repository, base.to_owned()))?;
    Some((key, attempt))
}

impl Backend for V0 {
    fn outage(&self) -> Option<crate::cursor::Outage> {
        self.client.outage()
    }

    fn pace(&self) -> Option<crate::cursor::Pace> {
        self.client.quotas().pace()
    }

    fn reads_together(&self) -> bool {
        self.last_sweep_pages.load(Ordering::Relaxed) <= 1
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, ApiError> {
        let request = LaunchRequest {
            prompt: Prompt::text(&spec.prompt),
            model: spec.model.clone(),
            source: Source {
                repository: spec.repository.clone(),
                git_ref: spec.git_ref.clone(),
            },
            target: Some(LaunchTarget {
                auto_create_pr: Some(spec.target.auto_create_pr),
                open_as_cursor_github_app: Some(spec.target.open_as_cursor_github_app),
                skip_reviewer_request: Some(spec.target.skip_reviewer_request),
                branch_name: Some(spec.branch.clone()),
            }),
            webhook: spec.webhook.clone(),
        };
        self.client.launch(&request).await.map(AgentView::from)
    }

    async fn find_launched(&self, spec: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        let floor = spec
            .since
            .checked_sub(CLOCK_SLACK)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut found = None;
        self.sweep(spec.since, |agent| {
            let matches = on_branch(&agent, &spec.repository, &spec.branch)
                && agent.created().is_none_or(|c| c >= floor);
            if matches {
                found = Some(agent);
            }
            matches
        })
        .await?;
        match found {
            Some(agent) if self.first_prompt_is(&agent.id, &spec.prompt).await? => {
                Ok(Some(agent.into()))
            }
            _ => Ok(None),
        }
    }

    fn recalls(&self) -> bool {
        true
    }

    async fn recall(&self, _run: &str, wanted: &[Wanted]) -> Result<Recall, ApiError> {
        // The branches name the run (the default one does; a workflow's own should too), so
        // repository and branch find its launches; the prompt is checked when rendered.
        let bases: HashMap<(String, String), &str> = wanted
            .iter()
            .filter(|w| !w.branch.is_empty())
            .map(|w| {
                let at = (w.repository.to_ascii_lowercase(), w.branch.clone());
                (at, w.key.as_str())
            })
            .collect();
        let mut recall = Recall::new();
        if bases.is_empty() {
            return Ok(recall);
        }
        self.sweep(SystemTime::UNIX_EPOCH, |agent| {
            let found = agent
                .repository()
                .zip(agent.branch())
                .and_then(|(repository, branch)| attempt_of(&bases, repository, branch));
            if let Some((key, attempt)) = found {
                let id = agent.id.clone();
                keep_latest(
                    &mut recall,
                    key,
                    Recalled {
                        attempt,
                        id,
                        spec: None,
                    },
                );
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
        let agent = match self.client.agent(id).await {
            Ok(agent) => agent,
            Err(ApiError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if !on_branch(&agent, &spec.repository, &spec.branch)
            || !self.first_prompt_is(id, &spec.prompt).await?
        {
            return Ok(None);
        }
        Ok(Some(agent.into()))
    }

    async fn statuses(&self, ids: &[AgentId], oldest: SystemTime) -> Result<Statuses, ApiError> {
        let mut statuses = Statuses::new();
        if ids.len() > 1 && self.last_sweep_pages.load(Ordering::Relaxed) < ids.len() {
            let wanted: HashSet<&AgentId> = ids.iter().collect();
            let pages = self
                .sweep(oldest, |agent| {
                    if wanted.contains(&agent.id) {
                        statuses.insert(agent.id.clone(), Ok(AgentView::from(agent)));
                    }
                    statuses.len() == wanted.len()
                })
                .await?;
            self.last_sweep_pages.store(pages, Ordering::Relaxed);
        }
        // What the pages did not show (or all, when reading one by one is cheaper).
        for id in ids {
            if !statuses.contains_key(id) {
                match self.client.agent(id).await {
                    Ok(agent) => statuses.insert(id.clone(), Ok(agent.into())),
                    Err(error @ ApiError::NotFound { .. }) => {
                        statuses.insert(id.clone(), Err(error))
                    }
                    Err(error) => return Err(error),
                };
            }
        }
        Ok(statuses)
    }

    async fn follow_up(&self, id: &AgentId, text: &str) -> Result<(), ApiError> {
        self.client
            .follow_up(id, Prompt::text(text))
            .await
            .map(|_| ())
    }

    async fn follow_up_received(
        &self,
        id: &AgentId,
        text: &str,
        sent_before: u32,
    ) -> Result<bool, ApiError> {
        let conversation = self.client.conversation(id).await?;
        let position = 1 + sent_before as usize;
        let user: Vec<&str> = conversation
            .messages
            .iter()
            .filter(|m| m.kind == "user_message")
            .map(|m| m.text.as_str())
            .collect();
        Ok(user.get(position).is_some_and(|t| t.trim() == text.trim()))
    }

    async fn answered(&self, id: &AgentId, prompt: u32) -> Result<Option<bool>, ApiError> {
        let conversation = self.client.conversation(id).await?;
        Ok(Some(answers(&conversation.messages, prompt)))
    }

    async fn stop(&self, id: &AgentId) -> Result<(), ApiError> {
        match self.client.stop(id).await {
            // Already ended: nothing to stop.
            Ok(_) | Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn tokens(&self, _id: &AgentId) -> Result<Option<u64>, ApiError> {
        Ok(None)
    }
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        let target = agent.target.unwrap_or_default();
        Self {
            id: agent.id,
            status: agent.status,
            branch: target.branch_name,
            pr_url: target.pr_url,
            summary: agent.summary,
            url: target.url,
            duration: None,
            branches: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_tells_its_instance_and_attempt() {
        let bases = HashMap::from([(
            (
                "https://github.com/a/x".to_owned(),
                "orchestrate/w/k/t".to_owned(),
            ),
            "t[a/x]",
        )]);
        let of = |repository, branch| attempt_of(&bases, repository, branch);
        assert_eq!(
            of("https://github.com/A/X", "orchestrate/w/k/t"),
            Some(("t[a/x]", 1))
        );
        assert_eq!(
            of("https://github.com/a/x", "orchestrate/w/k/t-attempt-3"),
            Some(("t[a/x]", 3))
        );
        assert_eq!(of("https://github.com/a/y", "orchestrate/w/k/t"), None);
        assert_eq!(
            of("https://github.com/a/x", "orchestrate/w/k/t-attempt-1"),
            None
        );
        assert_eq!(
            of("https://github.com/a/x", "orchestrate/w/k/t-attempt-x"),
            None
        );
        assert_eq!(of("https://github.com/a/x", "orchestrate/w/k/other"), None);
    }

    #[test]
    fn a_prompt_is_answered_once_an_assistant_message_follows_it() {
        let conversation = |kinds: &[&str]| -> Vec<Message> {
            kinds
                .iter()
                .enumerate()
                .map(|(n, kind)| Message {
                    id: format!("msg_{n}"),
                    kind: format!("{kind}_message"),
                    text: String::new(),
                })
                .collect()
        };
        let launched = conversation(&["user", "assistant"]);
        assert!(answers(&launched, 1));
        assert!(!answers(&launched, 2), "the follow-up is not in it yet");
        let followed = conversation(&["user", "assistant", "user"]);
        assert!(!answers(&followed, 2), "sent, not answered");
        let done = conversation(&["user", "assistant", "user", "assistant", "assistant"]);
        assert!(answers(&done, 2));
        assert!(!answers(&conversation(&[]), 1));
    }
}
