//! `orchestrate apply FILE`: run or continue a workflow until every instance settles. The
//! library prepares, starts and concludes the run (`crate::apply`); this parses, confirms,
//! shows progress and picks the exit code.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::hint::Hints;
use super::progress::{DEFAULT_HEARTBEAT, LiveView, Sources};
use super::{Error, Exit, Output};
use crate::apply::{Conclusion, Finished, Request, SIMULATED_SPEED, Tuning, Webhooks, conclude};
use crate::cursor::ConfigError;
use crate::report::{GithubActions, Report};
use crate::spec::{self, Api, SourceFile};
use crate::state::{Location, StoreHandle};

/// `orchestrate apply` options.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // each is a flag of its own
pub struct ApplyArgs {
    /// The workflow file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Run key: continue or start the run with this key instead of the workflow's `run_key`.
    #[arg(long, value_name = "KEY")]
    pub run: Option<String>,
    /// Launch without asking (required when not in a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Run against a simulator started in process: no key, no cost, agents take seconds.
    #[arg(long)]
    pub simulate: bool,
    /// Most agents active at once, overriding the workflow's `concurrency`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// Refuse to start if the run would launch more agents than this (a cost guard; retries
    /// may add more).
    #[arg(long, value_name = "N")]
    pub max_agents: Option<usize>,
    /// Receive Cursor's webhooks on this address (with --webhook-url); statuses are then
    /// read as soon as an agent changes, and polling slows down to a safety net.
    #[arg(long, value_name = "ADDR", requires = "webhook_url")]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// The public URL that reaches --webhook-listen (its path is the one listened on).
    #[arg(long, value_name = "URL", requires = "webhook_listen")]
    pub webhook_url: Option<url::Url>,
    /// Refresh the repository list of discover fleets even if the cache is young.
    #[arg(long)]
    pub refresh_repos: bool,
    /// Share the run with other runners started with --join (on other machines): each
    /// instance is claimed by one of them, and the concurrency cap holds across all. Needs
    /// the state in a database (--state postgres://...).
    #[arg(long)]
    pub join: bool,
    /// With --join: how long a runner's claim of an instance lasts unless renewed; a
    /// runner killed or cut off leaves its instances to the others after it.
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_flag_duration, requires = "join", default_value = "30s")]
    pub lease: Duration,
    /// How the executor paces itself.
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// The executor's settings, shared by `apply` and `retry`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct TuningArgs {
    /// Shortest interval between two status reads of one agent (default 250ms; reads are
    /// paced by its age and the durations seen).
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_flag_duration, help_heading = "Tuning")]
    pub poll_interval: Option<Duration>,
    /// First wait before relaunching a failed attempt (it doubles each time).
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_flag_duration, help_heading = "Tuning")]
    pub retry_backoff: Option<Duration>,
    /// After a follow-up, how long a FINISHED status must be fresh to count if RUNNING was
    /// never seen.
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_flag_duration, help_heading = "Tuning")]
    pub follow_up_grace: Option<Duration>,
    /// How long the API may stay out of reach (no connection, or 5xx answers) before apply
    /// stops, resumable, with exit 4 (default 2m).
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_flag_duration, help_heading = "Tuning")]
    pub outage_budget: Option<Duration>,
    /// Without a terminal (CI, cron), how often to print the counts and the agents still
    /// running (default 1m; 0s for never).
    #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_flag_duration, help_heading = "Tuning")]
    pub heartbeat: Option<Duration>,
}

impl From<TuningArgs> for Tuning {
    fn from(args: TuningArgs) -> Self {
        Tuning {
            poll_interval: args.poll_interval,
            retry_backoff: args.retry_backoff,
            follow_up_grace: args.follow_up_grace,
            outage_budget: args.outage_budget,
        }
    }
}

impl ApplyArgs {
    /// What these flags ask of the library.
    fn request(&self) -> Request {
        Request {
            file: self.file.display().to_string(),
            run_key: self.run.clone(),
            simulate: self.simulate,
            max_concurrency: self.max_concurrency,
            max_agents: self.max_agents,
            webhooks: self
                .webhook_listen
                .zip(self.webhook_url.clone())
                .map(|(listen, url)| Webhooks { listen, url }),
            refresh_repos: self.refresh_repos,
            join: self.join.then_some(self.lease),
            tuning: self.tuning.into(),
            retry: Vec::new(),
        }
    }
}

/// Runs `apply`.
pub async fn run(out: &Output, state: &Location, args: ApplyArgs) -> Result<Exit, Error> {
    let loaded = spec::load(&args.file)?;
    let heartbeat = args.tuning.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
    apply(out, state, &loaded, args.request(), args.yes, heartbeat).await
}

