//! `sturdy stop`, `start` and `restart`: one, several or all services of an application,
//! its fabric, addresses and published ports staying in place.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use sturdy_daemon::api::AppInfo;
use sturdy_daemon::client::encode;

use super::Target;
use crate::error::CliError;

/// Examples shown by `sturdy stop/start/restart --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy restart db                         a new instance of db (its volume keeps its data)
  sturdy stop web                           stop web; it stays stopped (no restart policy)
  sturdy start web                          start it again
  sturdy stop                               every service, in reverse start order

A service's address, capabilities and published ports stay in place while it is stopped;
connections to it are refused.";

/// Which lifecycle verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `sturdy stop`
    Stop,
    /// `sturdy start`
    Start,
    /// `sturdy restart`
    Restart,
}

/// Flags of `sturdy stop`, `start` and `restart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The services [default: all]
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,

    #[command(flatten)]
    pub target: Target,
}

/// Runs the verb.
pub fn run(verb: Verb, args: &Args, state: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let client = super::daemon::required(state)?;
    let name = args.target.resolve(&client)?;
    let app_path = format!("/v1/apps/{}", encode(&name));
    let info: AppInfo = client
        .get(&app_path)
        .map_err(|e| super::ps::not_running(e, state))?;
    let mut services = args.services.clone();
    if services.is_empty() {
        services = info.services.iter().map(|s| s.name.clone()).collect();
        // Dependents first when stopping: the file order puts nothing in particular first,
        // so stop in reverse of the order the daemon started them.
        services.sort_by_key(|s| {
            info.services
                .iter()
                .find(|x| x.name == *s)
                .and_then(|x| x.started_at.clone())
        });
        if verb == Verb::Stop {
            services.reverse();
        }
    }
    let action = match verb {
        Verb::Stop => "stop",
        Verb::Start => "start",
        Verb::Restart => "restart",
    };
    for service in &services {
        let after: AppInfo = client
            .post(
                &format!("{app_path}/services/{}/{action}", encode(service)),
                &(),
            )
            .map_err(|e| anyhow!(e))?;
        let s = after
            .services
            .iter()
            .find(|s| s.name == *service)
            .ok_or_else(|| anyhow!("{name} has no service {service}"))?;
        let pid = s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        let done = match verb {
            Verb::Stop => "stopped".to_string(),
            Verb::Start => format!("started{pid}"),
            Verb::Restart => format!("restarted{pid}"),
        };
        writeln!(out, "{service} {done}")?;
    }
    Ok(())
}
