//! `sturdy stop`, `start` and `restart`: one, several or all services of an application,
//! its fabric, addresses and published ports staying in place.

use std::io::Write;
use std::path::Path;

use std::time::{Duration, Instant};

use anyhow::anyhow;
use sturdy_compose::{Condition, DependencyPlan};
use sturdy_daemon::api::AppInfo;
use sturdy_daemon::client::{encode, Client};

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
    // All of them: in the plan's start order (depends_on), each started once what it depends
    // on is started or healthy as the file says; stopped in the reverse order.
    let all = args.services.is_empty();
    let mut services = args.services.clone();
    if all {
        services = info.start_order.clone();
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
        if all && verb != Verb::Stop {
            let deps = info
                .services
                .iter()
                .find(|s| s.name == *service)
                .map(|s| s.depends_on.as_slice())
                .unwrap_or_default();
            wait_for_dependencies(&client, &app_path, service, deps)?;
        }
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

/// How long `start` and `restart` of all services wait for a dependency.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(120);

/// Waits until each of `service`'s dependencies is started or healthy, as its condition
/// asks; one stopped on request does not hold it (as when the daemon starts the application).
fn wait_for_dependencies(
    client: &Client,
    app_path: &str,
    service: &str,
    deps: &[DependencyPlan],
) -> Result<(), CliError> {
    if deps.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + DEPENDENCY_WAIT;
    loop {
        let info: AppInfo = client.get(app_path).map_err(|e| anyhow!(e))?;
        let mut waiting = None;
        for d in deps {
            let Some(dep) = info.services.iter().find(|s| s.name == d.service) else {
                continue;
            };
            let ready = match (d.condition, dep.state.as_str()) {
                (_, "stopped") => true,
                (Condition::ServiceHealthy, state) => state == "healthy",
                (Condition::ServiceStarted, state) => {
                    dep.pid.is_some() && !matches!(state, "created" | "exited" | "crash-loop")
                }
            };
            if !ready {
                let want = match d.condition {
                    Condition::ServiceHealthy => "healthy",
                    Condition::ServiceStarted => "started",
                };
                let probe = dep
                    .last_probe_error
                    .as_deref()
                    .map(|e| format!("; last probe: {e}"))
                    .unwrap_or_default();
                waiting = Some(format!(
                    "{service} waits for {} to be {want} (it is {}{probe})",
                    d.service, dep.state
                ));
                break;
            }
        }
        let Some(waiting) = waiting else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(anyhow!("{waiting}: gave up after {DEPENDENCY_WAIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
