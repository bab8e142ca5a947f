//! The command lines hints print: exact, so that following one continues *this* run in
//! *this* state, not the latest run of the default one.

use crate::state::Location;

/// Where `--state` points when it is not given.
pub const DEFAULT_STATE: &str = ".orchestrate";

/// Writes the `orchestrate ...` lines a command suggests, with `--state` when it is needed.
#[derive(Debug, Clone)]
pub struct Hints {
    state: Option<String>,
}

impl Hints {
    /// Hints for commands run against the state at `state`.
    pub fn new(state: &Location) -> Self {
        let state = match state {
            Location::Dir(dir) => {
                (dir.as_os_str() != DEFAULT_STATE).then(|| dir.display().to_string())
            }
            // A password is never printed: where it came from `ORCHESTRATE_STATE`, the
            // same variable names the database for the hint too; else it is left out.
            Location::Postgres(url) if url.has_password() => {
                let from_env = std::env::var("ORCHESTRATE_STATE").is_ok_and(|v| v == url.expose());
                (!from_env).then(|| url.redacted())
            }
            Location::Postgres(url) => Some(url.expose().to_owned()),
        };
        Hints { state }
    }

    /// `orchestrate [--state DIR|URL] ARGS...`, each word quoted for a POSIX shell as needed.
    pub fn command(&self, args: &[&str]) -> String {
        let state = self.state.clone();
        let words = std::iter::once("orchestrate")
            .chain(
                state
                    .as_deref()
                    .map(|dir| ["--state", dir])
                    .into_iter()
                    .flatten(),
            )
            .chain(args.iter().copied());
        words.map(quote).collect::<Vec<_>>().join(" ")
    }

    /// The command that continues run `key` of `file` without asking again.
    pub fn resume(&self, file: &str, key: &str) -> String {
        self.command(&["apply", file, "--run", key, "--yes"])
    }
}

fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| word.to_owned(), std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_state_is_not_spelled_out_and_another_one_is() {
        let default = Hints::new(&Location::parse(DEFAULT_STATE));
        assert_eq!(
            default.resume("w.yaml", "nightly"),
            "orchestrate apply w.yaml --run nightly --yes"
        );
        let other = Hints::new(&Location::parse("/var/lib/my state"));
        assert_eq!(
            other.command(&["cancel", "fix/nightly"]),
            "orchestrate --state '/var/lib/my state' cancel fix/nightly"
        );
    }
}
