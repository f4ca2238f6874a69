//! `sturdy stats`: each service's CPU use, memory, and fabric traffic and drops.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;
use sturdy_daemon::api::AppInfo;
use sturdy_daemon::client::{encode, Client};
use sturdy_daemon::stats::ServiceStats;

use super::{bytes, table};
use crate::error::CliError;

/// Examples shown by `sturdy stats --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy stats                              every service of every application
  sturdy stats -p guestbook --json          one application, as JSON

CPU is the monitor's use over a short sample (100% = one core); MEMORY its resident memory
(guest pages touched and the monitor); RX what the guest sent into the fabric, TX what the
fabric delivered to it; DROPS frames of the guest the fabric refused, by reason in --json.";

/// How long CPU use is sampled over.
const SAMPLE: Duration = Duration::from_millis(250);

/// Flags of `sturdy stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this application [default: all]
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub name: Option<String>,

    /// Only the application of this file
    #[arg(long = "file", value_name = "PATH", conflicts_with = "name",
          value_hint = clap::ValueHint::AnyPath)]
    pub file: Option<std::path::PathBuf>,

    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

/// One service's line.
#[derive(Debug, Serialize)]
struct Row {
    app: String,
    /// CPU use over the sample, in percent of one core.
    cpu_percent: f64,
    #[serde(flatten)]
    stats: ServiceStats,
}

/// Runs `sturdy stats`.
pub fn run(args: &Args, state: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let only = match &args.file {
        Some(file) => Some(super::load(file)?.name),
        None => args.name.clone(),
    };
    let client = match super::daemon::existing(state)? {
        Some(client) => client,
        None if only.is_some() => return Err(super::daemon::required(state).err().unwrap()),
        None => return print(args, &[], out),
    };
    let names: Vec<String> = match &only {
        Some(n) => vec![n.clone()],
        None => client
            .get::<Vec<AppInfo>>("/v1/apps")
            .map_err(|e| anyhow!(e))?
            .into_iter()
            .map(|a| a.name)
            .collect(),
    };
    let sample = |client: &Client| -> Result<Vec<(String, Vec<ServiceStats>)>, CliError> {
        names
            .iter()
            .map(|n| {
                let s: Vec<ServiceStats> = client
                    .get(&format!("/v1/apps/{}/stats", encode(n)))
                    .map_err(|e| super::ps::not_running(e, state))?;
                Ok((n.clone(), s))
            })
            .collect()
    };
    let first = sample(&client)?;
    let t0 = Instant::now();
    if !first.is_empty() {
        std::thread::sleep(SAMPLE);
    }
    let second = sample(&client)?;
    let elapsed = t0.elapsed().as_secs_f64().max(1e-3);
    let mut rows = Vec::new();
    for (app, services) in second {
        for s in services {
            let before = first
                .iter()
                .find(|(a, _)| *a == app)
                .and_then(|(_, ss)| ss.iter().find(|x| x.service == s.service && x.pid == s.pid))
                .map_or(s.cpu_ms, |x| x.cpu_ms);
            let cpu_percent = (s.cpu_ms.saturating_sub(before)) as f64 / 10.0 / elapsed;
            rows.push(Row {
                app: app.clone(),
                cpu_percent: (cpu_percent * 10.0).round() / 10.0,
                stats: s,
            });
        }
    }
    print(args, &rows, out)
}

fn print(args: &Args, rows: &[Row], out: &mut dyn Write) -> Result<(), CliError> {
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rows).expect("json")
        )?;
        return Ok(());
    }
    let mut lines = vec![[
        "APPLICATION",
        "SERVICE",
        "CPU",
        "MEMORY",
        "RX",
        "TX",
        "DROPS",
        "REFUSED",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let s = &r.stats;
        lines.push(vec![
            r.app.clone(),
            s.service.clone(),
            format!("{:.1}%", r.cpu_percent),
            if s.pid.is_some() {
                bytes(s.rss_bytes)
            } else {
                "-".into()
            },
            format!("{} / {} frames", bytes(s.rx_bytes), s.rx_frames),
            format!("{} / {} frames", bytes(s.tx_bytes), s.tx_frames),
            if s.drops_by_reason.is_empty() {
                s.drops.to_string()
            } else {
                let why: Vec<String> = s
                    .drops_by_reason
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect();
                format!("{} ({})", s.drops, why.join(", "))
            },
            s.connections_refused.to_string(),
        ]);
    }
    table(out, &lines)?;
    Ok(())
}
