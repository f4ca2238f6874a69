//! The daemon's HTTP/JSON API: the routes and the types they carry, shared by the server
//! ([`crate::server`]) and its client ([`crate::client`]). Every body is JSON; `logs` answers
//! with one JSON [`LogLine`] per line (NDJSON), kept open with `follow=true`.
//!
//! | method | path                                   | body / query        | answer            |
//! |--------|----------------------------------------|---------------------|-------------------|
//! | GET    | /v1/daemon                             |                     | [`DaemonInfo`]    |
//! | POST   | /v1/daemon/shutdown                    |                     | [`DaemonInfo`]    |
//! | GET    | /v1/apps                               |                     | `[AppInfo]`       |
//! | POST   | /v1/apps                               | [`UpRequest`]       | [`AppInfo`]       |
//! | GET    | /v1/apps/{app}                         |                     | [`AppInfo`]       |
//! | DELETE | /v1/apps/{app}                         | `?volumes=true`     | [`DownInfo`]      |
//! | GET    | /v1/apps/{app}/stats                   |                     | `[ServiceStats]`  |
//! | GET    | /v1/apps/{app}/logs                    | [`LogsQuery`]       | NDJSON [`LogLine`]|
//! | GET    | /v1/apps/{app}/capture                 | `?service=&uses=&seconds=&frames=` | pcap stream |
//! | GET    | /v1/apps/{app}/services/{svc}          |                     | [`InspectInfo`]   |
//! | POST   | /v1/apps/{app}/services/{svc}/{action} | stop, start, restart| [`AppInfo`]       |
//!
//! Failures answer a 4xx/5xx status with an [`ErrorBody`].

use serde::{Deserialize, Serialize};
use sturdy_compose::{Plan, ServicePlan};

use crate::stats::ServiceStats;

/// The API's version prefix.
pub const PREFIX: &str = "/v1";

/// Start (or recreate) an application.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpRequest {
    /// The resolved plan (the CLI loads and checks the file, with absolute paths).
    pub plan: Plan,
}

/// A failure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// The daemon itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Its process id.
    pub pid: u32,
    /// sturdy's version.
    pub version: String,
    /// Its state directory.
    pub state_dir: String,
    /// The monitor it runs services with.
    pub hvt: String,
    /// Applications it runs.
    pub apps: usize,
    /// Its own resident memory, in bytes.
    pub rss_bytes: u64,
}

/// An application and its services (`sturdy ps`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppInfo {
    /// Its name.
    pub name: String,
    /// The file it was started from.
    pub file: String,
    /// `starting` (services still waiting for their turn), `running`, or `failed` (see
    /// `error`).
    pub status: String,
    /// Why it failed to start, if it did.
    pub error: Option<String>,
    /// When it was (last) started, UTC.
    pub created_at: String,
    /// Its published endpoints.
    pub published: Vec<PublishedInfo>,
    /// Its services, in file order.
    pub services: Vec<ServiceInfo>,
    /// Its services in the order they start (each after what it depends on).
    #[serde(default)]
    pub start_order: Vec<String>,
    /// In the answer to an `up`: the application was already up from the same plan, and
    /// nothing was done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub up_to_date: bool,
}

/// A host address where an endpoint is published.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishedInfo {
    /// `service.endpoint`.
    pub endpoint: String,
    /// The host address listened on.
    pub addr: String,
}

/// A service's state (`sturdy ps`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// created, starting, running, healthy, unhealthy, restarting, exited, crash-loop,
    /// stopped.
    pub state: String,
    /// Its address on the application's fabric.
    pub address: String,
    /// The running monitor's process id.
    pub pid: Option<u32>,
    /// Instances started so far.
    pub instance: u64,
    /// Times its restart policy restarted it.
    pub restarts: u32,
    /// The last instance's exit status (128 + signal if killed).
    pub last_exit: Option<i32>,
    /// How the last instance ended: `exited with status N`, or `killed: out of memory (limit
    /// N MiB)` when the kernel killed its monitor at its cgroup's memory limit.
    #[serde(default)]
    pub last_end: Option<String>,
    /// When its current instance started, UTC.
    pub started_at: Option<String>,
    /// How long its current instance has run, in milliseconds.
    pub uptime_ms: Option<u64>,
    /// When its current instance first passed its health check, UTC.
    pub healthy_since: Option<String>,
    /// While `created`: what it waits for.
    pub waiting_for: Option<String>,
    /// Why its last health probe failed, if it did.
    pub last_probe_error: Option<String>,
    /// Its published ports: `127.0.0.1:8080->80/tcp`.
    pub ports: Vec<String>,
    /// What it waits for before it starts (`depends_on`).
    #[serde(default)]
    pub depends_on: Vec<sturdy_compose::DependencyPlan>,
    /// While restarting or crash-looping: in how many milliseconds its next instance starts.
    #[serde(default)]
    pub next_start_in_ms: Option<u64>,
}

/// One service in detail (`sturdy inspect`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InspectInfo {
    /// The application.
    pub app: String,
    /// Its state.
    pub status: ServiceInfo,
    /// What it runs: image, memory, arguments, endpoints, capabilities, volumes, health
    /// check, restart policy, dependencies.
    pub plan: ServicePlan,
    /// The capabilities it holds, as `service.endpoint -> address:port/proto`.
    pub capabilities: Vec<String>,
    /// Who may connect to it: `consumer -> endpoint`.
    pub reachable_from: Vec<String>,
    /// Its resource use now.
    pub stats: ServiceStats,
}

/// What `down` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownInfo {
    /// The application.
    pub name: String,
    /// Whether it was running (else only volumes could be removed).
    pub was_running: bool,
    /// Volume files removed.
    pub volumes_removed: Vec<String>,
}

/// Query of `logs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogsQuery {
    /// Only these services' lines: names separated by commas.
    pub service: Option<String>,
    /// Only lines at or after this UTC time (`2026-11-27T04:45:22.123Z`).
    pub since: Option<String>,
    /// Only the last this many lines (per service) of what is kept.
    pub tail: Option<usize>,
    /// Keep the answer open and send new lines as they come.
    #[serde(default)]
    pub follow: bool,
}

/// One console line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The service.
    pub service: String,
    /// When the line was read, UTC.
    pub time: String,
    /// `stdout`, `stderr`, or `sturdy` for the supervisor's own notes.
    pub stream: String,
    /// The text.
    pub text: String,
}

impl LogLine {
    /// Splits a console line (`TIME STREAM TEXT`, see [`crate::console`]) of `service`.
    pub fn parse(service: &str, line: &str) -> LogLine {
        let mut parts = line.splitn(3, ' ');
        let time = parts.next().unwrap_or("").to_string();
        let stream = parts.next().unwrap_or("").to_string();
        let text = parts.next().unwrap_or("").to_string();
        LogLine {
            service: service.to_string(),
            time,
            stream,
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_split_at_the_first_two_spaces() {
        let l = LogLine::parse("web", "2026-11-27T04:45:22.123Z stdout GET / 200 ok");
        assert_eq!(l.time, "2026-11-27T04:45:22.123Z");
        assert_eq!(l.stream, "stdout");
        assert_eq!(l.text, "GET / 200 ok");
        assert_eq!(LogLine::parse("web", "x").text, "");
    }
}
