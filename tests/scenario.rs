//! A scenario: a simulator of one backend, a private directory holding the state, and the
//! binary told to use both. What differs between backends is declared once, in [`Backend`].
//!
//! ```ignore
//! let s = Scenario::on(backend).work(10, 20).faults("error=1.0").start().await;
//! let ran = s.apply(&Scenario::fixture("chain"), &[]).await;
//! assert_eq!(ran.code, Some(1), "{}", ran.stderr);
//! assert_eq!(s.status().await.states()["fix[acme/api]"], "blocked");
//! s.shutdown().await;
//! ```

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orchestrate::sim::{DEFAULT_KEY, SimConfig, Stats};
use orchestrate::spec::ApiVersion;

use crate::support::{StrictSim, repo_root, text};

/// One test of `$test` on `$backend` with the state in `$store`, named `$variant`, ignored
/// with `$reason` if given. On PostgreSQL without its binaries, it says so and returns.
macro_rules! backend_test {
    ($test:path, $variant:ident, $backend:ident, $store:ident $(, $reason:literal)?) => {
        #[tokio::test(flavor = "multi_thread")]
        $(#[ignore = $reason])?
        async fn $variant() {
            let store = crate::scenario::StoreKind::$store;
            if store.available() {
                crate::scenario::STORE
                    .scope(store, $test(crate::scenario::Backend::$backend))
                    .await;
            }
        }
    };
}

/// Runs the async test function `$name(backend)` once per backend and store: `$name::v0`,
/// `$name::v1` and `$name::platform` on sled, and `$name::postgres::v0` (and so on) with the
/// state in a PostgreSQL database. A test that needs what the platform lacks names the
/// reason, and its platform variants are ignored with it.
macro_rules! on_every_backend {
    ($name:ident) => {
        on_every_backend!($name, platform: );
    };
    ($name:ident, platform: $($reason:literal)?) => {
        mod $name {
            backend_test!(super::$name, v0, V0, Sled);
            backend_test!(super::$name, v1, V1, Sled);
            backend_test!(super::$name, platform, Platform, Sled $(, $reason)?);
            mod postgres {
                backend_test!(super::super::$name, v0, V0, Postgres);
                backend_test!(super::super::$name, v1, V1, Postgres);
                backend_test!(super::super::$name, platform, Platform, Postgres $(, $reason)?);
            }
        }
    };
}

/// Runs the async test function `$name(backend)` on both Cursor API versions only, on both
/// stores; `sled only:` says why a test is about the embedded store's files alone.
macro_rules! on_both_apis {
    ($name:ident) => {
        mod $name {
            backend_test!(super::$name, v0, V0, Sled);
            backend_test!(super::$name, v1, V1, Sled);
            mod postgres {
                backend_test!(super::super::$name, v0, V0, Postgres);
                backend_test!(super::super::$name, v1, V1, Postgres);
            }
        }
    };
    ($name:ident, sled only: $reason:literal) => {
        mod $name {
            backend_test!(super::$name, v0, V0, Sled);
            backend_test!(super::$name, v1, V1, Sled);
        }
    };
}

/// Where a scenario's binary keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// The embedded sled store in a directory of the scenario's.
    Sled,
    /// A database of its own in the test binary's PostgreSQL cluster.
    Postgres,
}

impl StoreKind {
    /// Whether the store can be used here (PostgreSQL needs its binaries).
    pub(crate) fn available(self) -> bool {
        self == StoreKind::Sled || crate::pg::shared().is_some()
    }
}

tokio::task_local! {
    /// The store of the scenarios a test makes (sled unless its variant says).
    pub(crate) static STORE: StoreKind;
}

/// What the binary runs agents on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Cursor API v0.
    V0,
    /// Cursor API v1.
    V1,
    /// The LiteLLM Agent Platform (its `cursor` runtime).
    Platform,
}

/// The platform agent the tests' sessions run.
pub(crate) const PLATFORM_AGENT: &str = "agent-orchestrate-tests";

/// Quotas out of the way of a test (the simulator counts any violation anyway), but for the
/// repositories endpoint's, which the scenario sets on both sides.
const QUOTAS: &str = "calls=60000/min,calls_burst=500,launches=60000/min,launches_burst=500";

