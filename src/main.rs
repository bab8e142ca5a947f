use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = orchestrate::cli::parse();
    orchestrate::cli::run(cli).into()
}