/// `retry`: the run's recorded workflow applied again, its instances in a state of `states`
/// relaunched.
pub async fn retry(
    out: &Output,
    state: &Location,
    run: &crate::state::RunRecord,
    states: Vec<crate::state::InstanceState>,
    tuning: TuningArgs,
    yes: bool,
) -> Result<Exit, Error> {
    let loaded = spec::load_source(SourceFile::new(run.file.clone(), run.source.as_str()))?;
    let request = Request {
        file: run.file.clone(),
        run_key: Some(run.key.clone()),
        simulate: run.simulated,
        tuning: tuning.into(),
        retry: states,
        ..Request::default()
    };
    let heartbeat = tuning.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
    apply(out, state, &loaded, request, yes, heartbeat).await
}

/// Prepares, confirms, runs and concludes one apply.
async fn apply(
    out: &Output,
    state: &Location,
    loaded: &spec::Loaded,
    request: Request,
    yes: bool,
    heartbeat: Duration,
) -> Result<Exit, Error> {
    let (store, aside) = StoreHandle::open_setting_aside(state)?;
    if let Some(aside) = aside {
        out.warn(&format!(
            "the state in {} could not be opened; it was moved to {} and a new one started: \
             launches it recorded are found again in the API and adopted, not launched twice",
            state.describe(),
            aside.display()
        ));
    }
    let hints = Hints::new(state);
    let (file, simulate) = (request.file.clone(), request.simulate);
    let say = |line: &str| out.status(line);
    let prepared = crate::apply::prepare(&store, loaded, request, &say)
        .await
        .map_err(|error| explain(error, &hints, &file))?;
    if let Some(url) = prepared.simulator_url() {
        let what = match &prepared.plan().api {
            Api::Cursor(_) => "the Cursor API",
            Api::Platform(_) => "the LiteLLM Agent Platform",
        };
        out.status(&format!(
            "simulating {what} at {url} (agents work {SIMULATED_SPEED}x faster)"
        ));
    }
    let [launch, relaunch, adopt, resume, keep] = prepared.actions();
    // Adopting happens only where a state lost its run: said then, not on every apply.
    let adopt = match adopt {
        0 => String::new(),
        n => format!("{n} to adopt, "),
    };
    out.status(&format!(
        "run {}: {launch} to launch, {relaunch} to relaunch, {adopt}{resume} to continue, {keep} to keep ({} at once)",
        prepared.plan().run,
        prepared.plan().concurrency
    ));
    let new_agents = prepared.new_agents();
    if new_agents > 0 && !simulate && !yes && !confirm(out, &prepared, new_agents, &hints, &file)? {
        return Err(Error::NotConfirmed {
            resume: hints.resume(&file, &prepared.plan().run_context.key),
        });
    }

    let interrupt = CancellationToken::new();
    let stop_agents = Arc::new(AtomicBool::new(false));
    let by_signal = watch_stops(out.clone(), interrupt.clone(), stop_agents.clone());
    let run_id = prepared.plan().run.to_string();
    // A request left by a `cancel` of an earlier process is not this apply's to act on.
    let _ = store.take_cancel_request(&run_id).await;
    let cancel_watch = watch_cancel_requests(
        out.clone(),
        store.clone(),
        run_id,
        interrupt.clone(),
        stop_agents.clone(),
    );
    let live = LiveView::new(out, prepared.plan().instances.len(), heartbeat);
    let lines = live.clone();
    let report = Arc::new(move |progress: &crate::exec::Progress| {
        if let Some(line) = progress.line() {
            lines.event(&line);
        }
    });
    let started = prepared.start(&store, report, interrupt).await?;
    if let Some((addr, path)) = started.webhook_address() {
        out.status(&format!("receiving webhooks on {addr} at {path}"));
    }
    let view = live.follow(Sources {
        counts: started.counts(),
        waited: Box::new(started.quota_clock()),
        running: Box::new(started.running()),
    });
    let halt = started.execute().await;
    view.abort();
    cancel_watch.abort();
    live.finish();
    // In a terminal, the first Ctrl-C leaves a moment for a second one, which also stops
    // the agents; without a terminal nobody can press it, so nobody waits.
    if halt == Some(crate::exec::Halt::Interrupted)
        && std::io::stdin().is_terminal()
        && !by_signal.load(Ordering::SeqCst)
        && !stop_agents.load(Ordering::SeqCst)
    {
        second_chance(out, started.live_agents(), &stop_agents).await;
    }
    let counts = *started.counts().borrow();
    let conclusion = conclude(halt.as_ref(), &counts, stop_agents.load(Ordering::SeqCst));
    let finished = started.finish(&conclusion).await;
    Ok(render(out, &conclusion, &finished, &hints, &file))
}

