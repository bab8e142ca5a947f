//! Fleets: named sets of repositories a task fans out over.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{HumanDuration, RepoUrl};

/// A fleet: a list of repositories, or a query resolved through the API at apply time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Fleet {
    /// Repositories listed in the file.
    Repos(Vec<FleetRepo>),
    /// Repositories discovered through `GET /v0/repositories`.
    Discover(DiscoverFleet),
}

/// One repository of a listed fleet: a URL, or a URL with its own ref.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FleetRepo {
    /// `https://github.com/OWNER/NAME`.
    Url(RepoUrl),
    /// A repository with its own settings.
    Detailed(DetailedRepo),
}

/// A repository with the ref its agents start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetailedRepo {
    /// `https://github.com/OWNER/NAME`.
    pub repo: RepoUrl,
    /// Git ref for this repository; overrides the task's and the defaults'.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

impl FleetRepo {
    /// The repository URL.
    pub fn url(&self) -> &RepoUrl {
        match self {
            FleetRepo::Url(url) | FleetRepo::Detailed(DetailedRepo { repo: url, .. }) => url,
        }
    }

    /// The ref this item pins, if any.
    pub fn git_ref(&self) -> Option<&str> {
        match self {
            FleetRepo::Url(_) => None,
            FleetRepo::Detailed(detailed) => detailed.git_ref.as_deref(),
        }
    }
}

/// A fleet resolved from the repositories the API key can reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverFleet {
    /// The query.
    pub discover: Discover,
}

/// Which repositories a discover fleet takes from `GET /v0/repositories`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    /// GitHub owner (user or organisation) whose repositories are taken.
    pub owner: String,
    /// Glob on the repository name (`*`, `?`, `[abc]`); default `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Use the cached repository list while it is younger than this (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<HumanDuration>,
}
