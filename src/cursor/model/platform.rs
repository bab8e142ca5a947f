//! The LiteLLM Agent Platform's shapes for its `cursor` runtime: a session per agent, and
//! Cursor's events normalized to the Anthropic Managed Agents surface.
//!
//! `POST /session` and the stream's event types are the reference's
//! (shared/api/litellm-agent-platform-cursor-runtime.md); the event fields, sending events to
//! a session and listing its events follow the Managed Agents shape the platform normalizes
//! to. Parsing is lenient: unknown fields and event types are ignored.

use serde::{Deserialize, Serialize};

use super::AgentId;

/// The platform's runtime for Cursor background agents.
pub const RUNTIME: &str = "cursor";

/// `POST /session`: a session that starts at once, since it carries its prompt.
#[derive(Debug, Clone, Serialize)]
pub struct CreateSession {
    /// Always `cursor`.
    pub runtime: &'static str,
    /// The platform agent the session runs.
    pub agent_id: String,
    /// The first prompt.
    pub prompt: String,
    /// Repository and pull request settings.
    pub environment: Environment,
}

/// Where a Cursor session works.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// `https://github.com/owner/name`.
    pub repository: String,
    /// The ref to start from.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Whether the agent opens a pull request.
    pub auto_create_pr: bool,
}

/// A session, as `POST /session` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: AgentId,
}

/// One event of a session.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SessionEvent {
    /// `session.status_running`, `agent.message`, `agent.tool_use`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's id.
    #[serde(default)]
    pub id: Option<String>,
    /// Text blocks (or a plain string) of a message or a tool result.
    #[serde(default)]
    pub content: Option<serde_json::Value>,
    /// A tool result that failed; Cursor's final `result` arrives as one.
    #[serde(default)]
    pub is_error: Option<bool>,
    /// Why a session went idle, as `{"type": ...}`.
    #[serde(default)]
    pub stop_reason: Option<serde_json::Value>,
    /// What went wrong, on `session.error`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// The event types the backend reads.
pub mod kind {
    /// The session started working on a prompt (Cursor's `status: running`).
    pub const RUNNING: &str = "session.status_running";
    /// The session finished its prompt and waits (Cursor's `status: idle`).
    pub const IDLE: &str = "session.status_idle";
    /// The session ended for good.
    pub const TERMINATED: &str = "session.status_terminated";
    /// The session failed.
    pub const ERROR: &str = "session.error";
    /// Text from the agent (Cursor's `assistant`).
    pub const MESSAGE: &str = "agent.message";
    /// A tool call (Cursor's `tool_call`).
    pub const TOOL_USE: &str = "agent.tool_use";
    /// A tool's result, and Cursor's final `result`.
    pub const TOOL_RESULT: &str = "agent.tool_result";
    /// A prompt the session received: the first one and each follow-up.
    pub const USER_MESSAGE: &str = "user.message";
    /// A stop the session received.
    pub const USER_INTERRUPT: &str = "user.interrupt";
}

impl SessionEvent {
    /// The text the event carries: its text blocks joined, or its string content.
    pub fn text(&self) -> Option<String> {
        let text = match self.content.as_ref()? {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(serde_json::Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => return None,
        };
        (!text.trim().is_empty()).then_some(text)
    }

    /// Why the session went idle (`end_turn`, `interrupted`, ...), if said.
    pub fn stop_reason(&self) -> Option<&str> {
        let reason = self.stop_reason.as_ref()?;
        reason
            .get("type")
            .and_then(serde_json::Value::as_str)
            .or_else(|| reason.as_str())
    }

    /// The message of a `session.error`.
    pub fn error_message(&self) -> Option<String> {
        let error = self.error.as_ref()?;
        Some(
            error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned),
        )
    }
}

/// `POST /v1/sessions/{id}/events`: events a client sends to a session.
#[derive(Debug, Clone, Serialize)]
pub struct SendEvents {
    /// The events, in order.
    pub events: Vec<UserEvent>,
}

/// An event a client sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    /// A prompt: a follow-up once the session is idle.
    #[serde(rename = "user.message")]
    Message {
        /// Its text blocks.
        content: Vec<TextBlock>,
    },
    /// Stops the session's current work.
    #[serde(rename = "user.interrupt")]
    Interrupt,
}

impl UserEvent {
    /// A text prompt.
    pub fn message(text: &str) -> Self {
        UserEvent::Message {
            content: vec![TextBlock {
                kind: "text",
                text: text.to_owned(),
            }],
        }
    }
}

/// A text content block.
#[derive(Debug, Clone, Serialize)]
pub struct TextBlock {
    /// Always `text`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

/// One page of `GET /v1/sessions/{id}/events`, oldest first.
#[derive(Debug, Clone, Deserialize)]
pub struct EventPage {
    /// The events.
    #[serde(default)]
    pub data: Vec<SessionEvent>,
    /// The next page's token; absent on the last page.
    #[serde(default)]
    pub next_page: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_text_blocks_strings_and_stop_reasons() {
        let message: SessionEvent = serde_json::from_str(
            r#"{"type":"agent.message","id":"e1","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(message.text().as_deref(), Some("a\nb"));
        let result: SessionEvent = serde_json::from_str(
            r#"{"type":"agent.tool_result","content":"done","is_error":false}"#,
        )
        .unwrap();
        assert_eq!(result.text().as_deref(), Some("done"));
        let idle: SessionEvent = serde_json::from_str(
            r#"{"type":"session.status_idle","stop_reason":{"type":"end_turn"}}"#,
        )
        .unwrap();
        assert_eq!(idle.stop_reason(), Some("end_turn"));
        assert_eq!(idle.text(), None);
    }

    #[test]
    fn sent_events_have_the_managed_agents_shape() {
        let sent = SendEvents {
            events: vec![UserEvent::message("again"), UserEvent::Interrupt],
        };
        assert_eq!(
            serde_json::to_value(&sent).unwrap(),
            serde_json::json!({"events": [
                {"type": "user.message", "content": [{"type": "text", "text": "again"}]},
                {"type": "user.interrupt"}
            ]})
        );
    }
}