/// What to do about an apply that could not start, where the library's error alone does not
/// say it.
fn explain(error: crate::apply::ApplyError, hints: &Hints, file: &str) -> Error {
    use crate::apply::ApplyError;
    let simulate = format!(
        "or try the workflow against the built-in simulator: {}",
        hints.command(&["apply", "--simulate", file])
    );
    match error {
        ApplyError::Config(ConfigError::MissingKey) => {
            Error::Unusable("CURSOR_API_KEY is not set, so no agent can be launched".into())
                .hinted(format!(
                    "either export CURSOR_API_KEY (from https://cursor.com/settings) and run again,\n{simulate}"
                ))
        }
        ApplyError::Config(ConfigError::MissingPlatformKey) => {
            Error::Config(ConfigError::MissingPlatformKey).hinted(format!(
                "export LAP_MASTER_KEY (the platform's key) and run again,\n{simulate}"
            ))
        }
        other => Error::Apply(other),
    }
}

/// Asks in a terminal whether to launch; refuses without one.
fn confirm(
    out: &Output,
    prepared: &crate::apply::Prepared,
    new_agents: usize,
    hints: &Hints,
    file: &str,
) -> Result<bool, Error> {
    if !std::io::stdin().is_terminal() {
        let key = &prepared.plan().run_context.key;
        return Err(Error::Usage(format!(
            "refusing to launch {new_agents} agent(s) without --yes when not in a terminal; review `{}`, then run `{}`",
            hints.command(&["plan", file, "--run", key]),
            hints.resume(file, key)
        )));
    }
    // The plan and the question go to the same place, the terminal's stderr: with stdout
    // redirected, one is never asked about a plan one cannot see.
    let plan = prepared
        .plan()
        .render_colored(crate::plan::Format::Text, out.is_colored());
    let answer = out.ask(
        &plan,
        &format!("Launch {new_agents} agent(s)? [y/N] "),
        || {
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            answer
        },
    );
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Waits up to 5 s for a second Ctrl-C, which also stops the `live` running agents.
async fn second_chance(out: &Output, live: usize, stop_agents: &AtomicBool) {
    if live == 0 {
        return;
    }
    out.status(&format!(
        "press Ctrl-C again within 5 s to also stop the {live} running agent(s)"
    ));
    for _ in 0..50 {
        if stop_agents.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How the user asked `apply` to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Ctrl-C in a terminal: a second one may follow.
    CtrlC,
    /// SIGTERM or SIGHUP (systemd, Kubernetes, `timeout`, a cancelled CI job): nobody is
    /// there to press Ctrl-C again, and a kill may follow soon.
    Signal(&'static str),
}

/// The first stop request: Ctrl-C, SIGTERM or SIGHUP.
async fn first_stop() -> Option<Stop> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return tokio::signal::ctrl_c().await.ok().map(|()| Stop::CtrlC);
        };
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.ok().map(|()| Stop::CtrlC),
            _ = term.recv() => Some(Stop::Signal("SIGTERM")),
            _ = hup.recv() => Some(Stop::Signal("SIGHUP")),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.ok().map(|()| Stop::CtrlC)
}

/// First Ctrl-C (or SIGTERM, SIGHUP): stop launching. A second Ctrl-C: also stop the running
/// agents. Returns a flag set when the first stop was a signal, which waits for no second.
fn watch_stops(
    out: Output,
    interrupt: CancellationToken,
    stop_agents: Arc<AtomicBool>,
) -> Arc<AtomicBool> {
    let by_signal = Arc::new(AtomicBool::new(false));
    let signalled = by_signal.clone();
    tokio::spawn(async move {
        let Some(stop) = first_stop().await else {
            return;
        };
        match stop {
            Stop::CtrlC => out.status("\ninterrupting: no new agents are launched"),
            Stop::Signal(name) => {
                signalled.store(true, Ordering::SeqCst);
                out.status(&format!("\n{name}: no new agents are launched"));
            }
        }
        interrupt.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_agents.store(true, Ordering::SeqCst);
            out.status("stopping the running agents...");
        }
    });
    by_signal
}

/// How often an apply looks for a `cancel` from another process.
const CANCEL_POLL: Duration = Duration::from_millis(250);

