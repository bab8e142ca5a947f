//! The JSON Schema editors use is checked in; it must be the one the types generate.

use crate::support::{orchestrate, repo_root, text};

#[test]
fn checked_in_schema_is_current() {
    let output = orchestrate().arg("schema").output().unwrap();
    assert!(output.status.success());
    let generated = text(&output.stdout);
    let path = repo_root().join("schema/workflow.schema.json");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema/workflow.schema.json is stale: run `cargo run -- schema > schema/workflow.schema.json` \
         (or UPDATE_SCHEMA=1 cargo test checked_in_schema)"
    );
}

#[test]
fn schema_is_draft_2020_12_and_closed() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schema/workflow.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["$defs"]["Task"]["additionalProperties"], false);
    assert!(schema["$defs"]["Task"]["properties"]["follow_ups"].is_object());
}
