//! The command lines hints print: exact, so that following one continues *this* run in
//! *this* state, not the latest run of the default one.

use std::path::{Path, PathBuf};

/// Where `--state` points when it is not given.
pub const DEFAULT_STATE: &str = ".orchestrate";

/// Writes the `orchestrate ...` lines a command suggests, with `--state` when it is needed.
#[derive(Debug, Clone)]
pub struct Hints {
    state: Option<PathBuf>,
}

impl Hints {
    /// Hints for commands run against the state in `state`.
    pub fn new(state: &Path) -> Self {
        Hints {
            state: (state != Path::new(DEFAULT_STATE)).then(|| state.to_owned()),
        }
    }

    /// `orchestrate [--state DIR] ARGS...`, each word quoted for a POSIX shell as needed.
    pub fn command(&self, args: &[&str]) -> String {
        let state = self.state.as_ref().map(|dir| dir.display().to_string());
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
        let default = Hints::new(Path::new(DEFAULT_STATE));
        assert_eq!(
            default.resume("w.yaml", "nightly"),
            "orchestrate apply w.yaml --run nightly --yes"
        );
        let other = Hints::new(Path::new("/var/lib/my state"));
        assert_eq!(
            other.command(&["cancel", "fix/nightly"]),
            "orchestrate --state '/var/lib/my state' cancel fix/nightly"
        );
    }
}
