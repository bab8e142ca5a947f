//! End-to-end tests of the `orchestrate` binary, one test binary for fast linking.
//!
//! - `support`: the binary in a cleared environment with its own state; a simulator that
//!   checks every exchange against Cursor's OpenAPI files (`../shared/api/`).
//! - `scenario`: a simulator of one backend, a private state, the binary pointed at both;
//!   what differs between backends is declared there once. Workflows the tests apply are
//!   in `tests/fixtures/workflows/`.
//! - `apply`: `apply` end to end against the simulator on every backend: examples, kill -9,
//!   faults, re-apply, locking, timeouts, cancel, Ctrl-C.
//! - `lost_state`: a run whose state is gone or broken is rebuilt from the API: adopted,
//!   never launched twice; a changed prompt gets a new agent.
//! - `apply_v1`: what only v1 has: run streams, usage, artifacts, `env_vars`.
//! - `api_contract`: the API types read and write the reference's own JSON examples.
//! - `contract`: the checks against Cursor's OpenAPI files can fail; `sim --strict`.
//! - `client`: the API client against the simulator: endpoints, errors, retries, quotas.
//! - `client_v1`: the v1 endpoints and rules (runs, `agent_busy`, `agent_id_conflict`, limits).
//! - `cli_api`: `me`, `models`, `repos`, `agents` against the simulator; the key never shows.
//! - `invalid`: every file of `tests/fixtures/invalid/` fails with its exact message.
//! - `examples`: every example validates and plans as its snapshot shows.
//! - `schema`: the checked-in JSON Schema is the one the types generate.
//! - `cli`: usage, formats, several files, exit codes.
//! - `security`: the key in no output, log or state file; no injection through values.
//! - `soak`: every fault on, SIGKILL every ~0.8 s, re-applied until done (size by env).
//! - `webhooks`: the receiver's refusals, and a run driven by webhooks.
//! - `sweeps`: reports, GitHub Actions outputs, nightly history and prune, discover caching.
//! - `passthrough`: workflows through a LiteLLM-like proxy: `/cursor` prefix, virtual key.
//! - `platform`: the LiteLLM Agent Platform backend: the session it creates, broken streams.
//! - `plan_props`: any generated valid workflow plans, and the order respects every edge.
//! - `pg`: a throwaway PostgreSQL cluster (`initdb`, `pg_ctl`) for the scenarios that keep
//!   their state in a database: every `on_every_backend!`/`on_both_apis!` test runs on both.
//! - `shared_state`: what only PostgreSQL has: migrations, locks per run, a server
//!   restarted under an apply, export and import between stores.
//! - `runners`: several runners on one run (`apply --join`): leases, takeovers of a killed
//!   runner's instances, one cap across all.

#[macro_use]
mod scenario;
mod api_contract;
mod apply;
mod apply_v1;
mod cli;
mod cli_api;
mod client;
mod client_v1;
mod contract;
mod examples;
mod invalid;
mod lost_state;
mod passthrough;
mod pg;
mod plan_props;
mod platform;
mod runners;
mod schema;
mod security;
mod shared_state;
mod soak;
mod support;
mod sweeps;
mod webhooks;
