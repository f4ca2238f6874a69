//! `sturdy capture`: the frames of a service, or of one of its capabilities, as they cross the
//! fabric, written as pcap (tshark, tcpdump and Wireshark read it) to a file or to a pipe.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use sturdy_daemon::client::encode;

use super::Target;
use crate::error::{io_reason, CliError};

/// Examples shown by `sturdy capture --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy capture web -w web.pcap            everything web sends and receives, until Ctrl-C
  sturdy capture web db.kv -w db.pcap       only web's connections to db's kv endpoint
  sturdy capture web --duration 10s | tshark -r -       watch it live
  sturdy capture db --count 100 -w db.pcap  the next 100 frames

A service's capture holds every frame it sent (refused ones too) and every frame sent to it; a
capability's holds the frames of its connections both ways, and the resets the fabric sends
when it cuts them.";

/// Flags of `sturdy capture`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// Only this capability of the service (`db.kv`, or `db` if it holds one to db)
    #[arg(value_name = "CAPABILITY")]
    pub uses: Option<String>,

    /// Write to this file instead of stdout
    #[arg(short = 'w', long = "write", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,

    /// Stop after this long (10s, 2m)
    #[arg(long, value_name = "DURATION", value_parser = super::up::parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many frames
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,

    #[command(flatten)]
    pub target: Target,
}

/// Runs `sturdy capture`.
pub fn run(args: &Args, state: &Path) -> Result<(), CliError> {
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow!("cannot write {}: {}", path.display(), io_reason(&e)))?,
        ),
        None if std::io::stdout().is_terminal() => {
            return Err(anyhow!(
                "a capture is binary (pcap): write it to a file with -w FILE, or pipe it into \
                 `tshark -r -`"
            )
            .into())
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let client = super::daemon::required(state)?;
    let name = args.target.resolve(&client)?;
    let mut query = vec![format!("service={}", encode(&args.service))];
    if let Some(uses) = &args.uses {
        query.push(format!("uses={}", encode(uses)));
    }
    if let Some(d) = args.duration {
        query.push(format!("seconds={}", d.as_secs_f64()));
    }
    if let Some(n) = args.count {
        query.push(format!("frames={n}"));
    }
    let path = format!("/v1/apps/{}/capture?{}", encode(&name), query.join("&"));

    // Ctrl-C ends the capture with whole records written, not mid-frame.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot handle signals")?;
    }
    let what = match &args.uses {
        Some(uses) => format!("{}'s capability {uses}", args.service),
        None => args.service.clone(),
    };
    let mut bytes = 0u64;
    let mut failure = super::WriteFailure::default();
    client
        .chunks(&path, Duration::from_millis(100), |chunk| {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let Some(chunk) = chunk else { return true };
            if bytes == 0 {
                // The pcap header: the capture runs.
                eprintln!("sturdy: capturing {what} of {name}; Ctrl-C stops");
            }
            let written = out.write_all(chunk).and_then(|()| out.flush());
            if written.is_ok() {
                bytes += chunk.len() as u64;
            }
            failure.keep_going(written)
        })
        .map_err(|e| anyhow!(e))?;
    failure.into_result()?;
    if let Some(path) = &args.output {
        eprintln!(
            "sturdy: {bytes} bytes of pcap written to {}",
            path.display()
        );
    }
    Ok(())
}
