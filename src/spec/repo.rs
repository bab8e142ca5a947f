//! GitHub repository URLs.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A GitHub repository, written `https://github.com/OWNER/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoUrl {
    owner: String,
    name: String,
}

/// Why a string is not a GitHub repository URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoUrlError {
    /// Not an https URL on github.com.
    #[error("`{0}` is not a GitHub repository URL")]
    NotGitHub(String),
    /// On github.com, but not exactly OWNER/NAME.
    #[error("`{0}` is not a repository URL: expected exactly OWNER/NAME after github.com")]
    NotRepository(String),
    /// OWNER or NAME holds characters GitHub does not allow.
    #[error("`{0}` has characters GitHub does not allow in an owner or repository name")]
    BadCharacters(String),
}

impl RepoUrlError {
    /// A hint that helps fix the URL.
    pub fn help(&self) -> &'static str {
        match self {
            RepoUrlError::NotGitHub(_) => {
                "orchestrate runs Cursor Cloud Agents, which work on GitHub repositories: write https://github.com/OWNER/NAME"
            }
            RepoUrlError::NotRepository(_) => {
                "drop the extra path (like /tree/main); set the branch with `ref:` instead"
            }
            RepoUrlError::BadCharacters(_) => {
                "owners use letters, digits and dashes; names also `.` and `_`"
            }
        }
    }
}

impl RepoUrl {
    /// Owner (user or organisation).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `owner/name`, as used in instance keys.
    pub fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The same repository compared case-insensitively, as GitHub does.
    pub fn same_repository(&self, other: &RepoUrl) -> bool {
        self.owner.eq_ignore_ascii_case(&other.owner) && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl FromStr for RepoUrl {
    type Err = RepoUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url
            .strip_prefix("https://github.com/")
            .ok_or_else(|| RepoUrlError::NotGitHub(url.to_owned()))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let rest = rest.strip_suffix(".git").unwrap_or(rest);
        let mut parts = rest.split('/');
        let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RepoUrlError::NotRepository(url.to_owned()));
        };
        if owner.is_empty() || name.is_empty() {
            return Err(RepoUrlError::NotRepository(url.to_owned()));
        }
        let owner_ok = owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let name_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !owner_ok || !name_ok || name == "." || name == ".." {
            return Err(RepoUrlError::BadCharacters(url.to_owned()));
        }
        Ok(RepoUrl {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl TryFrom<String> for RepoUrl {
    type Error = RepoUrlError;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        url.parse()
    }
}

impl From<RepoUrl> for String {
    fn from(url: RepoUrl) -> String {
        url.to_string()
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://github.com/{}/{}", self.owner, self.name)
    }
}

/// The schema `format` the spec checker validates with [`RepoUrl::from_str`].
pub const REPO_URL_FORMAT: &str = "github-repository-url";

impl JsonSchema for RepoUrl {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RepoUrl".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A GitHub repository: https://github.com/OWNER/NAME",
            "type": "string",
            "format": REPO_URL_FORMAT,
            "pattern": "^https://github\\.com/[A-Za-z0-9-]+/[A-Za-z0-9._-]+?(\\.git)?/?$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repository_urls() {
        for (url, slug) in [
            ("https://github.com/acme/api", "acme/api"),
            ("https://github.com/acme/api.git", "acme/api"),
            ("https://github.com/acme/api/", "acme/api"),
            (
                "https://github.com/Acme-Co/my_repo.rs",
                "Acme-Co/my_repo.rs",
            ),
        ] {
            assert_eq!(url.parse::<RepoUrl>().unwrap().slug(), slug, "{url}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_repository() {
        let cases = [
            ("http://github.com/acme/api", "NotGitHub"),
            ("https://gitlab.com/acme/api", "NotGitHub"),
            ("acme/api", "NotGitHub"),
            ("https://github.com/acme", "NotRepository"),
            ("https://github.com/acme/api/tree/main", "NotRepository"),
            ("https://github.com//api", "NotRepository"),
            ("https://github.com/ac me/api", "BadCharacters"),
            ("https://github.com/acme/..", "BadCharacters"),
        ];
        for (url, kind) in cases {
            let err = url.parse::<RepoUrl>().unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{url}: {err:?}");
        }
    }

    #[test]
    fn compares_like_github() {
        let a: RepoUrl = "https://github.com/Acme/API".parse().unwrap();
        let b: RepoUrl = "https://github.com/acme/api".parse().unwrap();
        assert!(a.same_repository(&b));
    }
}
