//! `sturdy`: runs applications made of unikernels on KVM (DESIGN.md section 4).
//!
//! A thin binary: [`cli`] declares the verbs and their flags (clap derive, help written as doc
//! comments), each verb lives in one file under [`cmd`], and [`error`] turns a failure into what
//! the user sees. Exit statuses: 0 success (also when stdout is a closed pipe), 1 the command
//! failed, 2 the command line was not understood.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod error;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let stdout = std::io::stdout();
    let result = match cli.command {
        cli::Command::Up(args) => cmd::up::run(&args),
        cli::Command::Config(args) => cmd::config::run(&args, &mut stdout.lock()),
        cli::Command::Graph(args) => cmd::graph::run(&args, &mut stdout.lock()),
        cli::Command::Completions(args) => cmd::completions::run(&args, &mut stdout.lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
