//! Checks a parsed document against the workflow's JSON Schema, reporting every problem.
//!
//! The schema is the one `orchestrate schema` prints and editors use, generated from the Rust
//! types, so the file an editor accepts and the file `validate` accepts cannot drift apart.
//! Serde would stop at the first problem; walking the schema reports all of them, each at its
//! place, with a hint. Only the keywords schemars emits for our types are interpreted.

use std::str::FromStr;
use std::sync::LazyLock;

use serde_json::Value as Schema;
use serde_yaml::Value;

use super::SourceFile;
use super::yaml::{KeyPath, Spans};
use super::{DURATION_FORMAT, Diagnostic, HumanDuration, REPO_URL_FORMAT, RepoUrl, did_you_mean};

static WORKFLOW_SCHEMA: LazyLock<Schema> = LazyLock::new(super::json_schema);

/// Every place where `value` does not fit the workflow schema.
pub fn check(value: &Value, spans: &Spans, file: &SourceFile) -> Vec<Diagnostic> {
    let mut checker = Checker {
        root: &WORKFLOW_SCHEMA,
        spans,
        file,
        found: Vec::new(),
    };
    checker.node(value, &WORKFLOW_SCHEMA, &KeyPath::root());
    checker.found
}

/// The kinds of YAML node, named as a user reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    List,
    Mapping,
    Tagged,
}

impl Kind {
    fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Integer,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Sequence(_) => Kind::List,
            Value::Mapping(_) => Kind::Mapping,
            Value::Tagged(_) => Kind::Tagged,
        }
    }

    fn from_schema_type(name: &str) -> &'static [Kind] {
        match name {
            "null" => &[Kind::Null],
            "boolean" => &[Kind::Boolean],
            "integer" => &[Kind::Integer],
            "number" => &[Kind::Integer, Kind::Number],
            "string" => &[Kind::String],
            "array" => &[Kind::List],
            "object" => &[Kind::Mapping],
            _ => &[],
        }
    }

    fn article(self) -> &'static str {
        match self {
            Kind::Null => "nothing",
            Kind::Boolean => "true or false",
            Kind::Integer => "a whole number",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::List => "a list",
            Kind::Mapping => "a mapping",
            Kind::Tagged => "a tagged value",
        }
    }
}

