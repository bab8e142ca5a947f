//! End-to-end tests of the `orchestrate` binary, one test binary for fast linking.
//!
//! - `support`: how a test runs the binary (fixed date, no color, no API key, a timeout).
//! - `invalid`: every file of `tests/fixtures/invalid/` fails with its exact message.
//! - `examples`: every example validates and plans as its snapshot shows.
//! - `schema`: the checked-in JSON Schema is the one the types generate.
//! - `cli`: usage, formats, several files, exit codes.
//! - `plan_props`: any generated valid workflow plans, and the order respects every edge.

mod cli;
mod examples;
mod invalid;
mod plan_props;
mod schema;
mod support;