/// Fast polling and quick retries, for every `apply` of a scenario.
pub(crate) const FAST: [&str; 6] = [
    "--poll-interval",
    "15ms",
    "--retry-backoff",
    "30ms",
    "--follow-up-grace",
    "150ms",
];

impl Backend {
    /// The Cursor API version, if on the Cursor API.
    pub(crate) fn version(self) -> Option<ApiVersion> {
        match self {
            Backend::V0 => Some(ApiVersion::V0),
            Backend::V1 => Some(ApiVersion::V1),
            Backend::Platform => None,
        }
    }

    /// The environment that points the binary at a simulator at `url`. The examples run
    /// unchanged on the platform: the environment picks it and its agent.
    fn environment(self, url: &str) -> Vec<(&'static str, String)> {
        match self.version() {
            Some(version) => vec![("CURSOR_API_VERSION", version.as_str().to_owned())],
            None => vec![
                ("LAP_MASTER_KEY", DEFAULT_KEY.to_owned()),
                ("ORCHESTRATE_BACKEND", "litellm-agent-platform".to_owned()),
                ("LAP_URL", url.to_owned()),
                ("LAP_AGENT_ID", PLATFORM_AGENT.to_owned()),
            ],
        }
    }

    /// The route of a launch, as the simulator counts calls.
    pub(crate) fn launch_route(self) -> &'static str {
        match self {
            Backend::V0 => "POST /v0/agents",
            Backend::V1 => "POST /v1/agents",
            Backend::Platform => "POST /session",
        }
    }

    /// The route that stops an agent's work.
    pub(crate) fn stop_route(self) -> &'static str {
        match self {
            Backend::V0 => "POST /v0/agents/{id}/stop",
            Backend::V1 => "POST /v1/agents/{id}/runs/{run}/cancel",
            Backend::Platform => "POST /v1/sessions/{id}/events",
        }
    }

    /// Whether a launch whose answer was lost can be looked up (the platform's cannot).
    pub(crate) fn finds_lost_launches(self) -> bool {
        self != Backend::Platform
    }

    /// Whether a launch carries a client-chosen agent id, so that a resend is refused
    /// (`agent_id_conflict`) instead of making a second agent: v1's.
    pub(crate) fn refuses_resent_launches(self) -> bool {
        self == Backend::V1
    }

    /// Whether the API has a spending ceiling (`usage_limit_exceeded`): v1's.
    pub(crate) fn has_usage_limit(self) -> bool {
        self == Backend::V1
    }

    /// Whether every setting of the examples can be sent (the platform refuses some, by
    /// name, before launching).
    pub(crate) fn sends_every_setting(self) -> bool {
        self != Backend::Platform
    }
}

/// A change to the simulator's settings.
type Change = Box<dyn FnOnce(&mut SimConfig)>;

/// How a scenario's simulator is set up, before it starts.
pub(crate) struct Builder {
    backend: Backend,
    store: StoreKind,
    database: Option<String>,
    work: (u64, u64),
    faults: String,
    changes: Vec<Change>,
    address: std::net::SocketAddr,
    repositories: String,
}

impl Builder {
    /// Agents work between `low` and `high` milliseconds of real time (10..20 unless said).
    pub(crate) fn work(mut self, low: u64, high: u64) -> Self {
        self.work = (low, high);
        self
    }

    /// Faults to inject, as `--faults` takes them.
    pub(crate) fn faults(mut self, faults: &str) -> Self {
        faults.clone_into(&mut self.faults);
        self
    }

    /// Any other setting of the simulator.
    pub(crate) fn config(mut self, change: impl FnOnce(&mut SimConfig) + 'static) -> Self {
        self.changes.push(Box::new(change));
        self
    }

    /// The repositories endpoint allows `rate` (`1/10s`), on the simulator and in the
    /// client's quotas alike (1000/s unless said).
    pub(crate) fn repositories(mut self, rate: &str) -> Self {
        rate.clone_into(&mut self.repositories);
        self
    }

    /// Keeps the state in the database at `url` (a cluster of the test's own).
    pub(crate) fn in_database(mut self, url: String) -> Self {
        self.store = StoreKind::Postgres;
        self.database = Some(url);
        self
    }

