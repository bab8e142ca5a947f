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
mod state;
mod validate;
mod workflow;

use crate::state::Location;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

pub use error::Error;
pub use output::{ColorChoice, Output};

/// Run fleets of Cursor Cloud Agents declaratively.
///
/// A YAML workflow names repositories, the agent tasks to run on them, the dependencies
/// between tasks and the follow-up prompts to send. `plan` shows what `apply` will do.
#[derive(Debug, Parser)]
#[command(
    name = "orchestrate",
    version,
    about,
    long_about,
    max_term_width = 100,
    after_help = "Environment variables and exit codes: see `orchestrate --help`.",
    after_long_help = ENVIRONMENT_AND_EXIT_CODES
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// `--state` before the command name, as hints print it (the command's own wins).
    #[arg(long, value_name = "DIR|URL", hide = true)]
    pub state: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// What `orchestrate --help` ends with: what the README would otherwise be the only place for.
const ENVIRONMENT_AND_EXIT_CODES: &str = "\
Environment variables:
  CURSOR_API_KEY        The API key (cursor.com/settings). Without it, `apply --simulate`.
  CURSOR_API_BASE_URL   The API's root (default https://api.cursor.com; through a LiteLLM
                        proxy, http://HOST:4000/cursor).
  CURSOR_API_AUTH       basic (the key as user name, default) or bearer (LiteLLM keys).
  CURSOR_API_VERSION    v1 (default) or v0: the API a workflow without `api:` uses, and
                        the one `me`, `models`, `repos` and `agents` call.
  ORCHESTRATE_STATE     The state directory (default .orchestrate); --state wins.
  ORCHESTRATE_QUOTAS    Ceilings of your own, e.g. calls=600/min,launches=60/min.
  ORCHESTRATE_BACKEND   cursor (default) or litellm-agent-platform, with LAP_URL,
                        LAP_AGENT_ID and LAP_MASTER_KEY.
  NO_COLOR              Set and not empty: no colour.
  RUST_LOG              Log filter, overriding -v and -q (e.g. orchestrate=trace).

Exit codes:
  0  Every task succeeded, or the command did what it was asked.
  1  Some task failed, timed out or was cancelled.
  2  Bad input or usage: nothing was launched.
  3  Interrupted, or not confirmed: run the printed command to continue.
  4  The API cannot be used (key, URL, outage): nothing more was launched.";

/// Options every command takes, before or after the command name.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// More detail on stderr (-v: debug, -vv: trace, with each API call's answer).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to color output; `NO_COLOR` in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// `--state`, taken by the commands that read or write a state (and only by them).
#[derive(Debug, Clone, Args)]
pub struct StateArg {
    /// The directory or database URL given, if any.
    #[arg(
        long = "state",
        value_name = "DIR|URL",
        help = "Where the run state is: a directory (embedded store), or a postgres:// URL that several runners share [env: ORCHESTRATE_STATE] [default: .orchestrate]"
    )]
    dir: Option<String>,
}

impl StateArg {
    /// The directory: this flag, else `--state` before the command, else
    /// `ORCHESTRATE_STATE`, else `.orchestrate`.
    fn resolve(self, before: Option<&String>) -> Location {
        let given = self
            .dir
            .or_else(|| before.cloned())
            .or_else(|| {
                std::env::var("ORCHESTRATE_STATE")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| hint::DEFAULT_STATE.to_owned());
        Location::parse(&given)
    }
}

/// `-o/--output` of commands that print records: a table for people, JSON for scripts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Listing {
    /// An aligned table in a terminal; tab-separated rows when piped.
    #[default]
    Text,
    /// The stable JSON the README describes.
    Json,
}

/// `-o/--output` with `--json`, the older spelling, kept hidden.
#[derive(Debug, Clone, Copy, Args)]
pub struct ListingArg {
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    output: Listing,
    #[arg(long, hide = true, conflicts_with = "output")]
    json: bool,
}

