//! Where the state lives: a directory for the embedded store, or a PostgreSQL URL.

use std::path::{Path, PathBuf};

/// Where the state lives, as `--state` or `ORCHESTRATE_STATE` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory holding the embedded sled store, used by one process at a time.
    Dir(PathBuf),
    /// A PostgreSQL database, shared by every runner that names it.
    Postgres(PgUrl),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL names a database; anything else a directory.
    pub fn parse(text: &str) -> Self {
        if PgUrl::is_url(text) {
            Location::Postgres(PgUrl(text.to_owned()))
        } else {
            Location::Dir(PathBuf::from(text))
        }
    }

    /// The location for messages: a directory as it is, a URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Dir(dir) => dir.display().to_string(),
            Location::Postgres(url) => url.redacted(),
        }
    }

    /// Whether anything was ever written there: a database is asked when opened.
    pub fn exists(&self) -> bool {
        match self {
            Location::Dir(dir) => dir.join("db").exists(),
            Location::Postgres(_) => true,
        }
    }

    /// The directory, for the embedded store.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(dir) => Some(dir),
            Location::Postgres(_) => None,
        }
    }
}

impl From<&Path> for Location {
    fn from(dir: &Path) -> Self {
        Location::Dir(dir.to_owned())
    }
}

/// A PostgreSQL connection URL. It may hold a password, so it is never printed as it is:
/// [`PgUrl::redacted`] is what messages, hints and logs show.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl PgUrl {
    fn is_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The URL to connect with, password and all.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                // Query options can carry a password too (`?password=...`).
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" { "***".into() } else { v };
                        (k.into_owned(), v.into_owned())
                    })
                    .collect();
                if !pairs.is_empty() {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                url.to_string()
            }
            // Unparsable as a URL (a connection error will say so): show only its scheme.
            Err(_) => "postgres://***".to_owned(),
        }
    }

    /// Whether it carries a password, which a hint must not print.
    pub fn has_password(&self) -> bool {
        url::Url::parse(&self.0).is_ok_and(|url| {
            url.password().is_some() || url.query_pairs().any(|(k, _)| k == "password")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_a_database_and_never_shows_its_password() {
        assert_eq!(
            Location::parse(".orchestrate"),
            Location::Dir(".orchestrate".into())
        );
        let Location::Postgres(url) =
            Location::parse("postgres://ci:s3cret@db.internal:5432/orchestrate?sslmode=require")
        else {
            panic!("a database");
        };
        assert_eq!(
            url.redacted(),
            "postgres://ci:***@db.internal:5432/orchestrate?sslmode=require"
        );
        assert!(url.has_password());
        assert!(!format!("{url:?}").contains("s3cret"));
        let Location::Postgres(query) =
            Location::parse("postgresql://ci@localhost/o?password=s3cret")
        else {
            panic!("a database");
        };
        assert!(!query.redacted().contains("s3cret"), "{}", query.redacted());
        assert!(query.has_password());
        let Location::Postgres(bare) = Location::parse("postgres://localhost/o") else {
            panic!("a database");
        };
        assert!(!bare.has_password());
        assert_eq!(bare.redacted(), "postgres://localhost/o");
    }
}
