//! `sturdy down`: stops an application (every monitor, its fabric and published ports) and
//! forgets it; with `--volumes`, also deletes its volumes.

use std::io::Write;
use std::path::Path;

use sturdy_daemon::api::DownInfo;
use sturdy_daemon::client::encode;

use super::Target;
use crate::error::CliError;

/// Examples shown by `sturdy down --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy down                               the application of ./sturdy.yaml, or the only one up
  sturdy down --file examples/guestbook     the application of that file
  sturdy down -p guestbook --volumes        ... and delete its data

Without --volumes the volumes stay in STATE/apps/<name>/volumes for the next `up`.";

/// Flags of `sturdy down`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,

    /// Also delete the application's volumes (its data)
    #[arg(short = 'v', long)]
    pub volumes: bool,

    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
}

/// Runs `sturdy down`.
pub fn run(args: &Args, state: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let client = super::daemon::required(state)?;
    let name = match args.target.given()? {
        Some(name) => name,
        None => args.target.resolve(&client)?,
    };
    let path = format!(
        "/v1/apps/{}{}",
        encode(&name),
        if args.volumes { "?volumes=true" } else { "" }
    );
    let done: DownInfo = client
        .delete(&path)
        .map_err(|e| super::ps::not_running(e, state))?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&done).expect("json")
        )?;
        return Ok(());
    }
    if done.was_running {
        writeln!(out, "{name} stopped")?;
    } else if done.volumes_removed.is_empty() {
        writeln!(out, "{name} forgotten (it was not running)")?;
    }
    for v in &done.volumes_removed {
        writeln!(out, "removed volume {v}")?;
    }
    Ok(())
}
