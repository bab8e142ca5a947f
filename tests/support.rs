//! Running the real binary the way a user would, with a reproducible environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// 2026-09-21, so that `{{ date }}` and `run.date` are the same in every snapshot.
pub const SOURCE_DATE_EPOCH: &str = "1790000000";

/// The `orchestrate` binary with a reproducible environment.
pub fn orchestrate() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("orchestrate"));
    command
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .env_remove("CURSOR_API_KEY")
        .env_remove("CURSOR_API_VERSION")
        .env_remove("ORCHESTRATE_BACKEND")
        .env_remove("LAP_URL")
        .env_remove("LAP_AGENT_ID")
        .env_remove("LAP_MASTER_KEY")
        .env_remove("ORCHESTRATE_STATE")
        .env_remove("RUST_LOG")
        .current_dir(repo_root())
        .timeout(Duration::from_secs(60));
    command
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text a command wrote to a stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path relative to the repository, with `/` separators, for stable snapshot names.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
