//! `sturdy`: runs applications made of unikernels on KVM (`docs/architecture.md`).
//!
//! A thin binary: [`cli`] declares the verbs and their flags (clap derive, help written as doc
//! comments), each verb lives in one file under [`cmd`], and [`error`] turns a failure into what
//! the user sees. The verbs that run things talk to the daemon (`sturdy_daemon::client`),
//! starting it when none runs. Exit statuses: 0 success (also when stdout is a closed pipe),
//! 1 the command failed, 2 the command line was not understood; `sturdy run` passes on the
//! unikernel's.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod error;

use std::process::ExitCode;

use clap::Parser;
use cmd::lifecycle::Verb;

fn main() -> ExitCode {
    let mut cli = cli::Cli::parse();
    if let Some(file) = &cli.file {
        if let Err(e) = cli.command.default_file(file) {
            eprintln!("sturdy: {e}");
            return ExitCode::from(2);
        }
    }
    let state = cmd::daemon::state_dir(cli.state_dir.as_deref(), std::env::var_os("STURDY_HOME"));
    let stdout = std::io::stdout();
    let out = &mut stdout.lock();
    use cli::Command as C;
    let result = match cli.command {
        C::Up(args) => cmd::up::run(&args, &state),
        C::Down(args) => cmd::down::run(&args, &state, out),
        C::Ps(args) => cmd::ps::run(&args, &state, out),
        C::Logs(args) => cmd::logs::run(&args, &state, out),
        C::Restart(args) => cmd::lifecycle::run(Verb::Restart, &args, &state, out),
        C::Stop(args) => cmd::lifecycle::run(Verb::Stop, &args, &state, out),
        C::Start(args) => cmd::lifecycle::run(Verb::Start, &args, &state, out),
        C::Stats(args) => cmd::stats::run(&args, &state, out),
        C::Inspect(args) => cmd::inspect::run(&args, &state, out),
        C::Capture(args) => cmd::capture::run(&args, &state),
        C::Run(args) => cmd::run::run(&args, &state),
        C::Config(args) => cmd::config::run(&args, out),
        C::Graph(args) => cmd::graph::run(&args, out),
        C::Daemon(args) => cmd::daemon::run(&args, &state),
        C::Completions(args) => cmd::completions::run(&args, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
