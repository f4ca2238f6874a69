//! `sturdy ps`: the services of the applications that are up, their state, process, address,
//! uptime, restarts and published ports.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use sturdy_daemon::api::AppInfo;
use sturdy_daemon::client::{encode, ClientError};

use super::{short_duration, table, Target};
use crate::error::CliError;

/// Examples shown by `sturdy ps --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy ps                                 every application that is up
  sturdy ps -p guestbook                    one application
  sturdy ps --json | jq '.[].services[] | {name, state}'

States: created (waiting for its dependencies), starting (health check not passed yet),
running (no health check), healthy, unhealthy, restarting (after its backoff), exited (N),
crash-loop (restarted too often in a row: tried again ever more slowly, at most every 5
minutes; the next try shows), stopped (by `sturdy stop`).";

/// Flags of `sturdy ps`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this application [default: all]
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub name: Option<String>,

    /// Only the application of this file
    #[arg(long = "file", value_name = "PATH", conflicts_with = "name",
          value_hint = clap::ValueHint::AnyPath)]
    pub file: Option<std::path::PathBuf>,

    /// Print the applications as JSON (a list, as the API gives them)
    #[arg(long)]
    pub json: bool,
}

/// Runs `sturdy ps`.
pub fn run(args: &Args, state: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let target = Target {
        file: args.file.clone(),
        name: args.name.clone(),
    };
    let only = if args.name.is_some() || args.file.is_some() {
        target.given()?
    } else {
        None
    };
    let apps: Vec<AppInfo> = match (super::daemon::existing(state)?, &only) {
        (Some(client), Some(name)) => vec![client
            .get(&format!("/v1/apps/{}", encode(name)))
            .map_err(|e| not_running(e, state))?],
        (Some(client), None) => client.get("/v1/apps").map_err(|e| anyhow!(e))?,
        (None, Some(name)) => return Err(anyhow!("no application {name:?} is up").into()),
        (None, None) => Vec::new(),
    };
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&apps).expect("json")
        )?;
        return Ok(());
    }
    print(&apps, out)
}

/// A missing daemon, said plainly.
pub fn not_running(e: ClientError, state: &Path) -> CliError {
    match e {
        ClientError::NotRunning { .. } => anyhow!(
            "no application is up: no sturdy daemon runs for {}",
            state.display()
        )
        .into(),
        other => anyhow!(other).into(),
    }
}

fn print(apps: &[AppInfo], out: &mut dyn Write) -> Result<(), CliError> {
    let mut rows = vec![[
        "APPLICATION",
        "SERVICE",
        "STATE",
        "PID",
        "ADDRESS",
        "UPTIME",
        "RESTARTS",
        "PORTS",
    ]
    .map(String::from)
    .to_vec()];
    for app in apps {
        for s in &app.services {
            let state = match (&s.waiting_for, s.state.as_str(), s.next_start_in_ms) {
                (Some(w), "created", _) => format!("created (waiting for {w})"),
                (_, "crash-loop", Some(ms)) => {
                    format!(
                        "crash-loop (next try in {})",
                        short_duration(Duration::from_millis(ms))
                    )
                }
                _ => s.state.clone(),
            };
            rows.push(vec![
                app.name.clone(),
                s.name.clone(),
                state,
                s.pid.map_or("-".into(), |p| p.to_string()),
                s.address.clone(),
                s.uptime_ms
                    .map_or("-".into(), |ms| short_duration(Duration::from_millis(ms))),
                s.restarts.to_string(),
                s.ports.join(", "),
            ]);
        }
    }
    table(out, &rows)?;
    for app in apps {
        if let Some(e) = &app.error {
            writeln!(out, "{}: did not start: {e}", app.name)?;
        }
    }
    out.flush()?;
    Ok(())
}
