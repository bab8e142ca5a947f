//! What the Agent Platform shows of the model: a session's event log, and its turns.

use std::time::SystemTime;

use crate::cursor::model::AgentId;
use crate::sim::model::{Outcome, Refusal, SimAgent, SimState, first_line};

impl SimAgent {
    /// The Agent Platform's event log at `now`: per prompt, Cursor's events normalized as
    /// the platform does (`user.message`, `session.status_running`, `agent.tool_use`,
    /// `agent.tool_result`, `agent.message`, the final `result` as a tool result, then
    /// `session.status_idle`). Append-only as time passes, so an event's place is its id.
    pub fn platform_events(&self, now: SystemTime) -> Vec<serde_json::Value> {
        let mut log: Vec<(SystemTime, serde_json::Value)> = Vec::new();
        let text = |text: String| serde_json::json!([{"type": "text", "text": text}]);
        for (number, run) in self.runs.iter().enumerate() {
            let end = run.cancelled().unwrap_or(run.busy_until());
            let mut at = |time: SystemTime, event: serde_json::Value| {
                if time <= now && time <= end {
                    log.push((time, event));
                }
            };
            at(
                run.started(),
                serde_json::json!({"type": "user.message", "content": text(run.prompt().to_owned())}),
            );
            at(
                run.creating_until(),
                serde_json::json!({"type": "session.status_running"}),
            );
            let middle = run.creating_until()
                + (run
                    .busy_until()
                    .duration_since(run.creating_until())
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
            if let Some(cancelled) = run.cancelled().filter(|c| *c <= now) {
                log.push((cancelled, serde_json::json!({"type": "user.interrupt"})));
                log.push((cancelled, serde_json::json!({"type": "session.status_idle", "stop_reason": {"type": "interrupted"}})));
                continue;
            }
            let summary = format!("I worked on: {}", first_line(run.prompt()));
            match run.outcome() {
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
}

impl SimState {
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
}
