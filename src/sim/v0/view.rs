//! What v0 shows of the model: an agent as its latest run, its conversation, pages of
//! agents, and the webhook deliveries due.

use std::time::SystemTime;

use crate::cursor::model::{Agent, AgentId, AgentStatus, LaunchRequest, Message, Webhook};
use crate::sim::model::{
    NewAgent, Origin, Refusal, SimAgent, SimState, first_line, result_of, rfc3339,
};

impl SimAgent {
    /// The agent as v0 shows it at `now`.
    pub fn view(&self, now: SystemTime) -> Agent {
        let status = self.status(now);
        let finished = status == AgentStatus::Finished;
        let mut target = self.target.clone();
        target.pr_url = self.pr_url(finished);
        Agent {
            id: self.id.clone(),
            name: Some(self.name.clone()),
            summary: finished.then(|| result_of(self.latest().prompt())),
            status,
            source: Some(self.source.clone()),
            target: Some(target),
            created_at: Some(rfc3339(self.created)),
        }
    }

    /// The conversation at `now`: each prompt, and its answer once its run ended.
    pub fn messages(&self, now: SystemTime) -> Vec<Message> {
        let mut messages = Vec::new();
        for run in &self.runs {
            messages.push(Message {
                id: format!("msg_{:03}", messages.len() + 1),
                kind: "user_message".into(),
                text: run.prompt().to_owned(),
            });
            if now >= run.busy_until() && run.cancelled().is_none() {
                messages.push(Message {
                    id: format!("msg_{:03}", messages.len() + 1),
                    kind: "assistant_message".into(),
                    text: format!("I worked on: {}", first_line(run.prompt())),
                });
            }
        }
        messages
    }
}

impl SimState {
    /// Creates an agent for a valid v0 launch.
    pub fn launch(&mut self, request: LaunchRequest, now: SystemTime) -> Agent {
        let mut body = serde_json::to_value(&request).unwrap_or_default();
        if let Some(secret) = body.pointer_mut("/webhook/secret") {
            *secret = "***".into();
        }
        let target = request.target.unwrap_or_default();
        let new = NewAgent {
            api: Origin::V0,
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

    /// v0 stop: the active run ends.
    pub fn stop(&mut self, id: &AgentId, now: SystemTime) -> Result<(), Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        let run = agent.runs.last_mut().expect("an agent has a run");
        match run.status(now) {
            AgentStatus::Creating | AgentStatus::Running => {
                run.cancel(now);
                Ok(())
            }
            other => Err(Refusal::NotAllowed(format!(
                "agent is {other}; only a running agent can be stopped"
            ))),
        }
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

    /// v0 agents whose webhook has not been told their latest FINISHED or ERROR status; marks
    /// them told.
    pub fn due_webhooks(&mut self, now: SystemTime) -> Vec<(Webhook, Agent)> {
        let mut due = Vec::new();
        for agent in self.agents_mut() {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::model::testing::{new_agent, state};

    #[test]
    fn a_webhook_is_told_each_end_once() {
        let mut state = state();
        let start = SystemTime::now();
        let mut new = new_agent(Origin::V0, None, "api");
        new.webhook = Some(Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: None,
        });
        let id = state.create(new, start).unwrap();
        let at = |s| start + Duration::from_secs(s);
        assert!(state.due_webhooks(at(5)).is_empty(), "still working");
        let due = state.due_webhooks(at(12));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.status, AgentStatus::Finished);
        assert!(state.due_webhooks(at(13)).is_empty(), "told once");
        // A follow-up ends in FINISHED again: that is news.
        state.follow_up(&id, "again".into(), at(13)).unwrap();
        assert_eq!(state.due_webhooks(at(30)).len(), 1);
    }

    #[test]
    fn the_conversation_has_each_prompt_and_an_answer_once_its_run_ended() {
        let mut state = state();
        let start = SystemTime::now();
        let id = state
            .create(new_agent(Origin::V0, None, "api"), start)
            .unwrap();
        let agent = state.agent(&id).unwrap();
        let kinds = |at| {
            agent
                .messages(at)
                .into_iter()
                .map(|m| m.kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(start), ["user_message"]);
        assert_eq!(
            kinds(start + Duration::from_secs(12)),
            ["user_message", "assistant_message"]
        );
    }
}
