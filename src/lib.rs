//! orchestrate: run fleets of Cursor Cloud Agents declaratively.

pub mod spec;
pub mod plan;
pub mod cli;
