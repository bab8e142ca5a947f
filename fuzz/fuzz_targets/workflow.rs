//! The workflow loader and validator, then the planner, on any bytes: no panic, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrate::plan::{Options, Plan};
use orchestrate::spec::{self, SourceFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(workflow) = spec::parse(&SourceFile::new("fuzz.yaml", text)) {
        let _ = Plan::build(&workflow, &Options::default());
    }
});
