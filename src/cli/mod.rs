//! The command line: arguments, and one function per command.

mod api;
mod apply;
mod artifacts;
mod error;
mod hint;
mod output;
mod plan;
mod progress;
mod runs;
mod sim;
mod validate;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use error::Error;
pub use output::{ColorChoice, Output};

/// Run fleets of Cursor Cloud Agents declaratively.
///
/// A YAML workflow names repositories, the agent tasks to run on them, the dependencies
/// between tasks and the follow-up prompts to send. `plan` shows what `apply` will do.
#[derive(Debug, Parser)]
#[command(name = "orchestrate", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after the command name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory of the run state.
    #[arg(
        long,
        global = true,
        env = "ORCHESTRATE_STATE",
        default_value = hint::DEFAULT_STATE,
        value_name = "DIR"
    )]
    pub state: PathBuf,
    /// More detail on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to color output; `NO_COLOR` in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// The commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Check workflow files and report every problem (exit 0 valid, 2 invalid).
    Validate {
        /// Workflow files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show the instances, DAG and prompts that `apply` would run.
    Plan {
        /// The workflow file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::plan::Format::Text)]
        format: crate::plan::Format,
        /// Run key to plan for, instead of the workflow's `run_key`.
        #[arg(long, value_name = "KEY")]
        run: Option<String>,
    },
    /// Run or continue a workflow until every task settles.
    Apply(apply::ApplyArgs),
    /// Show each instance of a run (the latest when RUN is omitted).
    Status {
        /// The run (`workflow/key`).
        run: Option<String>,
        /// Print JSON (a stable format: see the README).
        #[arg(long)]
        json: bool,
    },
    /// List the runs in the state, newest first (or prune old ones, or remove one).
    Runs {
        /// `prune`, `rm`, or nothing to list.
        #[command(subcommand)]
        command: Option<RunsCommand>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a run's running agents and mark them cancelled.
    Cancel {
        /// The run (the latest when omitted).
        run: Option<String>,
    },
    /// Relaunch a run's failed, timed-out and cancelled instances, and re-run their dependents.
    Retry {
        /// The run (the latest when omitted).
        run: Option<String>,
        /// Which instances to relaunch; without any, all three kinds.
        #[command(flatten)]
        select: runs::RetrySelect,
        /// Launch without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// How the executor paces itself.
        #[command(flatten)]
        tuning: apply::TuningArgs,
    },
    /// Report on a run: each instance's repository, state, branch, PR, summary, duration.
    Report {
        /// The run (the latest when omitted).
        run: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::report::ReportFormat::Markdown)]
        format: crate::report::ReportFormat,
    },
    /// List or download the files an instance's agent produced (API v1).
    Artifacts {
        /// The run.
        run: String,
        /// The instance, like `bump[acme/api]`.
        instance: String,
        /// Download every artifact into this directory (else list them).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema of the workflow format.
    Schema,
    /// Show what the API knows of the key: its name, user and creation date.
    Me {
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// List the models the API offers for `model:`.
    Models {
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// List the GitHub repositories the key can reach (the API allows 1 call a minute, 30 an
    /// hour).
    Repos {
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// Inspect and manage agents directly.
    Agents {
        /// What to do.
        #[command(subcommand)]
        command: api::AgentsCommand,
        #[command(flatten)]
        api: api::ApiArgs,
    },
    /// Run a local simulator of the Cursor API (for trying workflows without a key).
    Sim(sim::SimArgs),
}

/// `orchestrate runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Remove runs older than a duration that ended (succeeded, failed, cancelled, interrupted).
    Prune {
        /// Age beyond which settled runs are removed, e.g. 30d.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
    /// Remove one run, with its instances and its log, from the state.
    Rm {
        /// The run (`workflow/key`, or `sim:workflow/key` for a simulated one).
        run: String,
        /// Remove it even if agents of it may still work (their results are then lost).
        #[arg(long)]
        force: bool,
    },
}

/// Process exit codes (DESIGN.md section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every task succeeded, or the command did what it was asked.
    Success = 0,
    /// Some task failed, timed out or was cancelled.
    TaskFailed = 1,
    /// Bad input or usage; nothing was launched.
    Invalid = 2,
    /// Interrupted; run `apply` again to continue.
    Interrupted = 3,
    /// The API cannot be used (authentication, configuration).
    ApiUnusable = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Runs the command `cli` describes; an error is printed here, and its exit code returned.
pub fn run(cli: Cli) -> Exit {
    let out = Output::new(&cli.global);
    out.init_tracing();
    match execute(&out, cli) {
        Ok(exit) => exit,
        Err(error) => {
            error.print(&out);
            error.exit_code()
        }
    }
}

fn execute(out: &Output, cli: Cli) -> Result<Exit, Error> {
    let state = &cli.global.state;
    match cli.command {
        Command::Validate { files } => validate::run(out, &files),
        Command::Plan { file, format, run } => block_on(plan::run(out, state, &file, format, run)),
        Command::Schema => {
            let schema = crate::spec::json_schema();
            out.stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&schema).expect("plain JSON")
            ));
            Ok(Exit::Success)
        }
        Command::Me { api } => block_on(api::run(out, api::ApiCommand::Me, api)),
        Command::Models { api } => block_on(api::run(out, api::ApiCommand::Models, api)),
        Command::Repos { api } => block_on(api::run(out, api::ApiCommand::Repos, api)),
        Command::Agents { command, api } => {
            block_on(api::run(out, api::ApiCommand::Agents(command), api))
        }
        Command::Sim(args) => block_on(sim::run(out, args)),
        Command::Apply(args) => block_on(apply::run(out, state, args)),
        Command::Status { run, json } => block_on(runs::status(out, state, run, json)),
        Command::Runs {
            command: None,
            json,
        } => block_on(runs::runs(out, state, json)),
        Command::Runs {
            command: Some(RunsCommand::Prune { older_than }),
            ..
        } => block_on(runs::prune(out, state, older_than)),
        Command::Runs {
            command: Some(RunsCommand::Rm { run, force }),
            ..
        } => block_on(runs::remove(out, state, &run, force)),
        Command::Report { run, format } => block_on(runs::report(out, state, run, format)),
        Command::Cancel { run } => block_on(runs::cancel(out, state, run)),
        Command::Artifacts {
            run,
            instance,
            out: out_dir,
        } => block_on(artifacts::run(out, state, run, instance, out_dir)),
        Command::Retry {
            run,
            select,
            yes,
            tuning,
        } => block_on(runs::retry(out, state, run, select, tuning, yes)),
    }
}

/// Runs an async command on a runtime made for it.
fn block_on<T>(command: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(command)
}
