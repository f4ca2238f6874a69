//! `sturdy-hvt`: run a Solo5 hvt unikernel on KVM. A drop-in replacement for upstream
//! `solo5-hvt` (same command line and exit statuses, docs/hvt-abi.md, Monitor command line);
//! everything is in the `vmm` crate.

use std::process::ExitCode;

use vmm::cmdline::{self, Command, USAGE};
use vmm::{Exit, Vm, VmError};

fn main() -> ExitCode {
    vmm::sandbox::exit_on_signals();
    match run() {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("sturdy-hvt: {e}");
            if matches!(e, VmError::Cmdline(cmdline::CmdlineError::InvalidOption(_))) {
                eprintln!("{USAGE}");
            }
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<u8, VmError> {
    let config = match cmdline::parse(std::env::args().skip(1))? {
        Command::Help => {
            println!("{USAGE}");
            return Ok(0);
        }
        Command::Version => {
            println!(
                "sturdy-hvt {} (Solo5 hvt ABI version {})",
                env!("CARGO_PKG_VERSION"),
                vmm::ABI_VERSION
            );
            return Ok(0);
        }
        Command::Run(config) => config,
    };
    for w in &config.warnings {
        eprintln!("sturdy-hvt: warning: {w}");
    }
    let exit = Vm::build(&config)?.run()?;
    if let Exit::Fault(fault) = &exit {
        eprintln!("sturdy-hvt: {fault}");
    }
    Ok(exit.status())
}
