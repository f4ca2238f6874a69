//! The command line: the tool, its verbs and their flags. One list drives parsing, `--help`
//! and shell completions. Only verbs that work are here; `up` runs attached (in this process)
//! until the daemon and its verbs (`up -d`, `ps`, ...) arrive.

use clap::{Parser, Subcommand};

use crate::cmd;

const EXAMPLES: &str = "\
Examples:
  sudo sturdy up examples/guestbook         run the guestbook; then: curl localhost:8080
  sturdy config examples/guestbook          the resolved plan of an application, as YAML
  sturdy config --json | jq .services       the same as JSON
  sturdy graph examples/guestbook | dot -Tpng > guestbook.png
  sturdy graph --format svg -o app.svg      the capability graph as SVG (needs Graphviz)
  source <(sturdy completions bash)         completions in the current shell

An application is a sturdy.yaml file (or a directory holding one, '.' by default).";

/// Runs applications made of unikernels on KVM.
///
/// Each service of an application is a unikernel in its own KVM virtual machine, wired to the
/// others by a fabric that lets through only the connections its sturdy.yaml grants.
#[derive(Debug, Parser)]
#[command(name = "sturdy", version, after_help = EXAMPLES, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Starts an application and follows its logs until Ctrl-C
    ///
    /// Starts the services in dependency order (waiting for `service_healthy` dependencies),
    /// showing each as it starts and becomes healthy and where ports are published, then
    /// prints every service's console prefixed with its name. Ctrl-C (SIGINT) or SIGTERM stops
    /// every service and exits with status 0.
    #[command(after_help = cmd::up::EXAMPLES)]
    Up(cmd::up::Args),

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

    /// Prints a shell completion script
    #[command(after_help = cmd::completions::EXAMPLES)]
    Completions(cmd::completions::Args),
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
