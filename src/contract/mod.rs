//! Cursor's published OpenAPI files as an oracle: every exchange with the API is checked
//! against the operation it belongs to.
//!
//! The files are read at run time (tests read them from `../shared/api/`, users point
//! `orchestrate sim --strict DIR` at them); no copy is part of this crate. A request is
//! checked for its operation, path and query parameters, auth scheme and JSON body; an
//! answer for a declared status code and, when JSON, a body that fits the schema. OpenAPI
//! 3.0's schema dialect is turned into JSON Schema draft 4 (`nullable`) and validated with
//! the `jsonschema` crate.
//!
//! Deliberate exceptions, each written in the README: v0 accepts Basic auth (its docs page
//! says Basic, its file lists only Bearer), and gateway answers (502, 503, 504) may come from
//! the network in front of the API whether or not an operation declares them.

mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// The file names of Cursor's OpenAPI files, as published.
pub const SPEC_FILES: [&str; 2] = ["cursor-openapi-v0.yaml", "cursor-openapi-v1.yaml"];

/// A contract file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The file cannot be read.
    #[error("cannot read the OpenAPI file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an OpenAPI document we can use.
    #[error("the OpenAPI file {path} is not usable: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// Which half of an exchange broke the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// What the client sent.
    Request,
    /// What the server answered.
    Response,
}

/// One way an exchange differs from the published operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `GET /v1/agents/{id}` (the spec's template), or the raw path when none matched.
    pub operation: String,
    /// Request or response.
    pub side: Side,
    /// What is wrong, with the JSON pointer of the offending value when there is one.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            Side::Request => "request",
            Side::Response => "response",
        };
        write!(f, "{} ({side}): {}", self.operation, self.message)
    }
}

/// How a request authenticated itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Basic ...`.
    Basic,
    /// `Authorization: Bearer ...`.
    Bearer,
    /// No `Authorization`, or another scheme.
    Other,
}

impl AuthScheme {
    /// The scheme of an `Authorization` header value.
    pub fn of(header: Option<&str>) -> Self {
        match header.and_then(|h| h.split_once(' ')).map(|(s, _)| s) {
            Some(s) if s.eq_ignore_ascii_case("basic") => Self::Basic,
            Some(s) if s.eq_ignore_ascii_case("bearer") => Self::Bearer,
            _ => Self::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Bearer => "bearer",
            Self::Other => "none",
        }
    }
}

/// A request as the server received it, body read.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query (and without any proxy prefix).
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The scheme of its `Authorization` header.
    pub auth: AuthScheme,
    /// Its `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// Its body.
    pub body: &'a [u8],
}

/// An answer as the server sent it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Its status code.
    pub status: u16,
    /// Its `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// Its body; `None` when it is a stream that was not read.
    pub body: Option<&'a [u8]>,
}

/// Both published API files, compiled: shared, read-only, by every simulator of a process.
pub struct Contract {
    operations: Vec<Operation>,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("operations", &self.operations.len())
            .finish_non_exhaustive()
    }
}

impl Contract {
    /// Reads `cursor-openapi-v0.yaml` and `cursor-openapi-v1.yaml` from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, ContractError> {
        let mut operations = Vec::new();
        for file in SPEC_FILES {
            operations.extend(load_file(&dir.join(file))?);
        }
        Ok(Self { operations })
    }

    /// Whether a path is one of Cursor's (the simulator also serves the LiteLLM Agent
    /// Platform, `/session` and `/v1/sessions/...`, and its own `/__sim/...`).
    pub fn covers(path: &str) -> bool {
        (path.starts_with("/v0/") || path.starts_with("/v1/")) && !path.starts_with("/v1/sessions")
    }

    /// The operation a request belongs to, as `METHOD /template`.
    pub fn operation(&self, method: &str, path: &str) -> Option<String> {
        self.find(method, path).map(Operation::name)
    }

    /// What is wrong with a request.
    pub fn check_request(&self, request: &Request<'_>) -> Vec<Violation> {
        match self.find(request.method, request.path) {
            Some(op) => op.check_request(request),
            None => vec![Violation {
                operation: format!("{} {}", request.method, request.path),
                side: Side::Request,
                message: "no operation of the published API has this method and path".into(),
            }],
        }
    }

    /// What is wrong with the answer to a request.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        response: &Response<'_>,
    ) -> Vec<Violation> {
        // No operation: already said on the request side.
        self.find(method, path)
            .map(|op| op.check_response(response))
            .unwrap_or_default()
    }

    fn find(&self, method: &str, path: &str) -> Option<&Operation> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // A literal segment beats a parameter (`/builds/active` before `/builds/{buildId}`).
        self.operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method) && op.matches(&segments))
            .max_by_key(|op| op.literal_segments())
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
    Header,
}

struct Parameter {
    name: String,
    location: Location,
    required: bool,
    /// The JSON type its text is read as (`integer`, `boolean`, `string`...).
    kind: String,
    schema: jsonschema::Validator,
}

