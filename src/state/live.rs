//! Live snapshots: while an `apply` holds the store, it writes its run's records to
//! `DIR/live/<run>.json` every few seconds, so that `status` in another terminal can show
//! them. Written to a temporary file and renamed, so a reader never sees half a snapshot.
//! `cancel` in another terminal leaves `DIR/live/<run>.cancel` there, which the apply reads
//! and acts on: the store stays with the one process that holds it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{InstanceRecord, RunRecord};

/// A run and its instances as an `apply` last saw them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The run.
    pub run: RunRecord,
    /// Its instances.
    pub instances: Vec<InstanceRecord>,
}

fn folder(dir: &Path) -> PathBuf {
    dir.join("live")
}

fn file(dir: &Path, run: &str) -> PathBuf {
    let name = super::file_name(run);
    folder(dir).join(format!("{name}.json"))
}

/// Writes the snapshot of a run.
pub fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    std::fs::create_dir_all(folder(dir))?;
    let path = file(dir, &snapshot.run.id);
    let temporary = path.with_extension("json.tmp");
    std::fs::write(
        &temporary,
        serde_json::to_vec(snapshot).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(temporary, path)
}

/// Removes the snapshot of a run (its apply ended: the store has the truth again).
pub fn remove_snapshot(dir: &Path, run: &str) {
    let _ = std::fs::remove_file(file(dir, run));
}

/// The snapshot of `run`, or the most recent one, with when it was written.
pub fn read_snapshot(dir: &Path, run: Option<&str>) -> Option<(Snapshot, SystemTime)> {
    let mut found: Vec<(Snapshot, SystemTime)> = std::fs::read_dir(folder(dir))
        .ok()?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "json" {
                return None;
            }
            let written = std::fs::metadata(&path).ok()?.modified().ok()?;
            let snapshot: Snapshot = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            Some((snapshot, written))
        })
        .filter(|(snapshot, _)| {
            run.is_none_or(|id| snapshot.run.id == id || snapshot.run.workflow == id)
        })
        .collect();
    found.sort_by_key(|(_, written)| *written);
    found.pop()
}

fn cancel_file(dir: &Path, run: &str) -> PathBuf {
    let name = super::file_name(run);
    folder(dir).join(format!("{name}.cancel"))
}

/// Asks the apply that holds the state to cancel `run`.
pub fn request_cancel(dir: &Path, run: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(folder(dir))?;
    std::fs::write(cancel_file(dir, run), run)
}

/// Whether a `cancel` asked for `run`; the request is taken (removed) when it did.
pub fn take_cancel_request(dir: &Path, run: &str) -> bool {
    std::fs::remove_file(cancel_file(dir, run)).is_ok()
}

#[cfg(test)]
mod cancel_tests {
    use super::*;

    #[test]
    fn a_cancel_request_is_taken_once_and_only_for_its_run() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!take_cancel_request(dir.path(), "w/k"));
        request_cancel(dir.path(), "w/k").unwrap();
        assert!(!take_cancel_request(dir.path(), "w/other"));
        assert!(take_cancel_request(dir.path(), "w/k"));
        assert!(!take_cancel_request(dir.path(), "w/k"), "taken once");
    }
}
