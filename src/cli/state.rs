//! `orchestrate state export|import`: a run moved between stores, or kept as a backup.

use std::io::Read as _;
use std::path::Path;

use super::runs::open_run;
use super::{Error, Exit, Output};
use crate::state::{Location, StoreHandle};

/// `orchestrate state export [RUN]`: the run as one JSON document on stdout.
pub async fn export(out: &Output, state: &Location, run: Option<String>) -> Result<Exit, Error> {
    let (store, run) = open_run(state, run).await?;
    let exported = store.read(move |s| crate::state::export(s, &run)).await?;
    store.close().await;
    out.stdout(&format!(
        "{}\n",
        serde_json::to_string_pretty(&exported).expect("plain JSON")
    ));
    Ok(Exit::Success)
}

/// `orchestrate state import FILE` (`-` for stdin): the exported run into this state, read
/// and checked whole first; a run the state already has is refused, never overwritten.
pub async fn import(out: &Output, state: &Location, file: &Path) -> Result<Exit, Error> {
    let (name, text) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::Usage(format!("cannot read the export from stdin: {e}")))?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
        (file.display().to_string(), text)
    };
    let imported =
        crate::state::read_export(&name, &text).map_err(|e| Error::Usage(e.to_string()))?;
    let (id, count) = (imported.run.id.clone(), imported.instances.len());
    let store = StoreHandle::open(state)?;
    store.lock_run(&id).await?;
    let probe = id.clone();
    if store.read(move |s| s.run(&probe)).await?.is_some() {
        let hints = super::hint::Hints::new(state);
        return Err(Error::Usage(format!(
            "run {id} is already in the state in {}; remove it first with `{}` to replace it",
            state.describe(),
            hints.command(&["runs", "rm", &id])
        )));
    }
    store.write(imported.writes()).await?;
    store.close().await;
    out.status(&format!(
        "imported run {id} ({count} instance(s)) into {}",
        state.describe()
    ));
    Ok(Exit::Success)
}