    /// Listens on `address` (a fresh server where an earlier one was).
    pub(crate) fn at(mut self, address: std::net::SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// Starts the simulator, with a private directory for the state and workflow files.
    pub(crate) async fn start(self) -> Scenario {
        // A simulator second is a millisecond of real time.
        let mut config = SimConfig {
            speed: 1000.0,
            creating: Duration::from_secs(5),
            agent_duration: (
                Duration::from_secs(self.work.0),
                Duration::from_secs(self.work.1),
            ),
            faults: self.faults.parse().unwrap(),
            repositories_quota: vec![self.repositories.parse().unwrap()],
            platform_agents: vec![PLATFORM_AGENT.to_owned()],
            ..SimConfig::default()
        };
        for change in self.changes {
            change(&mut config);
        }
        let sim = crate::support::simulator_at(config, self.address).await;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let database = match (self.store, self.database) {
            (_, Some(url)) => Some(url),
            (StoreKind::Postgres, None) => {
                Some(crate::pg::shared().expect("checked by the test").database())
            }
            (StoreKind::Sled, None) => None,
        };
        Scenario {
            sim,
            backend: self.backend,
            dir,
            state,
            database,
            quotas: format!("{QUOTAS},repositories={}", self.repositories),
        }
    }
}

/// A simulator, a private directory, and the binary pointed at both.
pub(crate) struct Scenario {
    sim: StrictSim,
    /// What the binary runs agents on.
    pub(crate) backend: Backend,
    dir: tempfile::TempDir,
    state: PathBuf,
    /// The state's database URL, when the scenario keeps it in PostgreSQL.
    database: Option<String>,
    /// `ORCHESTRATE_QUOTAS` for the binary.
    quotas: String,
}

impl Deref for Scenario {
    type Target = StrictSim;

    fn deref(&self) -> &StrictSim {
        &self.sim
    }
}

/// How a command ended.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Its exit code (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    /// What it printed on stdout.
    pub(crate) stdout: String,
    /// What it printed on stderr.
    pub(crate) stderr: String,
}

/// The longest one command of a test may take. Past it the command is killed and the test
/// fails with what it printed, rather than hanging the whole suite until CI's own limit.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Runs `command` (its stdout and stderr piped) with `input` on its stdin, to its end or to
/// [`COMMAND_LIMIT`], without holding up the runtime.
async fn bounded(command: Command, input: &str) -> Ran {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let line = format!("{command:?}");
    let mut command = tokio::process::Command::from(command);
    if !input.is_empty() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.kill_on_drop(true).spawn().unwrap();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes).await;
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = tokio::time::timeout(COMMAND_LIMIT, child.wait()).await;
    let hung = status.is_err();
    if hung {
        let _ = child.kill().await;
    }
    let printed = |reader: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(Duration::from_secs(5), reader).await {
            Ok(bytes) => text(&bytes.unwrap()),
            Err(_) => "(still open after the kill)".to_owned(),
        }
    };
    let (stdout, stderr) = (printed(stdout).await, printed(stderr).await);
    assert!(
        !hung,
        "{line} did not end within {COMMAND_LIMIT:?} and was killed; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Ran {
        code: status.unwrap().unwrap().code(),
        stdout,
        stderr,
    }
}

impl From<std::process::Output> for Ran {
    fn from(output: std::process::Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
        }
    }
}

/// `status --json` of a scenario's run.
#[derive(Debug, Clone)]
pub(crate) struct Status(pub(crate) serde_json::Value);

impl Status {
    /// Each instance's state, by key.
    pub(crate) fn states(&self) -> BTreeMap<String, String> {
        self.instances()
            .iter()
            .map(|i| {
                let field = |name: &str| i[name].as_str().unwrap().to_owned();
                (field("key"), field("state"))
            })
            .collect()
    }

    /// How many instances are in `state`.
    pub(crate) fn count(&self, state: &str) -> usize {
        self.states().values().filter(|s| *s == state).count()
    }

    /// The instances, as JSON.
    pub(crate) fn instances(&self) -> &Vec<serde_json::Value> {
        self.0["instances"].as_array().unwrap()
    }
}

