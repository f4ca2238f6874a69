//! The command line: the tool, its verbs and their flags. One list drives parsing, `--help`
//! and shell completions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;

const EXAMPLES: &str = "\
Examples:
  sudo sturdy up examples/guestbook         run the guestbook attached; then: curl localhost:8080
  sudo sturdy up -d examples/guestbook      ... in the background
  sturdy ps                                 what runs, healthy or not
  sturdy logs -f web                        follow a service's console
  sturdy restart db                         a new instance of db, its volume kept
  sturdy capture web -w web.pcap            web's frames as pcap (Ctrl-C stops)
  sturdy down --volumes                     stop the application and delete its data
  sturdy run ./hello-world                  one unikernel, no file
  sturdy config examples/guestbook          the resolved plan of an application
  sturdy graph examples/guestbook | dot -Tpng > guestbook.png
  source <(sturdy completions bash)         completions in the current shell

An application is a sturdy.yaml file (or a directory holding one, '.' by default). A daemon
(`sturdy daemon`) runs the applications; the first verb that needs it starts it. Its state
(database, socket, volumes) lives in --state-dir, else $STURDY_HOME, else /var/lib/sturdy.";

/// Runs applications made of unikernels on KVM.
///
/// Each service of an application is a unikernel in its own KVM virtual machine, wired to the
/// others by a fabric that lets through only the connections its sturdy.yaml grants.
#[derive(Debug, Parser)]
#[command(name = "sturdy", version, after_help = EXAMPLES, arg_required_else_help = true)]
pub struct Cli {
    /// The daemon's state directory [default: $STURDY_HOME, else /var/lib/sturdy]
    #[arg(long, value_name = "DIR", global = true, value_hint = clap::ValueHint::DirPath)]
    pub state_dir: Option<PathBuf>,

    /// The application file for the verb that follows, as Compose takes it (`sturdy -f
    /// app.yaml ps`); each verb also takes it after itself
    #[arg(short = 'f', long = "file", value_name = "FILE", value_hint = clap::ValueHint::AnyPath)]
    pub file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Starts an application, then follows its logs until Ctrl-C (or returns, with -d)
    ///
    /// Hands the application to the daemon, which starts its services in dependency order
    /// (waiting for `service_healthy` dependencies); shows each as it starts and becomes
    /// healthy and where ports are published. Attached, it then prints every service's console
    /// prefixed with its name, and Ctrl-C (SIGINT) or SIGTERM stops the application.
    #[command(after_help = cmd::up::EXAMPLES)]
    Up(cmd::up::Args),

    /// Stops an application and forgets it (--volumes: and deletes its data)
    #[command(after_help = cmd::down::EXAMPLES)]
    Down(cmd::down::Args),

    /// Lists the services of the applications that are up
    #[command(after_help = cmd::ps::EXAMPLES)]
    Ps(cmd::ps::Args),

    /// Prints (or follows) the consoles of an application's services
    #[command(after_help = cmd::logs::EXAMPLES)]
    Logs(cmd::logs::Args),

    /// Restarts services (all if none is named)
    #[command(after_help = cmd::lifecycle::EXAMPLES)]
    Restart(cmd::lifecycle::Args),

    /// Stops services (all if none is named); they stay stopped until started
    #[command(after_help = cmd::lifecycle::EXAMPLES)]
    Stop(cmd::lifecycle::Args),

    /// Starts stopped services (all if none is named)
    #[command(after_help = cmd::lifecycle::EXAMPLES)]
    Start(cmd::lifecycle::Args),

    /// Shows each service's CPU, memory, and network traffic and drops
    #[command(after_help = cmd::stats::EXAMPLES)]
    Stats(cmd::stats::Args),

    /// Shows one service in detail
    #[command(after_help = cmd::inspect::EXAMPLES)]
    Inspect(cmd::inspect::Args),

    /// Captures a service's (or a capability's) frames as pcap, for tshark or Wireshark
    #[command(after_help = cmd::capture::EXAMPLES)]
    Capture(cmd::capture::Args),

    /// Runs one unikernel, no file needed; exits with its status
    #[command(after_help = cmd::run::EXAMPLES)]
    Run(cmd::run::Args),

    /// Checks an application file and prints its resolved plan
    ///
    /// Validates the sturdy.yaml and prints the plan the supervisor would run: each service's
    /// address, memory, guest arguments, published ports and volumes, the capability graph,
    /// egress and the start order. An invalid file prints one line per problem
    /// (FILE:LINE:COLUMN: KEY: MESSAGE) and exits with status 1.
    #[command(after_help = cmd::config::EXAMPLES)]
    Config(cmd::config::Args),

    /// Draws an application's capability graph (Graphviz DOT or SVG)
    ///
    /// One node per service (its name, address and the endpoints it provides), an edge per
    /// capability labelled with the endpoint, edges from `host` for published ports and to
    /// `outside` for egress. Nothing else can connect to anything.
    #[command(after_help = cmd::graph::EXAMPLES)]
    Graph(cmd::graph::Args),

    /// Runs, stops or shows the daemon that runs the applications
    #[command(after_help = cmd::daemon::EXAMPLES)]
    Daemon(cmd::daemon::Args),

    /// Prints a shell completion script
    #[command(after_help = cmd::completions::EXAMPLES)]
    Completions(cmd::completions::Args),
}

impl Command {
    /// Gives the verb the application file named before it (`sturdy -f FILE VERB`).
    pub fn default_file(&mut self, file: &std::path::Path) -> Result<(), String> {
        use Command as C;
        match self {
            C::Up(a) => a.app.default_to(file),
            C::Config(a) => a.app.default_to(file),
            C::Graph(a) => a.app.default_to(file),
            C::Down(a) => a.target.default_to(file),
            C::Ps(a) if a.name.is_none() && a.file.is_none() => {
                a.file = Some(file.to_path_buf());
                Ok(())
            }
            C::Stats(a) if a.name.is_none() && a.file.is_none() => {
                a.file = Some(file.to_path_buf());
                Ok(())
            }
            C::Ps(_) | C::Stats(_) => Err(format!(
                "-f {}: the verb is given an application already",
                file.display()
            )),
            C::Logs(a) => a.target.default_to(file),
            C::Restart(a) | C::Stop(a) | C::Start(a) => a.target.default_to(file),
            C::Inspect(a) => a.target.default_to(file),
            C::Capture(a) => a.target.default_to(file),
            C::Run(_) | C::Daemon(_) | C::Completions(_) => Err(format!(
                "-f {}: this verb takes no application file",
                file.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
