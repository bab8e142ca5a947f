//! Which API a workflow runs on: `api: {version: v0|v1}`, else `CURSOR_API_VERSION`; or,
//! with `api: {backend: litellm-agent-platform, url, agent_id}`, the LiteLLM Agent Platform.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The variable that picks the API version when a workflow does not.
pub const API_VERSION_VAR: &str = "CURSOR_API_VERSION";

/// The variable that picks the backend when a workflow does not.
pub const BACKEND_VAR: &str = "ORCHESTRATE_BACKEND";
/// The variable that gives the Agent Platform's URL when a workflow does not.
pub const PLATFORM_URL_VAR: &str = "LAP_URL";
/// The variable that gives the platform agent when a workflow does not.
pub const PLATFORM_AGENT_VAR: &str = "LAP_AGENT_ID";

/// Why the environment and a workflow's `api:` section name no API a run can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiChoiceError {
    /// `CURSOR_API_VERSION` holds something else than a version.
    #[error("{var} is `{0}`; expected `v0` or `v1`", var = API_VERSION_VAR)]
    BadVersion(String),
    /// `ORCHESTRATE_BACKEND` holds something else than a backend.
    #[error("{var} is `{0}`; expected `cursor` or `litellm-agent-platform`", var = BACKEND_VAR)]
    BadBackend(String),
    /// The platform backend lacks a setting.
    #[error("the litellm-agent-platform backend needs `api.{field}` (or {var})")]
    PlatformSetting {
        /// The `api:` field.
        field: &'static str,
        /// The variable that can stand in for it.
        var: &'static str,
    },
}

/// The `api:` section of a workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// The Cursor API version (default: `CURSOR_API_VERSION`, else v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ApiVersion>,
    /// The service that runs the agents (default: `ORCHESTRATE_BACKEND`, else `cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// litellm-agent-platform: the platform's URL (default: `LAP_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// litellm-agent-platform: the platform agent (runtime `cursor`) every session runs
    /// (default: `LAP_AGENT_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// The service that runs the agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The Cursor Cloud Agents API, directly or through a pass-through proxy.
    #[default]
    Cursor,
    /// The LiteLLM Agent Platform's `cursor` runtime: one session per instance.
    LitellmAgentPlatform,
}

impl BackendKind {
    /// As a workflow writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cursor => "cursor",
            BackendKind::LitellmAgentPlatform => "litellm-agent-platform",
        }
    }

    /// The backend `ORCHESTRATE_BACKEND` names, if set; an error names what it holds.
    pub fn from_env() -> Result<Option<Self>, ApiChoiceError> {
        match std::env::var(BACKEND_VAR) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => match value.trim() {
                "cursor" => Ok(Some(BackendKind::Cursor)),
                "litellm-agent-platform" => Ok(Some(BackendKind::LitellmAgentPlatform)),
                _ => Err(ApiChoiceError::BadBackend(value)),
            },
            Err(_) => Ok(None),
        }
    }
}

/// Where a run's agents run, resolved from the workflow and the environment. Stored with the
/// run, so that it is continued on the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Api {
    /// The Cursor API, at a version (stored as `"v0"` or `"v1"`).
    Cursor(ApiVersion),
    /// The LiteLLM Agent Platform.
    Platform(Platform),
}

/// A LiteLLM Agent Platform and the agent its sessions run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The platform's root URL.
    pub url: String,
    /// The platform agent (runtime `cursor`).
    pub agent_id: String,
}

impl Default for Api {
    fn default() -> Self {
        Api::Cursor(ApiVersion::default())
    }
}

impl Api {
    /// Whether orchestrate names the agents' branches (only v0 lets it).
    pub fn names_branches(&self) -> bool {
        *self == Api::Cursor(ApiVersion::V0)
    }

    /// The Cursor API version, when the agents run on the Cursor API.
    pub fn version(&self) -> Option<ApiVersion> {
        match self {
            Api::Cursor(version) => Some(*version),
            Api::Platform(_) => None,
        }
    }

    /// Short, for tables and JSON: `v0`, `v1` or `litellm-agent-platform`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::Cursor(version) => version.as_str(),
            Api::Platform(_) => BackendKind::LitellmAgentPlatform.as_str(),
        }
    }

    /// Where a workflow's `api:` section and the environment say its agents run.
    pub fn resolve(settings: &ApiSettings) -> Result<Self, ApiChoiceError> {
        let backend = match settings.backend {
            Some(backend) => backend,
            None => BackendKind::from_env()?.unwrap_or_default(),
        };
        match backend {
            BackendKind::Cursor => Ok(Api::Cursor(ApiVersion::resolve(settings.version)?)),
            BackendKind::LitellmAgentPlatform => {
                let from = |own: &Option<String>, var: &'static str, field: &'static str| {
                    own.clone()
                        .or_else(|| std::env::var(var).ok())
                        .filter(|v| !v.trim().is_empty())
                        .ok_or(ApiChoiceError::PlatformSetting { field, var })
                };
                Ok(Api::Platform(Platform {
                    url: from(&settings.url, PLATFORM_URL_VAR, "url")?,
                    agent_id: from(&settings.agent_id, PLATFORM_AGENT_VAR, "agent_id")?,
                }))
            }
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Api::Cursor(version) => write!(f, "API {version}"),
            Api::Platform(p) => {
                write!(f, "LiteLLM Agent Platform {} (agent {})", p.url, p.agent_id)
            }
        }
    }
}

/// A version of the Cursor Cloud Agents API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// The legacy API: one agent per launch, follow-ups on the agent, branch names chosen by
    /// the caller, webhooks.
    V0,
    /// The current API: a durable agent with one run per prompt, idempotent launches.
    #[default]
    V1,
}

impl ApiVersion {
    /// `v0` or `v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0 => "v0",
            ApiVersion::V1 => "v1",
        }
    }

    /// The version `CURSOR_API_VERSION` names, if set; an error names what it holds.
    pub fn from_env() -> Result<Option<Self>, ApiChoiceError> {
        match std::env::var(API_VERSION_VAR) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => match value.parse() {
                Ok(version) => Ok(Some(version)),
                Err(UnknownVersion(_)) => Err(ApiChoiceError::BadVersion(value)),
            },
            Err(_) => Ok(None),
        }
    }

    /// The version a workflow runs on: its own `api.version`, else the environment's, else
    /// the default.
    pub fn resolve(file: Option<ApiVersion>) -> Result<Self, ApiChoiceError> {
        match file {
            Some(version) => Ok(version),
            None => Ok(Self::from_env()?.unwrap_or_default()),
        }
    }
}

/// A text that names no API version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an API version; expected v0 or v1")]
pub struct UnknownVersion(pub String);

/// `v0` or `v1` (`0`, `1`, any case, spaces around).
impl std::str::FromStr for ApiVersion {
    type Err = UnknownVersion;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v0" | "0" => Ok(ApiVersion::V0),
            "v1" | "1" => Ok(ApiVersion::V1),
            _ => Err(UnknownVersion(text.to_owned())),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
