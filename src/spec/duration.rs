//! Durations written for humans: `90m`, `1h 30m`, `2days`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A duration parsed with humantime (`90m`, `1h30m`, `45s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HumanDuration(Duration);

/// The schema `format` the spec checker validates with [`HumanDuration::from_str`].
pub const DURATION_FORMAT: &str = "humantime-duration";

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration: {reason}")]
pub struct DurationError {
    text: String,
    reason: String,
    help: String,
}

impl DurationError {
    /// How to write it: with the unit a bare number most likely meant, if it is one.
    pub fn help(&self) -> &str {
        &self.help
    }
}

/// What a duration is measured in where it is written, so that a bare number gets the
/// unit its writer most likely meant: nobody means seconds for an agent's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Agent timeouts, intervals: minutes, else seconds or hours.
    Minutes,
    /// Ages of runs: days, else hours.
    Days,
}

impl Scale {
    fn suggestion(self, number: &str) -> String {
        match self {
            Scale::Minutes => format!("`{number}m` for minutes, or `{number}s`, `{number}h`"),
            Scale::Days => format!("`{number}d` for days, or `{number}h`"),
        }
    }

    fn examples(self) -> &'static str {
        match self {
            Scale::Minutes => "45s, 90m or 1h30m",
            Scale::Days => "30d, 12h or 2weeks",
        }
    }
}

/// Parses `text` as a duration, the error written for `scale`.
pub fn parse_duration(text: &str, scale: Scale) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let error = |reason: String, help: String| DurationError {
        text: text.to_owned(),
        reason,
        help,
    };
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(error(
            "a number needs a unit".to_owned(),
            format!("write {}", scale.suggestion(trimmed)),
        ));
    }
    let examples = || {
        format!(
            "write a number and a unit, for example {}",
            scale.examples()
        )
    };
    humantime::parse_duration(trimmed).map_err(|e| error(e.to_string(), examples()))
}

/// `--older-than` and other ages: a bare number is refused with a suggestion in days.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    parse_duration(text, Scale::Days).map_err(|e| format!("{e}; {}", e.help()))
}

/// Durations of command-line flags (`--poll-interval`): a bare number suggests minutes.
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text, Scale::Minutes).map_err(|e| format!("{e}; {}", e.help()))
}

impl HumanDuration {
    /// Wraps a duration.
    pub fn new(duration: Duration) -> Self {
        Self(duration)
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let duration = parse_duration(text, Scale::Minutes)?;
        if duration.is_zero() {
            return Err(DurationError {
                text: text.to_owned(),
                reason: "it must be longer than zero".to_owned(),
                help: format!(
                    "write a number and a unit, for example {}",
                    Scale::Minutes.examples()
                ),
            });
        }
        Ok(Self(duration))
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = DurationError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<HumanDuration> for String {
    fn from(duration: HumanDuration) -> String {
        duration.to_string()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration such as 45s, 90m, 1h30m or 2days",
            "type": "string",
            "format": DURATION_FORMAT,
            "examples": ["90m", "1h30m"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d: HumanDuration = "1h30m".parse().unwrap();
        assert_eq!(d.get(), Duration::from_secs(5400));
        assert_eq!(d.to_string(), "1h 30m");
    }

    #[test]
    fn rejects_bad_and_zero() {
        assert!("ninety minutes".parse::<HumanDuration>().is_err());
        assert!("90".parse::<HumanDuration>().is_err());
        assert!("0s".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn a_bare_number_gets_the_unit_it_most_likely_meant() {
        let timeout = "10".parse::<HumanDuration>().unwrap_err();
        assert_eq!(
            timeout.to_string(),
            "`10` is not a duration: a number needs a unit"
        );
        assert_eq!(timeout.help(), "write `10m` for minutes, or `10s`, `10h`");
        assert_eq!(
            parse_age("30").unwrap_err(),
            "`30` is not a duration: a number needs a unit; write `30d` for days, or `30h`"
        );
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(
            parse_age("0s").unwrap(),
            Duration::ZERO,
            "prune every settled run"
        );
        assert!(
            parse_age("thirty days")
                .unwrap_err()
                .contains("for example 30d")
        );
    }
}
