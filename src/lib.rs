//! orchestrate: run fleets of Cursor Cloud Agents declaratively.

pub mod spec;
