//! `sturdy logs`: the consoles of an application's services (every instance's, and the
//! supervisor's notes on starts, exits and restarts), merged in time order, prefixed with the
//! service's name; `--follow` keeps printing new lines.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use sturdy_daemon::api::{AppInfo, LogLine};
use sturdy_daemon::client::encode;
use sturdy_daemon::console::timestamp;

use super::{Prefixes, Target};
use crate::error::CliError;

/// Examples shown by `sturdy logs --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy logs                               every service's console so far
  sturdy logs -f web                        follow web's console (Ctrl-C stops following)
  sturdy logs web db                        two services, their lines interleaved in time
  sturdy logs --since 10m --tail 20         the last 20 lines of each from the last 10 minutes
  sturdy logs --since 2026-11-27T04:45:00Z  from a UTC time on
  sturdy logs --json | jq -r 'select(.stream == \"sturdy\") | .text'   restarts and exits

Each service keeps the last 256 KiB of its console, across its instances.";

/// Flags of `sturdy logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these services' consoles [default: all]
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    /// Keep printing new lines as they come
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Only lines from this long ago (10s, 5m, 1h) or from this UTC time
    /// (2026-11-27T04:45:00Z) on
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Only the last N lines of each service
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,

    /// Show each line's time (UTC)
    #[arg(short = 't', long)]
    pub timestamps: bool,

    /// Print each line as a JSON object (service, time, stream, text), one per line
    #[arg(long)]
    pub json: bool,

    /// Never colour the output
    #[arg(long)]
    pub no_color: bool,

    #[command(flatten)]
    pub target: Target,
}

/// Runs `sturdy logs`.
pub fn run(args: &Args, state: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let client = super::daemon::required(state)?;
    let name = args.target.resolve(&client)?;
    let app_path = format!("/v1/apps/{}", encode(&name));
    let info: AppInfo = client
        .get(&app_path)
        .map_err(|e| super::ps::not_running(e, state))?;
    let mut query = vec![];
    if !args.services.is_empty() {
        query.push(format!("service={}", encode(&args.services.join(","))));
    }
    if let Some(since) = &args.since {
        query.push(format!(
            "since={}",
            encode(&since_time(since, SystemTime::now())?)
        ));
    }
    if let Some(n) = args.tail {
        query.push(format!("tail={n}"));
    }
    if args.follow {
        query.push("follow=true".into());
    }
    let path = format!("{app_path}/logs?{}", query.join("&"));
    let prefixes = Prefixes::new(
        info.services.iter().map(|s| s.name.as_str()),
        super::use_color(args.no_color),
    );
    let mut failure = super::WriteFailure::default();
    client
        .lines(&path, Duration::from_secs(1), |line| {
            let Some(line) = line else { return true };
            let written = if args.json {
                writeln!(out, "{line}")
            } else {
                match serde_json::from_str::<LogLine>(line) {
                    Ok(l) => {
                        let text = if l.stream == "sturdy" {
                            format!("sturdy: {}", l.text)
                        } else {
                            l.text
                        };
                        let time = if args.timestamps {
                            format!("{} ", l.time)
                        } else {
                            String::new()
                        };
                        writeln!(out, "{} | {time}{text}", prefixes.get(&l.service))
                    }
                    Err(_) => Ok(()),
                }
            };
            failure.keep_going(written.and_then(|()| out.flush()))
        })
        .map_err(|e| anyhow!(e))?;
    failure.into_result()
}

/// `--since` as a console time stamp: a duration back from `now`, or a UTC time
/// (`2026-11-27T04:45:00Z`, optionally with `.mmm`).
fn since_time(since: &str, now: SystemTime) -> Result<String, CliError> {
    if let Ok(d) = sturdy_compose::units::duration(since) {
        return Ok(timestamp(
            now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
        ));
    }
    let t = since.trim();
    let shape = |s: &str| {
        s.len() == 24
            && s.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                10 => c == 'T',
                13 | 16 => c == ':',
                19 => c == '.',
                23 => c == 'Z',
                _ => c.is_ascii_digit(),
            })
    };
    let full = if t.len() == 20 && t.ends_with('Z') {
        format!("{}.000Z", &t[..19])
    } else {
        t.to_string()
    };
    if shape(&full) {
        return Ok(full);
    }
    Err(anyhow!(
        "--since {since:?}: expected a duration (10s, 5m, 1h) or a UTC time \
         (2026-11-27T04:45:00Z)"
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_utc_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_754_722);
        assert_eq!(since_time("10s", now).unwrap(), "2026-11-27T04:45:12.000Z");
        assert_eq!(since_time("1m", now).unwrap(), "2026-11-27T04:44:22.000Z");
        assert_eq!(
            since_time("2026-11-27T04:45:00Z", now).unwrap(),
            "2026-11-27T04:45:00.000Z"
        );
        assert_eq!(
            since_time("2026-11-27T04:45:00.250Z", now).unwrap(),
            "2026-11-27T04:45:00.250Z"
        );
        let err = since_time("yesterday", now).err().unwrap();
        assert!(format!("{err:?}").contains("expected a duration"));
    }
}
