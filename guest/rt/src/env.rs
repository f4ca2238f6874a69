//! What the guest's `main` receives: its command line and the monitor's boot information.

use sturdy_abi::BootInfo;

/// The guest's environment, passed to the function named in [`main!`](crate::main).
#[derive(Debug)]
pub struct Env {
    pub(crate) boot_info: &'static BootInfo,
    pub(crate) raw_cmdline: &'static str,
    pub(crate) cmdline: &'static str,
}

impl Env {
    /// The arguments given after the kernel on the monitor's command line, without the leading
    /// `--solo5:` options and the `--sturdy.` boot configuration sturdy-rt consumed. The monitor joins them with single spaces and
    /// does no quoting (docs/hvt-abi.md, Boot information), so an argument never contains a space.
    pub fn args(&self) -> impl Iterator<Item = &'static str> {
        // The boot configuration (`--sturdy.*`, docs/bootcfg.md) is the SDK's, not the app's.
        self.cmdline
            .split_ascii_whitespace()
            .filter(|a| !a.starts_with("--sturdy."))
    }

    /// The value of the first argument `--NAME=VALUE`: `env.option("ipv4")` for `--ipv4=10.0.0.2`.
    pub fn option(&self, name: &str) -> Option<&'static str> {
        self.args()
            .filter_map(|arg| {
                arg.strip_prefix("--")?
                    .strip_prefix(name)?
                    .strip_prefix('=')
            })
            .next()
    }

    /// The arguments as one string (what [`args`](Env::args) splits).
    pub fn cmdline(&self) -> &'static str {
        self.cmdline
    }

    /// The whole command line as the monitor passed it, `--solo5:` options included.
    pub fn raw_cmdline(&self) -> &'static str {
        self.raw_cmdline
    }

    /// The monitor's boot information (docs/hvt-abi.md, Boot information): memory size, end of the
    /// loaded image, TSC frequency and where the command line and manifest are.
    pub fn boot_info(&self) -> &'static BootInfo {
        self.boot_info
    }
}
