//! From an OpenAPI 3.0 document to checkable operations: `$ref`s resolved, schemas turned
//! into JSON Schema draft 4 and compiled once.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{AuthScheme, Content, Location, Operation, Parameter, Segment};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Why an OpenAPI document cannot be turned into checkable operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// It has no `paths`.
    #[error("it has no `paths`")]
    NoPaths,
    /// A `$ref` points outside the document.
    #[error("`{0}` points outside the file")]
    RefOutside(String),
    /// A `$ref` points at nothing.
    #[error("`{0}` points at nothing")]
    RefToNothing(String),
    /// A required key is missing.
    #[error("a `{0}` is missing")]
    Missing(String),
    /// An operation's part cannot be used.
    #[error("{at}: {problem}")]
    Operation {
        /// The operation (and status), like `POST /v1/agents 201`.
        at: String,
        /// What is wrong.
        problem: String,
    },
}

impl SchemaError {
    fn at(at: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        SchemaError::Operation {
            at: at.into(),
            problem: problem.to_string(),
        }
    }
}

/// Every operation of an OpenAPI document.
pub(super) fn operations(document: &Value) -> Result<Vec<Operation>, SchemaError> {
    let mut components = document.get("components").cloned().unwrap_or(json!({}));
    nullable_to_draft4(&mut components);
    let compile = |schema: &Value| compile(schema, &components);
    let paths = document
        .get("paths")
        .and_then(Value::as_object)
        .ok_or(SchemaError::NoPaths)?;
    let default_security = document.get("security");
    let mut operations = Vec::new();
    for (template, item) in paths {
        let shared = item.get("parameters").and_then(Value::as_array);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let name = format!("{} {template}", method.to_uppercase());
            let mut parameters = Vec::new();
            let declared = shared.into_iter().flatten().chain(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten(),
            );
            for parameter in declared {
                let parameter = resolve(document, parameter)?;
                let location = match parameter.get("in").and_then(Value::as_str) {
                    Some("path") => Location::Path,
                    Some("query") => Location::Query,
                    Some("header") => Location::Header,
                    _ => continue, // cookies: never sent
                };
                let mut schema = parameter.get("schema").cloned().unwrap_or(json!({}));
                nullable_to_draft4(&mut schema);
                let kind = resolve(document, &schema)?
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .to_owned();
                parameters.push(Parameter {
                    name: text(parameter, "name")?,
                    location,
                    required: parameter.get("required") == Some(&Value::Bool(true)),
                    kind,
                    schema: compile(&schema).map_err(|e| SchemaError::at(&name, e))?,
                });
            }
            let body = match op.get("requestBody") {
                None => None,
                Some(body) => {
                    let body = resolve(document, body)?;
                    let schema = body
                        .pointer("/content/application~1json/schema")
                        .ok_or_else(|| SchemaError::at(&name, "a request body that is not JSON"))?;
                    let required = body.get("required") == Some(&Value::Bool(true));
                    Some((
                        required,
                        compile(schema).map_err(|e| SchemaError::at(&name, e))?,
                    ))
                }
            };
            let mut responses = BTreeMap::new();
            for (status, response) in op
                .get("responses")
                .and_then(Value::as_object)
                .ok_or_else(|| SchemaError::at(&name, "no responses"))?
            {
                let response = resolve(document, response)?;
                let content = response.get("content").and_then(Value::as_object);
                let content = match content {
                    None => Content::Empty,
                    Some(types) => match types.get("application/json") {
                        Some(json) => match json.get("schema") {
                            Some(schema) => Content::Json(
                                compile(schema)
                                    .map_err(|e| SchemaError::at(format!("{name} {status}"), e))?,
                            ),
                            None => Content::Empty,
                        },
                        None => Content::Stream(types.keys().next().cloned().unwrap_or_default()),
                    },
                };
                responses.insert(status.clone(), content);
            }
            let security = op.get("security").or(default_security);
            let mut auth = schemes(document, security);
            if template.starts_with("/v0/") && !auth.contains(&AuthScheme::Basic) {
                // The v0 docs page documents Basic; the v0 file lists Bearer only.
                auth.push(AuthScheme::Basic);
            }
            operations.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                segments: template
                    .trim_matches('/')
                    .split('/')
                    .map(
                        |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                            Some(param) => Segment::Param(param.to_owned()),
                            None => Segment::Literal(s.to_owned()),
                        },
                    )
                    .collect(),
                parameters,
                body,
                responses,
                auth,
            });
        }
    }
    Ok(operations)
}

