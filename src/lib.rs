//! orchestrate: run fleets of Cursor Cloud Agents declaratively.

pub mod apply;
pub mod cli;
pub mod contract;
pub mod cursor;
pub mod exec;
pub mod plan;
pub mod report;
pub mod sim;
pub mod spec;
pub mod state;
