//! `sturdy completions`: prints a completion script for bash, zsh or fish, generated from the
//! same definition that parses the command line.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::CliError;

/// Examples shown by `sturdy completions --help`.
pub const EXAMPLES: &str = "\
Examples:
  source <(sturdy completions bash)                        bash, this shell only
  sturdy completions bash > /etc/bash_completion.d/sturdy  bash, every shell
  sturdy completions zsh > \"${fpath[1]}/_sturdy\"            zsh
  sturdy completions fish > ~/.config/fish/completions/sturdy.fish";

/// Flags of `sturdy completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells completions are generated for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shell {
    /// Bash
    Bash,
    /// Zsh
    Zsh,
    /// Fish
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(shell: Shell) -> clap_complete::Shell {
        match shell {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Writes the completion script to `out`.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(args.shell),
        &mut Cli::command(),
        "sturdy",
        &mut script,
    );
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}