struct Operation {
    method: String,
    template: String,
    segments: Vec<Segment>,
    parameters: Vec<Parameter>,
    /// `Some(required)` when the operation takes a JSON body.
    body: Option<(bool, jsonschema::Validator)>,
    /// Status code (or `default`) to what its content must be.
    responses: BTreeMap<String, Content>,
    /// The auth schemes it accepts.
    auth: Vec<AuthScheme>,
}

/// What an answer's body must be.
enum Content {
    /// JSON fitting a schema.
    Json(jsonschema::Validator),
    /// A stream of this media type (`text/event-stream`), not read.
    Stream(String),
    /// No body is described.
    Empty,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(template, actual)| match template {
                    Segment::Literal(literal) => literal == actual,
                    Segment::Param(_) => !actual.is_empty(),
                })
    }

    fn literal_segments(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    fn violation(&self, side: Side, message: impl Into<String>) -> Violation {
        Violation {
            operation: self.name(),
            side,
            message: message.into(),
        }
    }

    fn check_request(&self, request: &Request<'_>) -> Vec<Violation> {
        let mut found = Vec::new();
        if !self.auth.contains(&request.auth) {
            let allowed: Vec<_> = self.auth.iter().map(|a| a.name()).collect();
            found.push(self.violation(
                Side::Request,
                format!(
                    "auth scheme {} is not one of {}",
                    request.auth.name(),
                    allowed.join(", ")
                ),
            ));
        }
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let mut values: Vec<(Location, String, String)> = self
            .segments
            .iter()
            .zip(&segments)
            .filter_map(|(template, actual)| match template {
                Segment::Param(name) => {
                    Some((Location::Path, name.clone(), percent_decode(actual)))
                }
                Segment::Literal(_) => None,
            })
            .collect();
        values.extend(
            url::form_urlencoded::parse(request.query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (Location::Query, k.into_owned(), v.into_owned())),
        );
        for (location, name, text) in &values {
            let Some(parameter) = self
                .parameters
                .iter()
                .find(|p| p.location == *location && p.name == *name)
            else {
                found.push(self.violation(
                    Side::Request,
                    format!("query parameter `{name}` is not in the published operation"),
                ));
                continue;
            };
            let value = parameter.value(text);
            for error in parameter.schema.iter_errors(&value) {
                found.push(self.violation(
                    Side::Request,
                    format!("parameter `{name}` = {text:?}: {error}"),
                ));
            }
        }
        for parameter in self.parameters.iter().filter(|p| p.required) {
            if parameter.location != Location::Header
                && !values.iter().any(|(_, name, _)| *name == parameter.name)
            {
                found.push(self.violation(
                    Side::Request,
                    format!("required parameter `{}` is missing", parameter.name),
                ));
            }
        }
        match (&self.body, request.body.is_empty()) {
            (None, false) => {
                found.push(self.violation(Side::Request, "the operation takes no body"));
            }
            (Some((true, _)), true) => {
                found.push(self.violation(Side::Request, "the required JSON body is missing"));
            }
            (Some((_, schema)), false) => {
                if !request
                    .content_type
                    .is_some_and(|c| c.starts_with("application/json"))
                {
                    found.push(self.violation(
                        Side::Request,
                        format!(
                            "content type {:?} is not application/json",
                            request.content_type.unwrap_or("(none)")
                        ),
                    ));
                }
                found.extend(self.check_json(Side::Request, schema, request.body));
            }
            (_, true) => {}
        }
        found
    }

    fn check_response(&self, response: &Response<'_>) -> Vec<Violation> {
        let status = response.status.to_string();
        let content = match self
            .responses
            .get(&status)
            .or_else(|| self.responses.get("default"))
        {
            Some(content) => content,
            None if matches!(response.status, 502..=504) => return Vec::new(),
            None => {
                let declared: Vec<&str> = self.responses.keys().map(String::as_str).collect();
                return vec![self.violation(
                    Side::Response,
                    format!(
                        "status {status} is not declared (declared: {})",
                        declared.join(", ")
                    ),
                )];
            }
        };
        match content {
            Content::Empty => Vec::new(),
            Content::Stream(media) => {
                if response.content_type.is_some_and(|c| c.starts_with(media)) {
                    Vec::new()
                } else {
                    vec![self.violation(
                        Side::Response,
                        format!(
                            "status {status}: content type {:?} is not {media}",
                            response.content_type.unwrap_or("(none)")
                        ),
                    )]
                }
            }
            Content::Json(schema) => match response.body {
                Some(body) => self
                    .check_json(Side::Response, schema, body)
                    .into_iter()
                    .map(|mut v| {
                        v.message = format!("status {status}: {}", v.message);
                        v
                    })
                    .collect(),
                None => vec![self.violation(
                    Side::Response,
                    format!("status {status}: a stream where JSON is declared"),
                )],
            },
        }
    }

    fn check_json(
        &self,
        side: Side,
        schema: &jsonschema::Validator,
        body: &[u8],
    ) -> Vec<Violation> {
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) => {
                return vec![self.violation(side, format!("the body is not JSON: {error}"))];
            }
        };
        schema
            .iter_errors(&value)
            .map(|error| {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                self.violation(side, format!("at {at}: {error}"))
            })
            .collect()
    }
}

