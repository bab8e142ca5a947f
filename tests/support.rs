//! What every test shares: the binary in a cleared environment with a state of its own, and
//! a simulator held to Cursor's published OpenAPI files.
//!
//! Nothing of the caller's environment or working directory reaches a test: each command
//! starts from `env_clear()`, gets a fresh `ORCHESTRATE_STATE` unless the test gives one,
//! and each simulator checks every exchange against `../shared/api/` (when a checkout has
//! it beside; otherwise the test output says the checks were skipped).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use orchestrate::contract::{Contract, SPEC_FILES};
use orchestrate::sim::{SimConfig, Simulator};

/// 2026-09-21, so that `{{ date }}` and `run.date` are the same in every snapshot.
pub const SOURCE_DATE_EPOCH: &str = "1790000000";

/// The binary, in a cleared environment (only a `PATH` to find `sh` and `kill`), with no
/// color, a fixed date, and a state directory of its own: a test that needs a shared one sets
/// `ORCHESTRATE_STATE` again.
pub fn command() -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("orchestrate"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .env("ORCHESTRATE_STATE", fresh_state())
        .current_dir(repo_root());
    command
}

/// [`command`] as an `assert_cmd` command, with a timeout.
pub fn orchestrate() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::from_std(self::command());
    command.timeout(Duration::from_secs(60));
    command
}

/// A state directory no other command uses, under cargo's scratch directory for tests.
pub fn fresh_state() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("state-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
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

/// Where Cursor's OpenAPI files are: `../shared/api/` beside the checkout.
pub fn api_dir() -> PathBuf {
    repo_root().join("../shared/api")
}

/// Cursor's published API, read once per test process; `None` (said once) without it.
pub fn contract() -> Option<Arc<Contract>> {
    static CONTRACT: OnceLock<Option<Arc<Contract>>> = OnceLock::new();
    CONTRACT
        .get_or_init(|| {
            let dir = api_dir();
            if !dir.join(SPEC_FILES[1]).exists() {
                eprintln!(
                    "CONTRACT CHECKS SKIPPED: no {} in {}; the exchanges of this run are not checked against Cursor's API",
                    SPEC_FILES.join(" or "),
                    dir.display()
                );
                return None;
            }
            Some(Arc::new(Contract::load_dir(&dir).expect("the published OpenAPI files load")))
        })
        .clone()
}

/// A simulator held to the published API: when it shuts down or is dropped, the test fails
/// if any exchange broke it.
pub struct StrictSim {
    sim: Option<Simulator>,
    /// Violations a test provokes on purpose, by a part of their text.
    expected: std::sync::Mutex<Vec<&'static str>>,
}

impl Deref for StrictSim {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        self.sim.as_ref().expect("not shut down")
    }
}

impl StrictSim {
    /// Asserts that no exchange broke the published API, then stops the simulator.
    pub async fn shutdown(mut self) {
        let sim = self.sim.take().expect("shut down once");
        self.no_violations(&sim);
        sim.shutdown().await;
    }

    /// Says that this test breaks the published API on purpose, in violations whose text
    /// contains `part` (a client refused by the simulator's own checks, an off-spec answer);
    /// the test fails unless each expected part is seen.
    pub fn expect_violation(&self, part: &'static str) {
        self.expected.lock().unwrap().push(part);
    }

    fn no_violations(&self, sim: &Simulator) {
        let expected = self.expected.lock().unwrap().clone();
        let violations: Vec<_> = sim.violations();
        for part in expected.iter().filter(|_| contract().is_some()) {
            assert!(
                violations.iter().any(|v| v.to_string().contains(part)),
                "the test expected a violation of the published API containing `{part}`, and saw none"
            );
        }
        let violations: Vec<_> = violations
            .into_iter()
            .filter(|v| !expected.iter().any(|part| v.to_string().contains(part)))
            .collect();
        assert!(
            violations.is_empty(),
            "{} exchanges broke Cursor's published API:\n{}",
            violations.len(),
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

impl Drop for StrictSim {
    fn drop(&mut self) {
        if let Some(sim) = &self.sim {
            if !std::thread::panicking() {
                self.no_violations(sim);
            }
        }
    }
}

/// A simulator on a free loopback port, checking every exchange against the published API.
pub async fn simulator(config: SimConfig) -> StrictSim {
    simulator_at(config, "127.0.0.1:0".parse().unwrap()).await
}

/// [`simulator`] at `address`: a server that starts afresh where another one was.
pub async fn simulator_at(config: SimConfig, address: std::net::SocketAddr) -> StrictSim {
    let config = SimConfig {
        contract: contract(),
        ..config
    };
    let sim = Simulator::start(config, address).await.unwrap();
    StrictSim {
        sim: Some(sim),
        expected: std::sync::Mutex::default(),
    }
}