impl ListingArg {
    /// The format asked for.
    pub fn format(self) -> Listing {
        if self.json {
            Listing::Json
        } else {
            self.output
        }
    }
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
        /// Output format (`github` writes `::error` annotations; chosen by itself under
        /// GitHub Actions).
        #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
        output: Option<validate::Format>,
    },
    /// Show the instances, DAG and prompts that `apply` would run.
    Plan {
        /// The workflow file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[arg(
            short = 'o',
            long = "output",
            alias = "format",
            value_enum,
            default_value_t,
            value_name = "FORMAT"
        )]
        output: crate::plan::Format,
        /// Run key to plan for, instead of the workflow's `run_key`.
        #[arg(long, value_name = "KEY")]
        run: Option<String>,
        /// Exit 2 when `apply` would launch, relaunch or adopt anything, 0 when not (as
        /// terraform's); errors are then exit 1.
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Run or continue a workflow until every task settles.
    Apply {
        #[command(flatten)]
        args: apply::ApplyArgs,
        #[command(flatten)]
        state: StateArg,
    },
    /// Show each instance of a run (the latest when RUN is omitted).
    Status {
        /// The run (`workflow/key`).
        run: Option<String>,
        #[command(flatten)]
        output: ListingArg,
        /// Only the instances in these states (comma-separated, e.g. failed,running).
        #[arg(long, value_name = "STATES", value_delimiter = ',', value_parser = runs::parse_state)]
        state_is: Vec<crate::state::InstanceState>,
        /// Show it again as it changes, until the run ends (Ctrl-C to stop watching).
        #[arg(long, short = 'w')]
        watch: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// List the runs in the state, newest first (or prune old ones, or remove one).
    Runs {
        /// `prune`, `rm`, or nothing to list.
        #[command(subcommand)]
        command: Option<RunsCommand>,
        #[command(flatten)]
        output: ListingArg,
        #[command(flatten)]
        state: StateArg,
    },
    /// Move a run between stores: export it as JSON, or import an export.
    State {
        /// `export` or `import`.
        #[command(subcommand)]
        command: StateCommand,
        #[command(flatten)]
        state: StateArg,
    },
    /// Stop a run's running agents and mark them cancelled.
    Cancel {
        /// The run (the latest when omitted).
        run: Option<String>,
        #[command(flatten)]
        state: StateArg,
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
        #[command(flatten)]
        state: StateArg,
    },
    /// Report on a run: each instance's repository, state, branch, PR, summary, duration.
    Report {
        /// The run (the latest when omitted).
        run: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = crate::report::ReportFormat::Markdown, value_name = "FORMAT")]
        output: crate::report::ReportFormat,
        #[command(flatten)]
        state: StateArg,
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
        #[command(flatten)]
        state: StateArg,
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
    /// Print the shell completion script of SHELL.
    ///
    /// For example: `orchestrate completions bash >
    /// ~/.local/share/bash-completion/completions/orchestrate`, or for zsh `orchestrate
    /// completions zsh > "${fpath[1]}/_orchestrate"`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    ///
    /// For example: `orchestrate man > ~/.local/share/man/man1/orchestrate.1`, then `man
    /// orchestrate`.
    Man,
}

/// `orchestrate runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Remove runs older than a duration that ended (succeeded, failed, cancelled, interrupted).
    Prune {
        /// Age beyond which settled runs are removed, e.g. 30d.
        #[arg(long, value_name = "DURATION", value_parser = crate::spec::parse_age)]
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

/// `orchestrate state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print a run, its instances and its log as one JSON document (a backup, or a move).
    Export {
        /// The run (the latest when omitted).
        run: Option<String>,
    },
    /// Add a run exported by `state export` to this state (refused if it has the run).
    Import {
        /// The exported file, or `-` for stdin.
        file: PathBuf,
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
    /// Interrupted, or the launch not confirmed; run the printed command to continue.
    Interrupted = 3,
    /// The API cannot be used (authentication, configuration).
    ApiUnusable = 4,
}

impl Exit {
    /// `plan --detailed-exitcode`: `apply` would change something (terraform's 2).
    pub const CHANGES: Exit = Exit::Invalid;
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Commands whose output no global option changes: the options are not offered there.
const PLAIN_COMMANDS: [&str; 3] = ["schema", "completions", "man"];

/// The command line as users see it: [`Cli`], with the global options hidden from the
/// commands they do nothing for (`schema` prints the same JSON whatever `--color` says).
/// There they are still accepted, so that a script that passes `-q` to every command works.
pub fn command() -> clap::Command {
    let command = Cli::command();
    // A subcommand's own argument of a global one's id stops that one from reaching it:
    // each is shadowed by a hidden copy, which keeps its parser, action and default.
    let hidden: Vec<clap::Arg> = ["verbose", "quiet", "color"]
        .iter()
        .filter_map(|id| command.get_arguments().find(|arg| arg.get_id() == id))
        .map(|arg| arg.clone().global(false).hide(true))
        .collect();
    PLAIN_COMMANDS.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| sub.args(hidden.clone()))
    })
}