impl Parameter {
    /// The parameter's text read as the JSON type its schema names.
    fn value(&self, text: &str) -> Value {
        let parsed = match self.kind.as_str() {
            "integer" => text.parse::<i64>().ok().map(Value::from),
            "number" => text.parse::<f64>().ok().map(Value::from),
            "boolean" => text.parse::<bool>().ok().map(Value::from),
            _ => None,
        };
        parsed.unwrap_or_else(|| Value::String(text.to_owned()))
    }
}

fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map_or_else(|| segment.to_owned(), |(_, v)| v.into_owned())
}

fn load_file(path: &Path) -> Result<Vec<Operation>, ContractError> {
    let text = std::fs::read_to_string(path).map_err(|source| ContractError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |message: String| ContractError::Invalid {
        path: path.to_owned(),
        message,
    };
    let document: Value =
        serde_yaml::from_str(&text).map_err(|e| invalid(format!("not YAML: {e}")))?;
    schema::operations(&document).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published files, when this checkout has them beside it (CI does).
    fn published() -> Option<Contract> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/api");
        if !dir.join(SPEC_FILES[1]).exists() {
            eprintln!(
                "contract tests skipped: no OpenAPI files in {}",
                dir.display()
            );
            return None;
        }
        Some(Contract::load_dir(&dir).unwrap())
    }

    fn get(path: &'static str, query: Option<&'static str>) -> Request<'static> {
        Request {
            method: "GET",
            path,
            query,
            auth: AuthScheme::Basic,
            content_type: None,
            body: b"",
        }
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter_and_unknown_paths_are_violations() {
        let Some(contract) = published() else { return };
        assert_eq!(
            contract
                .operation("GET", "/v1/agents/bc-1/runs/run-2")
                .as_deref(),
            Some("GET /v1/agents/{id}/runs/{runId}")
        );
        assert_eq!(
            contract
                .operation("GET", "/v1/environments/e/builds/active")
                .as_deref(),
            Some("GET /v1/environments/{id}/builds/active")
        );
        let found = contract.check_request(&get("/v1/agents/bc-1/nothing", None));
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn query_parameters_are_read_as_their_types() {
        let Some(contract) = published() else { return };
        assert!(
            contract
                .check_request(&get("/v1/agents", Some("limit=100&includeArchived=true")))
                .is_empty()
        );
        let found = contract.check_request(&get("/v1/agents", Some("limit=101&color=red")));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("limit"), "{found:?}");
        assert!(found[1].message.contains("`color`"), "{found:?}");
    }

    #[test]
    fn a_known_wrong_answer_is_a_violation() {
        let Some(contract) = published() else { return };
        // The shape the simulator used to give: a run wrapped in `{run}`.
        let wrapped = br#"{"run": {"id": "run-1", "agentId": "bc-1", "status": "RUNNING", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}}"#;
        let found = contract.check_response(
            "GET",
            "/v1/agents/bc-1/runs/run-1",
            &Response {
                status: 200,
                content_type: Some("application/json"),
                body: Some(wrapped),
            },
        );
        assert!(
            found
                .iter()
                .any(|v| v.message.contains("\"id\" is a required property")),
            "{found:?}"
        );
        let bare = br#"{"id": "run-1", "agentId": "bc-1", "status": "RUNNING", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}"#;
        let ok = Response {
            status: 200,
            content_type: Some("application/json"),
            body: Some(bare),
        };
        assert!(
            contract
                .check_response("GET", "/v1/agents/bc-1/runs/run-1", &ok)
                .is_empty()
        );
        let undeclared = Response { status: 418, ..ok };
        assert_eq!(
            contract
                .check_response("GET", "/v1/agents/bc-1/runs/run-1", &undeclared)
                .len(),
            1
        );
    }

    #[test]
    fn nullable_and_auth_schemes_follow_each_file() {
        let Some(contract) = published() else { return };
        let bearer_only_v0 = Request {
            auth: AuthScheme::Other,
            ..get("/v0/me", None)
        };
        assert_eq!(contract.check_request(&bearer_only_v0).len(), 1);
        // v0's file lists Bearer only; its docs say Basic: both are accepted.
        for auth in [AuthScheme::Basic, AuthScheme::Bearer] {
            let request = Request {
                auth,
                ..get("/v0/me", None)
            };
            assert!(contract.check_request(&request).is_empty());
        }
    }

    #[test]
    fn a_body_that_breaks_the_request_schema_is_a_violation() {
        let Some(contract) = published() else { return };
        let request = Request {
            method: "POST",
            path: "/v1/agents",
            query: None,
            auth: AuthScheme::Bearer,
            content_type: Some("application/json"),
            body: br#"{"prompt": {"text": "x"}, "mcpServers": {"docs": {"url": "https://x"}}}"#,
        };
        let found = contract.check_request(&request);
        assert!(
            found.iter().any(|v| v.message.contains("/mcpServers")),
            "{found:?}"
        );
    }
}