/// The auth schemes of a security requirement list (any one of them is enough).
fn schemes(document: &Value, security: Option<&Value>) -> Vec<AuthScheme> {
    let Some(requirements) = security.and_then(Value::as_array) else {
        return vec![AuthScheme::Basic, AuthScheme::Bearer, AuthScheme::Other];
    };
    let mut schemes = Vec::new();
    for requirement in requirements.iter().filter_map(Value::as_object) {
        if requirement.is_empty() {
            schemes.push(AuthScheme::Other); // `{}`: no auth needed
        }
        for name in requirement.keys() {
            let scheme = document
                .pointer(&format!("/components/securitySchemes/{name}/scheme"))
                .and_then(Value::as_str);
            match scheme {
                Some(s) if s.eq_ignore_ascii_case("basic") => schemes.push(AuthScheme::Basic),
                Some(s) if s.eq_ignore_ascii_case("bearer") => schemes.push(AuthScheme::Bearer),
                _ => {}
            }
        }
    }
    schemes
}

/// The object a `$ref` (to this document) points at, or the value itself.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> Result<&'a Value, SchemaError> {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| SchemaError::RefOutside(reference.to_owned()))?;
            let target = document
                .pointer(pointer)
                .ok_or_else(|| SchemaError::RefToNothing(reference.to_owned()))?;
            resolve(document, target)
        }
        None => Ok(value),
    }
}

fn text(value: &Value, key: &str) -> Result<String, SchemaError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| SchemaError::Missing(key.to_owned()))
}

/// A validator of `schema`, whose `$ref`s point into the document's `components`.
fn compile(
    schema: &Value,
    components: &Value,
) -> Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
    let mut schema = schema.clone();
    nullable_to_draft4(&mut schema);
    let root = json!({ "allOf": [schema], "components": components });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&root)
}

/// OpenAPI 3.0's `nullable: true` as draft 4 says it: `null` among the types.
fn nullable_to_draft4(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(nullable_to_draft4),
        Value::Object(map) => {
            map.values_mut().for_each(nullable_to_draft4);
            if map.get("nullable") != Some(&Value::Bool(true)) {
                return;
            }
            map.remove("nullable");
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.push(Value::Null);
            }
            if let Some(Value::String(kind)) = map.get("type").cloned() {
                map.insert("type".into(), json!([kind, "null"]));
            } else {
                let rest = Value::Object(std::mem::take(map));
                let mut wrapped = Map::new();
                wrapped.insert("anyOf".into(), json!([{ "type": "null" }, rest]));
                *map = wrapped;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_adds_null_to_the_type_or_wraps_the_schema() {
        let mut typed = json!({"type": "string", "nullable": true, "enum": ["a"]});
        nullable_to_draft4(&mut typed);
        assert_eq!(
            typed,
            json!({"type": ["string", "null"], "enum": ["a", null]})
        );
        let mut untyped = json!({"oneOf": [{"type": "string"}], "nullable": true});
        nullable_to_draft4(&mut untyped);
        assert_eq!(
            untyped,
            json!({"anyOf": [{"type": "null"}, {"oneOf": [{"type": "string"}]}]})
        );
    }

    #[test]
    fn refs_resolve_through_components_and_bodies_are_checked() {
        let document = json!({
            "paths": {"/v1/things/{id}": {"post": {
                "parameters": [{"$ref": "#/components/parameters/Id"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                "responses": {"200": {"$ref": "#/components/responses/Ok"}}
            }}},
            "components": {
                "parameters": {"Id": {"in": "path", "name": "id", "required": true, "schema": {"type": "string"}}},
                "schemas": {"Thing": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer", "nullable": true}}}},
                "responses": {"Ok": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
            }
        });
        let ops = operations(&document).unwrap();
        assert_eq!(ops.len(), 1);
        let (_, body) = ops[0].body.as_ref().unwrap();
        assert!(body.is_valid(&json!({"n": null})));
        assert!(!body.is_valid(&json!({"n": "x"})));
        assert!(!body.is_valid(&json!({})));
        // No `security`: anything goes.
        assert!(ops[0].auth.contains(&AuthScheme::Other));
    }
}
