//! Names the user gives to things in a workflow.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name; validation happens in the spec checks, with a location.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// The name as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The id of a task: the key under `tasks:`.
    TaskId
);
name_type!(
    /// The name of a fleet: the key under `fleets:`.
    FleetName
);

/// Whether `name` is a valid task id or workflow name: `[a-z0-9][a-z0-9_-]*`.
///
/// Ids appear in instance keys (`task[owner/name]`), branch names and templates, so they stay
/// within characters that are safe in all three.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::is_identifier;

    #[test]
    fn identifiers() {
        for ok in ["a", "bump", "fix-tests", "fix_tests", "v2", "2fa"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "Bump", "a b", "a.b", "a[b]", "ü"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
