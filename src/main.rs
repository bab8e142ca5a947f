use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = orchestrate::cli::Cli::parse();
    orchestrate::cli::run(cli).into()
}