struct Checker<'a> {
    root: &'a Schema,
    spans: &'a Spans,
    file: &'a SourceFile,
    found: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn resolve(&self, mut schema: &'a Schema) -> &'a Schema {
        while let Some(reference) = schema.get("$ref").and_then(Schema::as_str) {
            let pointer = reference.trim_start_matches('#');
            match self.root.pointer(pointer) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn branches(schema: &'a Schema) -> Option<&'a Vec<Schema>> {
        schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Schema::as_array)
    }

    /// The node kinds a schema accepts; `None` means any.
    fn kinds(&self, schema: &'a Schema) -> Option<Vec<Kind>> {
        let schema = self.resolve(schema);
        if let Some(branches) = Self::branches(schema) {
            let mut kinds = Vec::new();
            for branch in branches {
                for kind in self.kinds(branch)? {
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
            }
            return Some(kinds);
        }
        match schema.get("type")? {
            Schema::String(name) => Some(Kind::from_schema_type(name).to_vec()),
            Schema::Array(names) => Some(
                names
                    .iter()
                    .filter_map(Schema::as_str)
                    .flat_map(|n| Kind::from_schema_type(n).iter().copied())
                    .collect(),
            ),
            _ => None,
        }
    }

    fn node(&mut self, value: &Value, schema: &'a Schema, path: &KeyPath) {
        let schema = self.resolve(schema);
        if schema == &Schema::Bool(true) {
            return;
        }
        let kind = Kind::of(value);
        if kind == Kind::Tagged {
            self.found.push(
                Diagnostic::at(
                    self.spans.value(path),
                    format!("`{path}` has a YAML tag, which workflows do not use"),
                    "tagged value",
                )
                .help("remove the `!tag`"),
            );
            return;
        }
        if let Some(branches) = Self::branches(schema) {
            self.one_of(value, branches, path);
            return;
        }
        if let Some(expected) = self.kinds(schema) {
            if !expected.contains(&kind) {
                self.wrong_type(value, &expected, schema, path);
                return;
            }
        }
        match value {
            Value::Mapping(mapping) => self.mapping(mapping, schema, path),
            Value::Sequence(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.node(item, item_schema, &path.index(index));
                    }
                }
            }
            Value::Number(number) => self.number(number, schema, path),
            Value::String(text) => self.string(text, schema, path),
            _ => {}
        }
    }

    fn one_of(&mut self, value: &Value, branches: &'a [Schema], path: &KeyPath) {
        let constants: Option<Vec<&str>> = branches
            .iter()
            .map(|b| self.resolve(b).get("const")?.as_str())
            .collect();
        if let Some(allowed) = constants {
            if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
                self.not_one_of(value, &allowed, path);
            }
            return;
        }
        let kind = Kind::of(value);
        let fitting: Vec<&Schema> = branches
            .iter()
            .filter(|b| self.kinds(b).is_none_or(|kinds| kinds.contains(&kind)))
            .collect();
        match fitting.as_slice() {
            [] => {
                let expected = self.kinds(&Schema::Object(
                    [("anyOf".to_owned(), Schema::Array(branches.to_vec()))]
                        .into_iter()
                        .collect(),
                ));
                // A duration that may be null is still a duration: its hint says the unit.
                let formatted = branches
                    .iter()
                    .map(|b| self.resolve(b))
                    .find(|b| b.get("format").is_some())
                    .unwrap_or(&Schema::Null);
                self.wrong_type(value, &expected.unwrap_or_default(), formatted, path);
            }
            [only] => self.node(value, only, path),
            several => {
                // Report the problems of the branch that fits best: the first that fits
                // entirely, else the one with the fewest problems.
                let mut best: Option<Vec<Diagnostic>> = None;
                for branch in several {
                    let mut trial = Checker {
                        root: self.root,
                        spans: self.spans,
                        file: self.file,
                        found: Vec::new(),
                    };
                    trial.node(value, branch, path);
                    if best.as_ref().is_none_or(|b| trial.found.len() < b.len()) {
                        best = Some(trial.found);
                    }
                }
                self.found.extend(best.unwrap_or_default());
            }
        }
    }

    fn mapping(&mut self, mapping: &serde_yaml::Mapping, schema: &'a Schema, path: &KeyPath) {
        let properties = schema.get("properties").and_then(Schema::as_object);
        let additional = schema.get("additionalProperties");
        let mut misspelt: Vec<&str> = Vec::new();
        for (key, value) in mapping {
            let Some(name) = key.as_str() else {
                let shown = serde_yaml::to_string(key).unwrap_or_default();
                self.found.push(
                    Diagnostic::at(
                        self.spans.value(path),
                        format!(
                            "`{}` has a key that is not a string: {}",
                            display(path),
                            shown.trim()
                        ),
                        "in this mapping",
                    )
                    .help("quote the key to make it a string"),
                );
                continue;
            };
            let child = path.key(name);
            if let Some(property) = properties.and_then(|p| p.get(name)) {
                self.node(value, property, &child);
            } else if let Some(additional @ Schema::Object(_)) = additional {
                self.node(value, additional, &child);
            } else if additional == Some(&Schema::Bool(false)) {
                misspelt.extend(self.unknown_key(name, properties, &child));
            }
        }
        let required = schema.get("required").and_then(Schema::as_array);
        for name in required.into_iter().flatten().filter_map(Schema::as_str) {
            // `promt:` is reported as unknown with a hint; `prompt` missing would be noise.
            if !mapping.contains_key(name) && !misspelt.contains(&name) {
                let span = if path == &KeyPath::root() {
                    crate::spec::Span::point(0)
                } else {
                    self.spans.key(path)
                };
                self.found.push(Diagnostic::at(
                    span,
                    format!("{} is missing the required key `{name}`", display(path)),
                    format!("add `{name}:` here"),
                ));
            }
        }
    }

    /// Reports an unknown key; returns the key it probably meant.
    fn unknown_key(
        &mut self,
        name: &str,
        properties: Option<&'a serde_json::Map<String, Schema>>,
        path: &KeyPath,
    ) -> Option<&'a str> {
        let known: Vec<&'a str> = properties
            .into_iter()
            .flat_map(|p| p.keys())
            .map(String::as_str)
            .collect();
        let close = did_you_mean(name, known.iter().copied());
        let help = match close {
            Some(close) => format!("did you mean `{close}`?"),
            None if known.is_empty() => "this mapping takes no keys".to_owned(),
            None => format!("known keys here: {}", known.join(", ")),
        };
        self.found.push(
            Diagnostic::at(
                self.spans.key(path),
                format!("unknown key `{name}`"),
                "unknown key",
            )
            .help(help),
        );
        close
    }

    fn not_one_of(&mut self, value: &Value, allowed: &[&str], path: &KeyPath) {
        let shown = value.as_str().map_or_else(
            || {
                serde_yaml::to_string(value)
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            },
            str::to_owned,
        );
        let hint = did_you_mean(&shown, allowed.iter().copied())
            .map(|close| format!("did you mean `{close}`?"));
        self.found.push(
            Diagnostic::at(
                self.spans.value(path),
                format!(
                    "`{path}` must be one of {}; found `{shown}`",
                    allowed.join(", ")
                ),
                "not a known value",
            )
            .maybe_help(hint),
        );
    }

    fn wrong_type(&mut self, value: &Value, expected: &[Kind], schema: &Schema, path: &KeyPath) {
        let found = Kind::of(value);
        let names: Vec<&str> = expected
            .iter()
            .filter(|k| **k != Kind::Null)
            .map(|k| k.article())
            .collect();
        let expected_text = match names.as_slice() {
            [] => "nothing".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        let duration = schema.get("format").and_then(Schema::as_str) == Some(DURATION_FORMAT);
        if duration && matches!(found, Kind::Integer | Kind::Number) {
            // "Quote it" would only lead to "a number needs a unit": say the unit now.
            let shown = serde_yaml::to_string(value).unwrap_or_default();
            let error = HumanDuration::from_str(shown.trim()).err();
            self.found.push(
                Diagnostic::at(
                    self.spans.value(path),
                    format!(
                        "{} is a duration: `{}` needs a unit",
                        display(path),
                        shown.trim()
                    ),
                    "no unit",
                )
                .maybe_help(error.map(|e| e.help().to_owned())),
            );
            return;
        }
        let span = self.spans.value(path);
        let template = (found == Kind::Mapping && expected.contains(&Kind::String))
            .then(|| {
                let line = self.file.line_column(span.start).0;
                super::yaml::template_value_hint(self.file, line)
            })
            .flatten();
        let help = if let Some(template) = template {
            Some(template)
        } else if expected.contains(&Kind::String)
            && matches!(found, Kind::Integer | Kind::Number | Kind::Boolean)
        {
            let shown = serde_yaml::to_string(value).unwrap_or_default();
            Some(format!(
                "quote it to make it a string: \"{}\"",
                shown.trim()
            ))
        } else if found == Kind::Null {
            Some("the key has no value; give it one or remove the key".to_owned())
        } else if expected.contains(&Kind::List) && found == Kind::String {
            Some("write a list, for example `[a, b]`, or one item per line after `- `".to_owned())
        } else if expected.contains(&Kind::List) && found == Kind::Mapping {
            Some(if display(path).ends_with("mcp_servers`") {
                "write each server as a list item with its name inside, as the API takes them: `- name: vulndb` and, below it, `url: ...` or `command: ...`".to_owned()
            } else {
                "write each entry as a list item, one per line after `- `".to_owned()
            })
        } else {
            None
        };
        self.found.push(
            Diagnostic::at(
                self.spans.value(path),
                format!(
                    "{} must be {expected_text}, found {}",
                    display(path),
                    found.article()
                ),
                format!("expected {expected_text}"),
            )
            .maybe_help(help),
        );
    }

    fn number(&mut self, number: &serde_yaml::Number, schema: &Schema, path: &KeyPath) {
        let Some(value) = number.as_f64() else { return };
        let limit = |key| schema.get(key).and_then(Schema::as_f64);
        let max = limit("maximum").or(match schema.get("format").and_then(Schema::as_str) {
            Some("uint32") => Some(f64::from(u32::MAX)),
            _ => None,
        });
        let problem = match (limit("minimum"), max) {
            (Some(min), _) if value < min => Some(format!("at least {min}")),
            (_, Some(max)) if value > max => Some(format!("at most {max}")),
            _ => None,
        };
        if let Some(bound) = problem {
            self.found.push(Diagnostic::at(
                self.spans.value(path),
                format!("`{path}` must be {bound}, found {number}"),
                "out of range",
            ));
        }
    }

    fn string(&mut self, text: &str, schema: &Schema, path: &KeyPath) {
        let problem = match schema.get("format").and_then(Schema::as_str) {
            Some(DURATION_FORMAT) => text
                .parse::<HumanDuration>()
                .err()
                .map(|e| (e.to_string(), e.help().to_owned())),
            Some(REPO_URL_FORMAT) => text
                .parse::<RepoUrl>()
                .err()
                .map(|e| (e.to_string(), e.help().to_owned())),
            _ => None,
        };
        if let Some((message, help)) = problem {
            self.found
                .push(Diagnostic::at(self.spans.value(path), message, "here").help(help));
        }
    }
}

/// `the top level` or `` `tasks.bump` ``.
fn display(path: &KeyPath) -> String {
    if path == &KeyPath::root() {
        "the workflow".to_owned()
    } else {
        format!("`{path}`")
    }
}
