//! A run as one JSON document: `orchestrate state export RUN > run.json` writes it and
//! `state import run.json` reads it into another store (sled or PostgreSQL), or back as a
//! backup. Each record keeps its format version, so a newer release's export is refused
//! as its store would be.

use serde::{Deserialize, Serialize};

use super::record::{Event, InstanceRecord, RunRecord};
use super::store::{StateError, Store, Write, decode_value, encode_value};

/// What the document says it is, so that any other JSON is refused by name.
const KIND: &str = "orchestrate-run";

/// A run with its instances and its log, as exported.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunExport {
    /// Always `orchestrate-run`.
    pub kind: String,
    /// The run record, with its format version.
    pub run: serde_json::Value,
    /// Its instances, in key order.
    pub instances: Vec<serde_json::Value>,
    /// Its log, oldest first.
    pub events: Vec<serde_json::Value>,
}

/// The records of a document, read and checked whole before anything is written.
#[derive(Debug)]
pub struct Imported {
    /// The run.
    pub run: RunRecord,
    /// Its instances.
    pub instances: Vec<InstanceRecord>,
    /// Its log.
    pub events: Vec<Event>,
}

/// Why a document cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON, or not an export.
    #[error("{file} is not a run exported by `orchestrate state export`: {why}")]
    NotAnExport {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A record inside it cannot be read.
    #[error("{file}: {source}")]
    Record {
        /// The file.
        file: String,
        /// The record's error.
        source: StateError,
    },
}

/// The run `id` of `store`, with its instances and log.
pub fn export(store: &Store, run: &RunRecord) -> Result<RunExport, StateError> {
    Ok(RunExport {
        kind: KIND.to_owned(),
        run: encode_value(run),
        instances: store.instances(&run.id)?.iter().map(encode_value).collect(),
        events: store.events(&run.id)?.iter().map(encode_value).collect(),
    })
}

/// Reads an exported document; `file` names it in errors.
pub fn read(file: &str, text: &str) -> Result<Imported, ImportError> {
    let not = |why: String| ImportError::NotAnExport {
        file: file.to_owned(),
        why,
    };
    let export: RunExport = serde_json::from_str(text).map_err(|e| not(e.to_string()))?;
    if export.kind != KIND {
        return Err(not(format!("its kind is `{}`, not `{KIND}`", export.kind)));
    }
    let record = |source| ImportError::Record {
        file: file.to_owned(),
        source,
    };
    let run: RunRecord = decode_value(file, "run", export.run).map_err(record)?;
    let instances = export
        .instances
        .into_iter()
        .enumerate()
        .map(|(n, value)| decode_value(file, &format!("instances[{n}]"), value))
        .collect::<Result<Vec<InstanceRecord>, _>>()
        .map_err(record)?;
    let events = export
        .events
        .into_iter()
        .enumerate()
        .map(|(n, value)| decode_value(file, &format!("events[{n}]"), value))
        .collect::<Result<Vec<Event>, _>>()
        .map_err(record)?;
    Ok(Imported {
        run,
        instances,
        events,
    })
}

impl Imported {
    /// The writes that put the run in a store, as one batch.
    pub fn writes(self) -> Vec<Write> {
        let id = self.run.id.clone();
        let mut writes = vec![Write::Run(self.run)];
        writes.extend(
            self.instances
                .into_iter()
                .map(|instance| Write::Instance(id.clone(), instance)),
        );
        writes.extend(
            self.events
                .into_iter()
                .map(|event| Write::Event(id.clone(), event)),
        );
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Location;
    use crate::state::sled::tests::run;

    #[test]
    fn a_run_goes_out_and_back_in_whole() {
        let from = tempfile::tempdir().unwrap();
        let mut store = Store::open(&Location::from(from.path())).unwrap();
        let instance = InstanceRecord::pending("t[a/b]", "t", "https://github.com/a/b", "br", "h");
        store
            .write(&[
                Write::Run(RunRecord {
                    source: "version: 1\n".into(),
                    ..run("w/default")
                }),
                Write::Instance("w/default".into(), instance),
                Write::Event("w/default".into(), Event::run("start", "")),
                Write::Event("w/default".into(), Event::run("end", "")),
            ])
            .unwrap();
        let exported = export(&store, &store.run("w/default").unwrap().unwrap()).unwrap();
        let text = serde_json::to_string(&exported).unwrap();

        let to = tempfile::tempdir().unwrap();
        let mut other = Store::open(&Location::from(to.path())).unwrap();
        other
            .write(&read("run.json", &text).unwrap().writes())
            .unwrap();
        assert_eq!(
            other.run("w/default").unwrap().unwrap().source,
            "version: 1\n"
        );
        assert_eq!(other.instances("w/default").unwrap()[0].key, "t[a/b]");
        let kinds: Vec<String> = other
            .events("w/default")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["start", "end"]);
    }

    #[test]
    fn anything_else_is_refused_by_name_and_a_newer_record_by_version() {
        let not = read(
            "x.json",
            r#"{"kind": "terraform-state", "run": {}, "instances": [], "events": []}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(not.contains("its kind is `terraform-state`"), "{not}");
        let garbage = read("x.json", "[1, 2]").unwrap_err().to_string();
        assert!(
            garbage.starts_with("x.json is not a run exported by"),
            "{garbage}"
        );
        let mut newer = serde_json::to_value(RunExport {
            kind: KIND.into(),
            run: encode_value(&run("w/default")),
            instances: vec![],
            events: vec![],
        })
        .unwrap();
        newer["run"]["v"] = 99.into();
        let refused = read("x.json", &newer.to_string()).unwrap_err().to_string();
        assert!(
            refused.contains("newer orchestrate (record format 99"),
            "{refused}"
        );
    }
}
