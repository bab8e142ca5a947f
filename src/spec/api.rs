//! Which API a workflow runs on: `api: {version: v0|v1}`, else `CURSOR_API_VERSION`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The variable that picks the API version when a workflow does not.
pub const API_VERSION_VAR: &str = "CURSOR_API_VERSION";

/// The `api:` section of a workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// The Cursor API version (default: `CURSOR_API_VERSION`, else v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ApiVersion>,
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
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(API_VERSION_VAR) {
            Ok(value) if value.trim().is_empty() => Ok(None),
            Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
                "v0" | "0" => Ok(Some(ApiVersion::V0)),
                "v1" | "1" => Ok(Some(ApiVersion::V1)),
                _ => Err(format!(
                    "{API_VERSION_VAR} is `{value}`; expected `v0` or `v1`"
                )),
            },
            Err(_) => Ok(None),
        }
    }

    /// The version a workflow runs on: its own `api.version`, else the environment's, else
    /// the default.
    pub fn resolve(file: Option<ApiVersion>) -> Result<Self, String> {
        match file {
            Some(version) => Ok(version),
            None => Ok(Self::from_env()?.unwrap_or_default()),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
