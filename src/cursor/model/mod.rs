//! The JSON shapes of the Cursor Cloud Agents API v0, named exactly as the reference; v1's
//! are in [`v1`].
//!
//! Parsing is lenient where the API may grow: unknown fields are ignored and an unknown
//! status is kept as it was sent, never a failure.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod platform;
pub mod v1;

/// An agent id, like `bc_abc123`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an agent is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentStatus {
    /// Being set up.
    Creating,
    /// Working.
    Running,
    /// Done; its summary and pull request are final.
    Finished,
    /// Failed.
    Error,
    /// Ran out of time on Cursor's side.
    Expired,
    /// Cancelled (a v1 run).
    Cancelled,
    /// A status this release does not know, kept as sent.
    Unknown(String),
}

impl AgentStatus {
    /// The status as the API writes it.
    pub fn as_str(&self) -> &str {
        match self {
            AgentStatus::Creating => "CREATING",
            AgentStatus::Running => "RUNNING",
            AgentStatus::Finished => "FINISHED",
            AgentStatus::Error => "ERROR",
            AgentStatus::Expired => "EXPIRED",
            AgentStatus::Cancelled => "CANCELLED",
            AgentStatus::Unknown(other) => other,
        }
    }

    /// Whether the agent will not change again unless it is sent a follow-up.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            AgentStatus::Finished
                | AgentStatus::Error
                | AgentStatus::Expired
                | AgentStatus::Cancelled
        )
    }
}

impl From<&str> for AgentStatus {
    fn from(status: &str) -> Self {
        match status {
            "CREATING" => AgentStatus::Creating,
            "RUNNING" => AgentStatus::Running,
            "FINISHED" => AgentStatus::Finished,
            "ERROR" => AgentStatus::Error,
            "EXPIRED" => AgentStatus::Expired,
            "CANCELLED" => AgentStatus::Cancelled,
            other => AgentStatus::Unknown(other.to_owned()),
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AgentStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AgentStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let status = String::deserialize(deserializer)?;
        Ok(AgentStatus::from(status.as_str()))
    }
}

/// An agent, as listed and as read one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// Its id.
    pub id: AgentId,
    /// A title Cursor gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it is in its life.
    pub status: AgentStatus,
    /// The repository and ref it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Its branch, pull request and link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<AgentTarget>,
    /// What it did, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl Agent {
    /// When it was created, if the API said and it parses.
    pub fn created(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(self.created_at.as_deref()?).ok()
    }

    /// The branch it pushes to.
    pub fn branch(&self) -> Option<&str> {
        self.target.as_ref()?.branch_name.as_deref()
    }

    /// Its pull request, once opened.
    pub fn pr_url(&self) -> Option<&str> {
        self.target.as_ref()?.pr_url.as_deref()
    }

    /// Its repository URL.
    pub fn repository(&self) -> Option<&str> {
        Some(self.source.as_ref()?.repository.as_str())
    }
}

/// The repository an agent works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `https://github.com/owner/name`.
    pub repository: String,
    /// Branch, tag or commit it starts from.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

/// What an agent produces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTarget {
    /// The branch it pushes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_name: Option<String>,
    /// Its page in Cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Its pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    /// Whether it opens a pull request when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_pr: Option<bool>,
    /// Whether the pull request is opened as the Cursor GitHub App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_as_cursor_github_app: Option<bool>,
    /// Whether the key's user is not asked to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reviewer_request: Option<bool>,
}

/// A prompt: text and up to five images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// The instruction.
    pub text: String,
    /// Images, base64 with their size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
}

impl Prompt {
    /// A text-only prompt.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            images: Vec::new(),
        }
    }
}

/// An image in a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Base64 data.
    pub data: String,
    /// Its size in pixels.
    pub dimension: Dimension,
}

/// An image's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// `POST /v0/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRequest {
    /// What to do.
    pub prompt: Prompt,
    /// The model; omitted, Cursor picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The repository and ref.
    pub source: Source,
    /// Branch and pull request settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<LaunchTarget>,
    /// Where status changes are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

/// Branch and pull request settings of a launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchTarget {
    /// Open a pull request when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_pr: Option<bool>,
    /// Open it as the Cursor GitHub App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_as_cursor_github_app: Option<bool>,
    /// Do not ask the key's user to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reviewer_request: Option<bool>,
    /// The branch to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_name: Option<String>,
}

/// Webhook settings of a launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Where deliveries are posted.
    pub url: String,
    /// The HMAC key deliveries are signed with (32 characters or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for signing and sending.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `POST /v0/agents/{id}/followup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpRequest {
    /// What to do next.
    pub prompt: Prompt,
}

/// The answer of follow-up, stop and delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdResponse {
    /// The agent.
    pub id: AgentId,
}

/// A page of `GET /v0/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPage {
    /// Agents, newest first.
    pub agents: Vec<Agent>,
    /// The cursor of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v0/agents/{id}/conversation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The agent.
    pub id: AgentId,
    /// Prompts and answers, oldest first.
    pub messages: Vec<Message>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: String,
    /// `user_message` or `assistant_message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its text.
    pub text: String,
}

/// `GET /v0/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The key's name.
    pub api_key_name: String,
    /// When the key was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Its user's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
}

/// `GET /v0/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Models {
    /// Recommended model names.
    pub models: Vec<String>,
}

/// `GET /v0/repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repositories {
    /// The repositories the key's user can reach.
    pub repositories: Vec<Repository>,
}

/// One repository the key's user can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Owner.
    pub owner: String,
    /// Name.
    pub name: String,
    /// `https://github.com/owner/name`.
    pub repository: String,
}

/// A webhook delivery (`X-Webhook-Event: statusChange`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// Always `statusChange`.
    pub event: String,
    /// When the status changed (RFC 3339).
    pub timestamp: String,
    /// The agent.
    pub id: AgentId,
    /// Its new status.
    pub status: AgentStatus,
    /// Its repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Its branch, pull request and link, when finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<AgentTarget>,
    /// What it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
