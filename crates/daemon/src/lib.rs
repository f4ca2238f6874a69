//! sturdy's supervisor, as a library (`docs/architecture.md`, Processes): runs an application (a
//! [`sturdy_compose::Plan`]) as one `sturdy-hvt` process per service on the application's
//! fabric, with its gateway publishing ports.
//!
//! - [`supervisor`]: [`App`]: volumes, fabric, gateway, start order gated by
//!   `depends_on: service_healthy`, the supervision thread, status, logs, stop.
//! - [`instance`]: one monitor process.
//! - [`restart`]: restart policies, exponential backoff, crash loops retried ever more
//!   slowly (pure).
//! - health probes (tcp and http) are the gateway's: `sturdy_fabric::GatewayHandle::probe_http`.
//! - [`console`]: the bounded per-service console that survives instances, and the one
//!   thread that reads every monitor's output into it.
//! - [`daemon_log`]: the daemon's own log, with the fabric's warnings, rate-limited.
//!
//! - [`stats`]: a service's CPU time, memory and fabric counters.
//! - [`capture`]: packet capture of a service or capability as a pcap stream.
//!
//! The daemon process (`sturdy daemon`) is built on these:
//!
//! - [`server`]: the daemon: applications by name, state in SQLite ([`store`]), the HTTP/JSON
//!   API of [`api`] on a unix socket, recovery after a crash.
//! - [`client`]: a blocking client of that API.
//!
//! No `unsafe` except in `os`'s system calls (what a monitor inherits, signalling a pid).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod capture;
pub mod client;
pub mod console;
pub mod daemon_log;
pub mod instance;
mod locks;
mod os;
pub mod restart;
pub mod sandbox;
pub mod server;
pub mod stats;
pub mod store;
pub mod supervisor;

pub use restart::{Backoff, Decision, Tracker};
pub use supervisor::{App, Event, Options, ServiceStatus, State};

/// Why an application did not start.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The plan cannot be run as given.
    #[error("{0}")]
    Config(String),
    /// A file, socket, thread or process could not be made.
    #[error("{0}")]
    Io(String),
    /// A `service_healthy` dependency did not become healthy.
    #[error("service {service} waits for {dependency} to be healthy: {why}")]
    Dependency {
        /// The waiting service.
        service: String,
        /// The dependency.
        dependency: String,
        /// What went wrong.
        why: String,
    },
    /// The application was stopped.
    #[error("the application is stopped")]
    Stopped,
}

/// Sets the host port of every published port of `plan` whose host port is `from` to `to`
/// (0: one the system picks; see [`App::published`]). For tests, which cannot count on a
/// fixed port being free. Returns how many were changed.
pub fn override_host_port(plan: &mut sturdy_compose::Plan, from: u16, to: u16) -> usize {
    let mut n = 0;
    for s in &mut plan.services {
        for p in &mut s.ports {
            if p.host_port == from {
                p.host_port = to;
                n += 1;
            }
        }
    }
    n
}
