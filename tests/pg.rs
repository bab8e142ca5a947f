//! A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package, in a temporary directory, on a loopback port.
//!
//! One cluster serves the whole test binary, each scenario with a database of its own; a
//! test that restarts the server starts its own cluster. Where no PostgreSQL binaries
//! exist, the tests that need them say so on stderr and return; with
//! `ORCHESTRATE_REQUIRE_POSTGRES=1` (as `.ci/run` sets) they fail instead, so that CI can
//! never pass them silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running cluster, stopped and removed when dropped (or when the test binary exits).
pub(crate) struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// `initdb` refuses to run as root: then every server command runs as this user.
    user: Option<&'static str>,
}

static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The cluster the test binary shares, or `None` (said loudly) where PostgreSQL is missing.
pub(crate) fn shared() -> Option<&'static Cluster> {
    SHARED.get_or_init(|| Cluster::start(false)).as_ref()
}

/// Where `initdb` and `pg_ctl` are: on `PATH`, else the newest `/usr/lib/postgresql/N/bin`.
fn binaries() -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(initdb) = on_path {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return real.parent().map(Path::to_owned);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let version = path.file_name()?.to_str()?.parse().ok()?;
            path.join("bin/initdb")
                .exists()
                .then(|| (version, path.join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// Starts a new cluster; `durable` keeps fsync on (benchmarks), tests turn it off.
    pub(crate) fn start(durable: bool) -> Option<Cluster> {
        let Some(bin) = binaries() else {
            let why = "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; install Debian's `postgresql` package";
            assert!(
                std::env::var_os("ORCHESTRATE_REQUIRE_POSTGRES").is_none(),
                "ORCHESTRATE_REQUIRE_POSTGRES is set but {why}"
            );
            eprintln!("POSTGRES TESTS SKIPPED: {why}");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("orchestrate-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let user = is_root().then_some("postgres");
        if let Some(user) = user {
            let chown = Command::new("chown")
                .args(["-R", user])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown {} to {user}", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            dir,
            bin,
            port,
            user,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "orchestrate",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=300",
            cluster.dir.display()
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        std::fs::write(cluster.dir.join("options"), &options).unwrap();
        cluster.server_start();
        cluster.reap_with_this_process();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a PostgreSQL program from the cluster's binaries, as the server's user.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server and waits until it takes connections.
    pub(crate) fn server_start(&self) {
        let options = std::fs::read_to_string(self.dir.join("options")).unwrap();
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash or a kill would (`-m immediate`).
    pub(crate) fn server_stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// The server goes when the test binary does, however it ends: a watcher stops it.
    fn reap_with_this_process(&self) {
        let stop = format!(
            "{} {} -D {} -m immediate stop",
            self.user
                .map(|u| format!("runuser -u {u} --"))
                .unwrap_or_default(),
            self.bin.join("pg_ctl").display(),
            self.data()
        );
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {}",
            std::process::id(),
            self.dir.display()
        );
        // In the background of a shell that ends at once: the watcher outlives this process.
        let started = Command::new("sh")
            .args(["-c", &format!("({script}) </dev/null >/dev/null 2>&1 &")])
            .status()
            .unwrap();
        assert!(started.success(), "the cluster's watcher did not start");
    }

    /// A new, empty database, as the URL `--state` takes.
    pub(crate) fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "orchestrate", &name],
        );
        self.url(&name)
    }

    /// The URL of database `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("postgres://orchestrate@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in the database at `url` (psql, as a user would).
    pub(crate) fn sql(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                url,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.server_stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP relay to a cluster that can be cut: a runner connected through it loses the
/// database (its connections reset, new ones refused) while other runners keep it.
pub(crate) struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays a loopback port to `cluster`'s.
    pub(crate) async fn to(cluster: &Cluster) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = cluster.port;
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let accepting = {
            let (cut, links) = (cut.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is refused at once
                    }
                    links.lock().unwrap().spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
        };
        Relay {
            port,
            cut,
            links,
            accepting,
        }
    }

    /// The URL of database `url` (of the relayed cluster) through this relay.
    pub(crate) fn url(&self, url: &str) -> String {
        let (head, rest) = url.rsplit_once('@').expect("a URL with a user");
        let (_, database) = rest.split_once('/').expect("a URL with a database");
        format!("{head}@127.0.0.1:{}/{database}", self.port)
    }

    /// Cuts every connection and refuses new ones until [`Relay::restore`].
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.links.lock().unwrap().abort_all();
    }

    /// Relays again.
    pub(crate) fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
        self.links.lock().unwrap().abort_all();
    }
}