/// Parses the process's arguments as [`command`] describes them; a usage error exits with
/// clap's message (exit 2).
pub fn parse() -> Cli {
    use clap::FromArgMatches as _;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// Runs the command `cli` describes; an error is printed here, and its exit code returned.
pub fn run(cli: Cli) -> Exit {
    let out = Output::new(&cli.global);
    out.init_tracing();
    // With `plan --detailed-exitcode`, 2 means "changes", so every error is 1, as terraform's.
    let detailed = matches!(
        cli.command,
        Command::Plan {
            detailed_exitcode: true,
            ..
        }
    );
    match execute(&out, cli) {
        Ok(exit) => exit,
        Err(error) => {
            error.print(&out);
            if detailed {
                Exit::TaskFailed
            } else {
                error.exit_code()
            }
        }
    }
}

fn execute(out: &Output, cli: Cli) -> Result<Exit, Error> {
    let before = cli.state.as_ref();
    match cli.command {
        Command::Validate { files, output } => validate::run(out, &files, output),
        Command::Plan {
            file,
            output,
            run,
            detailed_exitcode,
            state,
        } => block_on(plan::run(
            out,
            &state.resolve(before),
            &file,
            output,
            run,
            detailed_exitcode,
        )),
        Command::Schema => {
            let schema = crate::spec::json_schema();
            out.stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&schema).expect("plain JSON")
            ));
            Ok(Exit::Success)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "orchestrate", &mut script);
            out.stdout(&String::from_utf8_lossy(&script));
            Ok(Exit::Success)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command())
                .render(&mut page)
                .expect("writing to memory");
            out.stdout(&String::from_utf8_lossy(&page));
            Ok(Exit::Success)
        }
        Command::Me { api } => block_on(api::run(out, api::ApiCommand::Me, api)),
        Command::Models { api } => block_on(api::run(out, api::ApiCommand::Models, api)),
        Command::Repos { api } => block_on(api::run(out, api::ApiCommand::Repos, api)),
        Command::Agents { command, api } => {
            block_on(api::run(out, api::ApiCommand::Agents(command), api))
        }
        Command::Sim(args) => block_on(sim::run(out, args)),
        Command::Apply { args, state } => block_on(apply::run(out, &state.resolve(before), args)),
        Command::Status {
            run,
            output,
            state_is,
            watch,
            state,
        } => block_on(runs::status(
            out,
            &state.resolve(before),
            run,
            runs::StatusView {
                format: output.format(),
                only: state_is,
                watch,
            },
        )),
        Command::Runs {
            command,
            output,
            state,
        } => {
            let dir = state.resolve(before);
            match command {
                None => block_on(runs::runs(out, &dir, output.format())),
                Some(RunsCommand::Prune { older_than }) => {
                    block_on(runs::prune(out, &dir, older_than))
                }
                Some(RunsCommand::Rm { run, force }) => {
                    block_on(runs::remove(out, &dir, &run, force))
                }
            }
        }
        Command::Report { run, output, state } => {
            block_on(runs::report(out, &state.resolve(before), run, output))
        }
        Command::Cancel { run, state } => block_on(runs::cancel(out, &state.resolve(before), run)),
        Command::State { command, state } => {
            let state = state.resolve(before);
            match command {
                StateCommand::Export { run } => block_on(state::export(out, &state, run)),
                StateCommand::Import { file } => block_on(state::import(out, &state, &file)),
            }
        }
        Command::Artifacts {
            run,
            instance,
            out: out_dir,
            state,
        } => block_on(artifacts::run(
            out,
            &state.resolve(before),
            run,
            instance,
            out_dir,
        )),
        Command::Retry {
            run,
            select,
            yes,
            tuning,
            state,
        } => block_on(runs::retry(
            out,
            &state.resolve(before),
            run,
            select,
            tuning,
            yes,
        )),
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
