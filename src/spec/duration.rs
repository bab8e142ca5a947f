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
        let error = |reason: String| DurationError {
            text: text.to_owned(),
            reason,
        };
        let duration = humantime::parse_duration(text).map_err(|e| error(e.to_string()))?;
        if duration.is_zero() {
            return Err(error("it must be longer than zero".to_owned()));
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
}
