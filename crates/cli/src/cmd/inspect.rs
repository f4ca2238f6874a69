//! `sturdy inspect`: one service in detail: its state, what it runs, what it may reach and
//! who may reach it, and its resource use.

use std::io::Write;
use std::path::Path;

use sturdy_compose::Probe;
use sturdy_daemon::api::InspectInfo;
use sturdy_daemon::client::encode;

use super::{bytes, Target};
use crate::error::CliError;

/// Examples shown by `sturdy inspect --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy inspect web                        web's state, image, arguments, capabilities
  sturdy inspect db --json | jq .plan.volumes";

/// Flags of `sturdy inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// Print as JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub target: Target,
}

/// Runs `sturdy inspect`.
pub fn run(args: &Args, state: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let client = super::daemon::required(state)?;
    let name = args.target.resolve(&client)?;
    let info: InspectInfo = client
        .get(&format!(
            "/v1/apps/{}/services/{}",
            encode(&name),
            encode(&args.service)
        ))
        .map_err(|e| super::ps::not_running(e, state))?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&info).expect("json")
        )?;
        return Ok(());
    }
    let s = &info.status;
    let p = &info.plan;
    let none = || "-".to_string();
    let mut w = |k: &str, v: String| writeln!(out, "{k:<16}{v}");
    w("application", info.app.clone())?;
    w("service", s.name.clone())?;
    w("state", s.state.clone())?;
    w("pid", s.pid.map_or_else(none, |p| p.to_string()))?;
    w("instance", s.instance.to_string())?;
    w("restarts", s.restarts.to_string())?;
    w(
        "last exit",
        s.last_exit.map_or_else(none, |c| c.to_string()),
    )?;
    w("started", s.started_at.clone().unwrap_or_else(none))?;
    w("address", s.address.clone())?;
    w("image", p.image.display().to_string())?;
    w("memory", bytes(p.mem))?;
    w(
        "cpus",
        sturdy_compose::units::cpus_text(p.cpus_milli) + " (its monitor's CPU quota)",
    )?;
    w("arguments", p.args.join(" "))?;
    w(
        "provides",
        p.provides
            .iter()
            .map(|e| format!("{} {}/{}", e.name, e.port, e.proto))
            .collect::<Vec<_>>()
            .join(", "),
    )?;
    w("may reach", info.capabilities.join(", "))?;
    w("reachable from", info.reachable_from.join(", "))?;
    w("ports", s.ports.join(", "))?;
    w(
        "volumes",
        p.volumes
            .iter()
            .map(|v| format!("{} as {} ({})", v.volume, v.device, bytes(v.size)))
            .collect::<Vec<_>>()
            .join(", "),
    )?;
    w(
        "restart",
        serde_json::to_value(p.restart)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
    )?;
    w(
        "healthcheck",
        p.healthcheck
            .as_ref()
            .map_or_else(none, |h| match &h.probe {
                Probe::Tcp => format!("tcp connect to port {}", h.port),
                Probe::Http { path } => format!("http GET {path} on port {}", h.port),
            }),
    )?;
    if p.healthcheck.is_some() {
        let last = match (&s.last_probe_error, s.state.as_str()) {
            (Some(why), _) => why.clone(),
            (None, "healthy" | "unhealthy") => "ok".into(),
            (None, _) => "none yet".into(),
        };
        w("last probe", last)?;
    }
    let st = &info.stats;
    w("cpu time", format!("{} ms", st.cpu_ms))?;
    w("memory used", bytes(st.rss_bytes))?;
    w(
        "traffic",
        format!(
            "rx {} ({} frames), tx {} ({} frames), {} dropped",
            bytes(st.rx_bytes),
            st.rx_frames,
            bytes(st.tx_bytes),
            st.tx_frames,
            st.drops
        ),
    )?;
    Ok(())
}