impl std::ops::Index<&str> for Status {
    type Output = serde_json::Value;

    fn index(&self, field: &str) -> &serde_json::Value {
        &self.0[field]
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl Scenario {
    /// A scenario on `backend`, to set up.
    pub(crate) fn on(backend: Backend) -> Builder {
        Builder {
            backend,
            store: STORE.try_with(|s| *s).unwrap_or(StoreKind::Sled),
            database: None,
            work: (10, 20),
            faults: String::new(),
            changes: Vec::new(),
            address: "127.0.0.1:0".parse().unwrap(),
            repositories: "1000/s".to_owned(),
        }
    }

    /// A workflow of `tests/fixtures/workflows/`, by name.
    pub(crate) fn fixture(name: &str) -> PathBuf {
        repo_root().join(format!("tests/fixtures/workflows/{name}.yaml"))
    }

    /// An example of `examples/workflows/`, by name.
    pub(crate) fn example(name: &str) -> PathBuf {
        repo_root().join(format!("examples/workflows/{name}.yaml"))
    }

    /// The state directory the binary is given (on sled).
    pub(crate) fn state(&self) -> &Path {
        assert!(
            self.database.is_none(),
            "a test of sled's files runs on sled only"
        );
        &self.state
    }

    /// The state's database URL, when it is in PostgreSQL.
    pub(crate) fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Points the binary at the state at `location` (a directory or a URL) from now on.
    pub(crate) fn use_location(&mut self, location: &str) {
        if location.starts_with("postgres://") {
            self.database = Some(location.to_owned());
        } else {
            self.database = None;
            self.state = PathBuf::from(location);
        }
    }

    /// Gives the binary another, empty state (directory or database) from now on.
    pub(crate) fn use_state(&mut self, name: &str) {
        self.state = self.dir.path().join(name);
        if self.database.is_some() {
            self.database = Some(crate::pg::shared().expect("in use").database());
        }
    }

    /// Writes `text` to `name` in the scenario's directory.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A path in the scenario's directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary pointed at the simulator and the state, in the cleared environment of
    /// every test.
    pub(crate) fn command(&self) -> Command {
        let mut command = crate::support::command();
        command
            .env("CURSOR_API_BASE_URL", self.sim.url())
            .env("CURSOR_API_KEY", DEFAULT_KEY)
            .env("ORCHESTRATE_QUOTAS", &self.quotas)
            .env(
                "ORCHESTRATE_STATE",
                self.database
                    .as_deref()
                    .map_or(self.state.as_os_str(), std::ffi::OsStr::new),
            )
            // A database's runs keep their webhook secrets on this machine: here.
            .env("XDG_STATE_HOME", self.dir.path().join("local"))
            .envs(self.backend.environment(&self.sim.url()))
            .stdin(Stdio::null());
        command
    }

    /// `apply FILE --yes` with fast polling, `extra` after.
    pub(crate) fn apply_command(&self, file: &Path, extra: &[&str]) -> Command {
        let mut command = self.command();
        command
            .arg("apply")
            .arg(file)
            .arg("--yes")
            .args(FAST)
            .args(extra);
        command
    }

    /// Runs `command` to its end without holding up the simulator.
    pub(crate) async fn finish(command: Command) -> Ran {
        let mut command = command;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        bounded(command, "").await
    }

    /// Runs `command` to its end in a pseudo-terminal (util-linux `script`, in every Debian),
    /// with `input` typed: what a user at a terminal sees, stdout and stderr together in
    /// [`Ran::stdout`]. The command's own stdout may still be redirected by `redirect`.
    pub(crate) async fn in_terminal(
        command: &Command,
        input: &str,
        redirect: Option<&Path>,
    ) -> Ran {
        let which = std::process::Command::new("sh")
            .args(["-c", "command -v script"])
            .output()
            .unwrap();
        assert!(
            which.status.success(),
            "util-linux `script` is needed for terminal tests"
        );
        let words = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|w| shlex::try_quote(&w.to_string_lossy()).unwrap().into_owned())
            .collect::<Vec<_>>();
        let mut line = words.join(" ");
        if let Some(file) = redirect {
            line.push_str(" > ");
            line.push_str(&shlex::try_quote(&file.to_string_lossy()).unwrap());
        }
        let mut script = std::process::Command::new("script");
        script
            .env_clear()
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                script.env(key, value);
            }
        }
        if let Some(dir) = command.get_current_dir() {
            script.current_dir(dir);
        }
        bounded(script, input).await
    }

    /// Runs the binary with `args` to its end.
    pub(crate) async fn run(&self, args: &[&str]) -> Ran {
        let mut command = self.command();
        command.args(args);
        Self::finish(command).await
    }

    /// Runs `apply FILE --yes` to its end.
    pub(crate) async fn apply(&self, file: &Path, extra: &[&str]) -> Ran {
        Self::finish(self.apply_command(file, extra)).await
    }

    /// Starts `apply FILE --yes` with `extra` in the background, its stderr kept for
    /// [`Scenario::ended`].
    pub(crate) fn spawn_watched(&self, file: &Path, extra: &[&str]) -> Child {
        let mut command = self.apply_command(file, extra);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        command.spawn().unwrap()
    }

    /// Waits for a child of [`Scenario::spawn_watched`] to end: its exit code and stderr.
    pub(crate) async fn ended(child: Child) -> Ran {
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().into())
            .await
            .unwrap()
    }

    /// Starts `apply FILE --yes` in the background, its output discarded.
    pub(crate) fn spawn_apply(&self, file: &Path) -> Child {
        let mut command = self.apply_command(file, &[]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command.spawn().unwrap()
    }

    /// Runs the command a hint in `output` gives after `label` (as in `continue with: `, up
    /// to a closing backquote), exactly as printed, with the scenario's environment.
    pub(crate) async fn follow_hint(&self, output: &str, label: &str) -> Ran {
        let line = output
            .lines()
            .find_map(|line| line.split_once(label).map(|(_, hint)| hint))
            .map_or_else(
                || panic!("no `{label}` hint in:\n{output}"),
                |hint| hint.split('`').next().unwrap_or(hint),
            );
        let words = shlex::split(line).unwrap_or_else(|| panic!("not a command line: {line}"));
        assert_eq!(words[0], "orchestrate", "{line}");
        let mut command = self.command();
        command.env_remove("ORCHESTRATE_STATE").args(&words[1..]);
        Self::finish(command).await
    }

    /// `status --json`, which must succeed.
    pub(crate) async fn status(&self) -> Status {
        let ran = self.run(&["status", "--json"]).await;
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        Status(serde_json::from_str(&ran.stdout).unwrap())
    }

    /// Waits (at most 3 s) until the simulator has made `count` agents.
    pub(crate) async fn wait_for_agents(&self, count: u64) {
        self.wait_until(|stats| stats.agents >= count).await;
    }

    /// Waits (at most 5 s) until the simulator's counters say `done`.
    pub(crate) async fn wait_until(&self, done: impl Fn(&Stats) -> bool) {
        for _ in 0..500 {
            if done(&self.sim.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A fresh simulator set up by `next` where this one listened, with this scenario's
    /// directory and state: a server restarted, its memory gone.
    pub(crate) async fn restart(self, next: Builder) -> Scenario {
        let Scenario {
            sim,
            dir,
            state,
            database,
            ..
        } = self;
        let address = sim.addr();
        sim.shutdown().await;
        let mut restarted = next.at(address).start().await;
        (restarted.dir, restarted.state, restarted.database) = (dir, state, database);
        restarted
    }

    /// Stops the simulator, failing the test if any exchange broke the published API.
    pub(crate) async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

/// Asserts that no repository and branch (or name) got two agents.
pub(crate) fn every_launch_once(stats: &Stats) {
    for (key, count) in &stats.launches {
        assert_eq!(*count, 1, "{key} was launched {count} times");
    }
}

/// The follow-ups each agent received, sorted.
pub(crate) fn follow_ups(stats: &Stats) -> Vec<u64> {
    let mut sent: Vec<u64> = stats.follow_ups.values().copied().collect();
    sent.sort_unstable();
    sent
}

/// Sends `signal` (`INT`, `KILL`) to `child`.
pub(crate) fn signal(child: &Child, signal: &str) {
    Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
}
