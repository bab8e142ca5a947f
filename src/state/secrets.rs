//! Secrets a run needs again after a restart (its webhook secret), in files only the user
//! can read: `DIR/secrets/<run>.webhook`, mode 0600, in a 0700 directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};

fn path(dir: &Path, run: &str) -> PathBuf {
    let name = super::file_name(run);
    dir.join("secrets").join(format!("{name}.webhook"))
}

/// The webhook secret of `run`: the one made for it before, or `make()`'s, written first.
pub fn webhook_secret(
    dir: &Path,
    run: &str,
    make: impl FnOnce() -> String,
) -> std::io::Result<String> {
    let path = path(dir, run);
    if let Ok(secret) = std::fs::read_to_string(&path) {
        if !secret.trim().is_empty() {
            return Ok(secret.trim().to_owned());
        }
    }
    let folder = path.parent().expect("a secrets folder");
    std::fs::create_dir_all(folder)?;
    let secret = make();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = webhook_secret(dir.path(), "sweep/2026-11-22", || "s".repeat(40)).unwrap();
        let again = webhook_secret(dir.path(), "sweep/2026-11-22", || unreachable!()).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = path(dir.path(), "sweep/2026-11-22");
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(file.parent().unwrap())
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o700
            );
        }
    }
}
