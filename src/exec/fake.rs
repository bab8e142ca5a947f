//! A scripted backend for the executor's unit tests: launches answer from a queue, each
//! agent's statuses follow a script, and every call is recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use super::backend::{AgentView, Backend, LaunchSpec, Recall, Statuses, Wanted};
use crate::cursor::{AgentId, AgentStatus, ApiError};

/// An agent with `status`.
pub(super) fn agent(id: &str, status: AgentStatus) -> AgentView {
    AgentView {
        id: AgentId(id.to_owned()),
        status,
        branch: None,
        pr_url: None,
        summary: None,
        url: None,
        duration: None,
        branches: Vec::new(),
    }
}

/// What the fake was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    Launch { branch: String },
    Find,
    Recalled { agent: String },
    FollowUp { agent: String, text: String },
    Stop { agent: String },
    Conversation { agent: String, prompt: u32 },
}

/// A backend that answers as scripted.
#[derive(Default)]
pub(super) struct Scripted {
    /// Answers to launches in turn; past the end, a new agent `bc-N`.
    pub(super) launches: Mutex<VecDeque<Result<AgentView, ApiError>>>,
    /// The answer to every look for a lost launch.
    pub(super) found: Mutex<Option<AgentView>>,
    /// What recall finds.
    pub(super) recall: Mutex<Recall>,
    /// The agents recall found that check out as their launch.
    pub(super) recalled: Mutex<HashMap<String, AgentView>>,
    /// Each agent's statuses in turn, the last one repeated; unscripted agents finish.
    pub(super) statuses: Mutex<HashMap<String, VecDeque<AgentStatus>>>,
    /// Every call but status reads.
    pub(super) calls: Mutex<Vec<Call>>,
    /// What every conversation says of the prompt asked about (`None`: there is none).
    pub(super) answers: Mutex<Option<bool>>,
    /// What `outage` says.
    pub(super) outage: Mutex<Option<crate::cursor::Outage>>,
    launched: Mutex<u32>,
}

impl Scripted {
    /// Agent `id` reads as `statuses` in turn.
    pub(super) fn script(&self, id: &str, statuses: &[AgentStatus]) {
        self.statuses
            .lock()
            .unwrap()
            .insert(id.to_owned(), statuses.iter().cloned().collect());
    }

    /// The next launch answers `error`.
    pub(super) fn fail_next_launch(&self, error: ApiError) {
        self.launches.lock().unwrap().push_back(Err(error));
    }

    /// The calls made so far.
    pub(super) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn status_of(&self, id: &AgentId) -> AgentStatus {
        let mut scripts = self.statuses.lock().unwrap();
        match scripts.get_mut(&id.0) {
            Some(script) if script.len() > 1 => script.pop_front().expect("not empty"),
            Some(script) => script.front().cloned().unwrap_or(AgentStatus::Finished),
            None => AgentStatus::Finished,
        }
    }
}

impl Backend for Scripted {
    fn outage(&self) -> Option<crate::cursor::Outage> {
        self.outage.lock().unwrap().clone()
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, ApiError> {
        self.calls.lock().unwrap().push(Call::Launch {
            branch: spec.branch.clone(),
        });
        if let Some(answer) = self.launches.lock().unwrap().pop_front() {
            return answer;
        }
        let mut launched = self.launched.lock().unwrap();
        *launched += 1;
        Ok(agent(&format!("bc-{launched}"), AgentStatus::Creating))
    }

    async fn find_launched(&self, _: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        self.calls.lock().unwrap().push(Call::Find);
        Ok(self.found.lock().unwrap().clone())
    }

    fn recalls(&self) -> bool {
        true
    }

    async fn recall(&self, _: &str, _: &[Wanted]) -> Result<Recall, ApiError> {
        Ok(self.recall.lock().unwrap().clone())
    }

    async fn recalled(&self, id: &AgentId, _: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        self.calls.lock().unwrap().push(Call::Recalled {
            agent: id.0.clone(),
        });
        Ok(self.recalled.lock().unwrap().get(&id.0).cloned())
    }

    async fn statuses(&self, ids: &[AgentId], _: SystemTime) -> Result<Statuses, ApiError> {
        Ok(ids
            .iter()
            .map(|id| (id.clone(), Ok(agent(&id.0, self.status_of(id)))))
            .collect())
    }

    async fn follow_up(&self, id: &AgentId, text: &str) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push(Call::FollowUp {
            agent: id.0.clone(),
            text: text.to_owned(),
        });
        Ok(())
    }

    async fn follow_up_received(&self, _: &AgentId, _: &str, _: u32) -> Result<bool, ApiError> {
        Ok(false)
    }

    async fn answered(&self, id: &AgentId, prompt: u32) -> Result<Option<bool>, ApiError> {
        self.calls.lock().unwrap().push(Call::Conversation {
            agent: id.0.clone(),
            prompt,
        });
        Ok(*self.answers.lock().unwrap())
    }

    async fn stop(&self, id: &AgentId) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push(Call::Stop {
            agent: id.0.clone(),
        });
        Ok(())
    }

    async fn tokens(&self, _: &AgentId) -> Result<Option<u64>, ApiError> {
        Ok(None)
    }
}
