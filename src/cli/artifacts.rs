//! `orchestrate artifacts RUN INSTANCE [--out DIR]`: the files a v1 agent produced.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::api::client_from_env;
use super::runs::open_run;
use super::{Error, Exit, Output};
use crate::cursor::AgentId;
use crate::spec::{Api, ApiVersion};

/// Lists an instance's artifacts, or downloads them into `out_dir`.
pub async fn run(
    out: &Output,
    state: &crate::state::Location,
    run: String,
    instance: String,
    out_dir: Option<PathBuf>,
) -> Result<Exit, Error> {
    let (store, run) = open_run(state, Some(run)).await?;
    if run.api != Api::Cursor(ApiVersion::V1) {
        return Err(Error::Usage(format!(
            "run {} used {}; only API v1 agents keep artifacts",
            run.id, run.api
        )));
    }
    let id = run.id.clone();
    let records = store.read(move |s| s.instances(&id)).await?;
    drop(store);
    let Some(record) = records.iter().find(|r| r.key == instance) else {
        let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        return Err(Error::Usage(format!(
            "run {} has no instance `{instance}`; it has: {}",
            run.id,
            keys.join(", ")
        )));
    };
    let Some(agent) = record.agent_id.clone().map(AgentId) else {
        return Err(Error::Usage(format!(
            "{instance} has not launched an agent yet"
        )));
    };
    let client = client_from_env()?;
    let artifacts = client
        .v1_artifacts(&agent)
        .await
        .map_err(|error| Error::ApiCall {
            what: format!("cannot list the artifacts of {agent}"),
            error,
        })?;
    let Some(out_dir) = out_dir else {
        let mut text = String::new();
        for artifact in &artifacts {
            let size = artifact.size_bytes.to_string();
            let _ = writeln!(text, "{}\t{size}", artifact.path);
        }
        out.stdout(&text);
        out.status(&format!(
            "{} artifact(s) of {instance} (agent {agent}); download them with --out DIR",
            artifacts.len()
        ));
        return Ok(Exit::Success);
    };
    download(out, &client, &agent, &artifacts, &out_dir).await?;
    out.status(&format!(
        "downloaded {} artifact(s) of {instance} into {}",
        artifacts.len(),
        out_dir.display()
    ));
    Ok(Exit::Success)
}

/// Downloads each of `artifacts` of `agent` under `out_dir`, skipping paths that leave it.
async fn download(
    out: &Output,
    client: &crate::cursor::Client,
    agent: &AgentId,
    artifacts: &[crate::cursor::model::v1::Artifact],
    out_dir: &Path,
) -> Result<(), Error> {
    // Presigned links carry their own authorisation: the API key is not sent with them.
    let http = reqwest::Client::builder()
        .user_agent(crate::cursor::USER_AGENT)
        .build()
        .expect("an HTTP client");
    for artifact in artifacts {
        let Some(target) = inside(out_dir, &artifact.path) else {
            out.error(&format!(
                "skipping `{}`: the path leaves the output directory",
                artifact.path
            ));
            continue;
        };
        let fetched = async {
            let link = client
                .v1_artifact_download(agent, &artifact.path)
                .await
                .map_err(|e| e.to_string())?;
            let response = http
                .get(&link.url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| e.without_url().to_string())?;
            response.bytes().await.map_err(|e| e.to_string())
        };
        let bytes = fetched.await.map_err(|error| {
            Error::Unusable(format!("cannot download `{}`: {error}", artifact.path))
        })?;
        write_atomically(&target, &bytes)
            .map_err(|error| Error::Usage(format!("cannot write {}: {error}", target.display())))?;
        out.status(&format!("{} ({} bytes)", target.display(), bytes.len()));
    }
    Ok(())
}

/// `path` under `dir`, unless it is absolute or climbs out with `..`.
fn inside(dir: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.is_empty()).then(|| dir.join(relative))
}

/// Writes through a temporary file and a rename, so a file is whole or absent.
fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = target.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, target)
}

#[cfg(test)]
mod tests {
    use super::inside;
    use std::path::Path;

    #[test]
    fn artifact_paths_stay_inside_the_output_directory() {
        let dir = Path::new("/out");
        assert_eq!(
            inside(dir, "runs/1/summary.md"),
            Some(dir.join("runs/1/summary.md"))
        );
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "./x"] {
            assert_eq!(inside(dir, bad), None, "{bad}");
        }
    }
}