/// Acts on `orchestrate cancel RUN` run in another terminal: like a second Ctrl-C, it stops
/// the launches and the running agents, which the apply then records as cancelled.
fn watch_cancel_requests(
    out: Output,
    store: StoreHandle,
    run: String,
    interrupt: CancellationToken,
    stop_agents: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // A store out of reach asks again on the next turn: its own retries say why.
        while !store.take_cancel_request(&run).await.unwrap_or(false) {
            tokio::time::sleep(CANCEL_POLL).await;
        }
        out.status("\ncancel requested by another orchestrate: stopping the running agents...");
        stop_agents.store(true, Ordering::SeqCst);
        interrupt.cancel();
    })
}

/// Tells how the apply ended, publishes the GitHub Actions summary, and picks the exit code.
fn render(
    out: &Output,
    conclusion: &Conclusion,
    finished: &Finished,
    hints: &Hints,
    file: &str,
) -> Exit {
    let run = &finished.run.id;
    let resume = hints.resume(file, &finished.run.key);
    if let Some(error) = &finished.not_recorded {
        out.error(&error.to_string());
    }
    let exit = match conclusion {
        Conclusion::Cancel => {
            if let Some(done) = &finished.cancelled {
                out.status(&format!(
                    "cancelled: {} agent(s) stopped, {} instance(s) skipped",
                    done.stopped, done.skipped
                ));
            }
            return Exit::TaskFailed;
        }
        Conclusion::Interrupted => {
            if finished.run.simulated {
                out.status(&format!(
                    "interrupted: its simulator is gone, so the simulated run starts over with: {}",
                    hints.command(&["apply", "--simulate", file, "--run", &finished.run.key])
                ));
            } else {
                out.status(&format!(
                    "interrupted: nothing more is launched; running agents go on in the cloud.\n\
                     continue with: {resume}\nstop them with: {}",
                    hints.command(&["cancel", run])
                ));
            }
            Exit::Interrupted
        }
        Conclusion::UsageLimit(message) => {
            out.error(message);
            out.status(&format!(
                "paused: nothing more is launched until the usage limit is raised; running agents go on in the cloud.\n\
                 once it is raised, continue with: {resume}"
            ));
            Exit::Interrupted
        }
        Conclusion::Fatal(message) => {
            out.error(message);
            out.status(&format!(
                "the run can be continued once this is fixed: {resume}"
            ));
            Exit::ApiUnusable
        }
        Conclusion::Succeeded => Exit::Success,
        Conclusion::Failed => Exit::TaskFailed,
    };
    let counts = crate::state::Counts::of(&finished.records);
    out.status(&format!(
        "run {run}: {counts}\nsee `{}` for each instance",
        hints.command(&["status", run])
    ));
    if let Some(github) = GithubActions::from_env() {
        let report = Report {
            run: finished.run.clone(),
            instances: finished.records.clone(),
        };
        match github.publish(&report) {
            Ok(annotations) => out.stdout(&annotations),
            Err(error) => out.error(&format!(
                "cannot write the GitHub Actions summary or outputs: {error}"
            )),
        }
    }
    exit
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn apply_args(args: &[&str]) -> ApplyArgs {
        let argv = ["orchestrate", "apply", "w.yaml"].iter().chain(args);
        match Cli::parse_from(argv).command {
            Command::Apply { args, .. } => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_flags_become_one_request() {
        let request = apply_args(&[
            "--run",
            "nightly",
            "--webhook-listen",
            "127.0.0.1:9000",
            "--webhook-url",
            "https://hooks.example.com/cursor",
            "--poll-interval",
            "2s",
        ])
        .request();
        assert_eq!(request.file, "w.yaml");
        assert_eq!(request.run_key.as_deref(), Some("nightly"));
        let hooks = request.webhooks.unwrap();
        assert_eq!(hooks.listen.port(), 9000);
        assert_eq!(hooks.url.path(), "/cursor");
        assert_eq!(request.tuning.poll_interval, Some(Duration::from_secs(2)));
        assert!(request.retry.is_empty());
    }

    #[test]
    fn a_missing_key_says_both_ways_forward_and_means_exit_4() {
        let hints = Hints::new(&Location::parse("/tmp/st"));
        let error = explain(
            crate::apply::ApplyError::Config(ConfigError::MissingKey),
            &hints,
            "w.yaml",
        );
        assert_eq!(error.exit_code(), Exit::ApiUnusable);
        let Error::Hinted { hint, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(hint.contains("export CURSOR_API_KEY"), "{hint}");
        assert!(
            hint.ends_with("orchestrate --state /tmp/st apply --simulate w.yaml"),
            "{hint}"
        );
        let other = explain(
            crate::apply::ApplyError::TooManyAgents { count: 3, max: 2 },
            &hints,
            "w.yaml",
        );
        assert_eq!(other.exit_code(), Exit::Invalid);
    }
}
