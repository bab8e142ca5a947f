//! Where and how commands print: stdout for results, stderr for diagnostics and progress.

use std::io::{IsTerminal, Write};

use miette::{GraphicalReportHandler, GraphicalTheme};

use super::GlobalArgs;
use crate::spec::{Invalid, LoadError};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Color when stderr is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always color.
    Always,
    /// Never color.
    Never,
}

/// The output settings of one command.
#[derive(Debug, Clone)]
pub struct Output {
    color: bool,
    /// Whether stdout is coloured: `--color always`, or a terminal when `auto`.
    stdout_color: bool,
    quiet: bool,
    verbose: u8,
}

impl Output {
    /// Output as the global flags ask.
    pub fn new(global: &GlobalArgs) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let colored = |terminal: bool| match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && terminal,
        };
        Self {
            color: colored(std::io::stderr().is_terminal()),
            stdout_color: colored(std::io::stdout().is_terminal()),
            quiet: global.quiet,
            verbose: global.verbose,
        }
    }

    /// Sends `tracing` events to stderr at the level `-v`/`-q` ask (`RUST_LOG` overrides).
    pub fn init_tracing(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "warn",
            (false, 1) => "debug",
            (false, _) => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("orchestrate={level},sled=error,warn"))
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(self.color)
            .without_time()
            .try_init();
    }

    /// These settings, with status lines silenced when `quiet`.
    #[must_use]
    pub fn quieted(mut self, quiet: bool) -> Self {
        self.quiet |= quiet;
        self
    }

    /// Whether stderr is coloured.
    pub fn is_colored(&self) -> bool {
        self.color
    }

    /// Shows `context` and asks `question` on stderr, then returns what `read` answers.
    pub fn ask(&self, context: &str, question: &str, read: impl FnOnce() -> String) -> String {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{context}\n{question}");
        let _ = stderr.flush();
        drop(stderr);
        read()
    }

    /// Whether `-q` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The terminal stdout is, for tables; `None` when it is piped (tab-separated rows).
    pub fn terminal(&self) -> Option<crate::report::Terminal> {
        let (_, width) = console::Term::stdout().size_checked()?;
        Some(crate::report::Terminal {
            width: width.max(40),
            color: self.stdout_color,
        })
    }

    /// Whether stdout is coloured (`+` green and `~` yellow in a plan).
    pub fn stdout_color(&self) -> bool {
        self.stdout_color
    }

    /// Writes a command's result to stdout.
    pub fn stdout(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`orchestrate plan | head`) is not an error worth a panic.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// Writes a status line to stderr, unless `-q`.
    pub fn status(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Writes a warning to stderr, always: something was done the user must know about.
    pub fn warn(&self, text: &str) {
        self.labelled("warning", "1;33", text);
    }

    /// Writes an error to stderr, always.
    pub fn error(&self, text: &str) {
        self.labelled("error", "1;31", text);
    }

    /// `label: text` on stderr, the label in the SGR colour `sgr` when colour is on.
    fn labelled(&self, label: &str, sgr: &str, text: &str) {
        if self.color {
            eprintln!("\x1b[{sgr}m{label}\x1b[0m: {text}");
        } else {
            eprintln!("{label}: {text}");
        }
    }

    /// Renders a load error: every problem with its source line, then a summary.
    pub fn load_error(&self, error: &LoadError) {
        match error {
            LoadError::Read(read) => self.error(&read.to_string()),
            LoadError::Invalid(invalid) => self.invalid(invalid),
        }
    }

    /// Renders the problems of a file with their source lines, then a summary.
    pub fn invalid(&self, invalid: &Invalid) {
        {
            {
                let handler = self.report_handler();
                let mut rendered = String::new();
                for located in invalid.located() {
                    let _ = handler.render_report(&mut rendered, &located);
                    rendered.push('\n');
                }
                eprint!("{rendered}");
                let count = invalid.diagnostics.len();
                self.error(&format!(
                    "{} is not a valid workflow: {count} problem{}",
                    invalid.file.name(),
                    if count == 1 { "" } else { "s" }
                ));
            }
        }
    }

    fn report_handler(&self) -> GraphicalReportHandler {
        let theme = if self.color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false)
    }
}
