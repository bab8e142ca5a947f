//! The one error every command returns: what went wrong, how it is printed, and the exit code
//! it means, decided in one place.

use super::{Exit, Output};
use crate::apply::ApplyError;
use crate::cursor::{ApiError, ConfigError};
use crate::spec::{Invalid, LoadError};
use crate::state::StateError;

/// Why a command did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A workflow file cannot be read or is not valid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A workflow loads but cannot be planned: its problems, located in the file.
    #[error("{} is not a valid workflow", .0.file.name())]
    Invalid(Invalid),
    /// An apply could not start.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The state cannot be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The API answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A call the command needed failed.
    #[error("{what}: {error}")]
    ApiCall {
        /// What the call was for.
        what: String,
        /// How it failed.
        error: ApiError,
    },
    /// The client cannot be configured from the environment.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad input or usage: nothing was done.
    #[error("{0}")]
    Usage(String),
    /// The API or the simulator cannot be used.
    #[error("{0}")]
    Unusable(String),
    /// An error, with what to do about it.
    #[error("{error}")]
    Hinted {
        /// The error.
        error: Box<Error>,
        /// What to do, printed after it.
        hint: String,
    },
    /// The user declined the launch: nothing was done, and the command that launches is
    /// given. Not bad input: the run is where it was, to continue when they want.
    #[error("not confirmed: nothing was launched; to launch, run `{resume}`")]
    NotConfirmed {
        /// The command that launches without asking.
        resume: String,
    },
    /// Several errors, printed in turn; the worst decides the exit.
    #[error("{} errors", .0.len())]
    Many(Vec<Error>),
}

impl Error {
    /// The process exit code this error means (DESIGN.md section 1).
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Apply(error) if error.is_api_unusable() => Exit::ApiUnusable,
            Error::Load(_)
            | Error::Invalid(_)
            | Error::State(_)
            | Error::Usage(_)
            | Error::Apply(_) => Exit::Invalid,
            Error::Api(error) | Error::ApiCall { error, .. } => match error {
                ApiError::NotFound { .. } | ApiError::BadRequest { .. } => Exit::Invalid,
                ApiError::Conflict { .. } => Exit::TaskFailed,
                _ => Exit::ApiUnusable,
            },
            Error::Config(_) | Error::Unusable(_) => Exit::ApiUnusable,
            Error::NotConfirmed { .. } => Exit::Interrupted,
            Error::Hinted { error, .. } => error.exit_code(),
            Error::Many(errors) => errors
                .iter()
                .map(Error::exit_code)
                .max_by_key(|exit| *exit as u8)
                .unwrap_or(Exit::Invalid),
        }
    }

    /// This error, with `hint` printed after it.
    #[must_use]
    pub fn hinted(self, hint: impl Into<String>) -> Self {
        Error::Hinted {
            error: Box::new(self),
            hint: hint.into(),
        }
    }

    /// Prints the error on stderr: a workflow's problems with their source lines, each of
    /// several errors on its own line, a hint after its error.
    pub fn print(&self, out: &Output) {
        match self {
            Error::Load(error) => out.load_error(error),
            Error::Invalid(invalid) => out.invalid(invalid),
            Error::Apply(ApplyError::Plan(errors)) => {
                for error in errors {
                    out.error(&error.to_string());
                }
            }
            Error::Apply(ApplyError::EnvUnset(problems)) => {
                for problem in problems {
                    out.error(&format!("task {problem}"));
                }
            }
            Error::Hinted { error, hint } => {
                error.print(out);
                out.status(hint);
            }
            Error::Many(errors) => {
                for error in errors {
                    error.print(out);
                }
            }
            other => out.error(&other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_means_one_exit_code() {
        let cases = [
            (Error::Usage("bad flag".into()), Exit::Invalid),
            (Error::Unusable("no key".into()), Exit::ApiUnusable),
            (Error::Config(ConfigError::MissingKey), Exit::ApiUnusable),
            (
                Error::Api(ApiError::NotFound {
                    message: "no agent".into(),
                }),
                Exit::Invalid,
            ),
            (
                Error::Api(ApiError::Conflict {
                    code: None,
                    message: "busy".into(),
                }),
                Exit::TaskFailed,
            ),
            (
                Error::Apply(ApplyError::TooManyAgents { count: 7, max: 5 }),
                Exit::Invalid,
            ),
            (
                Error::Apply(ApplyError::Config(ConfigError::MissingKey)),
                Exit::ApiUnusable,
            ),
            (Error::Usage("x".into()).hinted("do y"), Exit::Invalid),
            (
                Error::NotConfirmed {
                    resume: "orchestrate apply w.yaml --run k --yes".into(),
                },
                Exit::Interrupted,
            ),
            (
                Error::Many(vec![Error::Usage("a".into()), Error::Unusable("b".into())]),
                Exit::ApiUnusable,
            ),
        ];
        for (error, exit) in cases {
            assert_eq!(error.exit_code(), exit, "{error:?}");
        }
    }
}
