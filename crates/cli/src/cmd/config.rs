//! `sturdy config`: validates an application file and prints its resolved plan, as YAML or
//! (`--json`) as JSON.

use std::io::Write;

use crate::error::CliError;

/// Examples shown by `sturdy config --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy config                             the application in the current directory
  sturdy config examples/guestbook          a directory holding a sturdy.yaml
  sturdy config app.yaml --json             a file, as JSON
  sturdy config --json | jq -r '.services[] | \"\\(.name) \\(.ipv4)\"'";

/// Flags of `sturdy config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub app: super::AppFile,

    /// Print the plan as JSON instead of YAML
    #[arg(long)]
    pub json: bool,
}

/// Loads the application and writes its plan to `out`.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let plan = super::load(&args.app.path())?;
    let text = if args.json {
        plan.to_json()
    } else {
        plan.to_yaml()
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
