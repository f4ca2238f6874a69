//! What the guest's `main` receives: its command line, the monitor's boot information, and
//! the capabilities the plan gave it.

use alloc::string::String;
use alloc::vec::Vec;

use sturdy_abi::BootInfo;

use crate::caps::{self, CapError, TcpCap, UdpCap};
use crate::global::Global;
use crate::tcpip::{TcpListener, UdpEndpoint};

/// The capabilities taken from the environment so far, by their full names. A static rather
/// than a field of [`Env`]: `Env` is built on the boot path, which a guest at CPL 0 runs
/// without SSE, and a `Vec` in it made the compiler move it with SSE instructions.
static TAKEN: Global<Vec<String>> = Global::new(Vec::new());

/// The guest's environment, passed to the function named in [`main!`](crate::main).
///
/// It is the only source of the guest's capabilities: `main` takes each once
/// ([`tcp`](Env::tcp), [`udp`](Env::udp), [`listen`](Env::listen), [`bind`](Env::bind)) and
/// hands it to the code that needs it. Code that was not given a capability cannot get one:
/// there is no global lookup, and a capability taken once cannot be taken again.
#[derive(Debug)]
pub struct Env {
    pub(crate) boot_info: &'static BootInfo,
    pub(crate) raw_cmdline: &'static str,
    pub(crate) cmdline: &'static str,
}

impl Env {
    /// The capability `name` to a TCP endpoint (`db.kv`, or `db` if db has one TCP
    /// endpoint): all one can do with it is [`connect`](TcpCap::connect), any number of times
    /// (share it by reference, or in an `Rc`, with the tasks that connect). Taken once: a
    /// second request for it is [`CapError::Taken`].
    pub fn tcp(&self, name: &str) -> Result<TcpCap, CapError> {
        let cap = caps::tcp(name)?;
        self.take(cap.name())?;
        Ok(cap)
    }

    /// The capability `name` to a UDP endpoint; taken once, as [`tcp`](Env::tcp).
    pub fn udp(&self, name: &str) -> Result<UdpCap, CapError> {
        let cap = caps::udp(name)?;
        self.take(cap.name())?;
        Ok(cap)
    }

    /// Listens on the provided TCP endpoint `name`, on every NIC (once).
    pub fn listen(&self, name: &str) -> Result<TcpListener, CapError> {
        caps::listen(name)
    }

    /// Serves the provided UDP endpoint `name`, on every NIC (once).
    pub fn bind(&self, name: &str) -> Result<UdpEndpoint, CapError> {
        caps::bind(name)
    }

    fn take(&self, name: &str) -> Result<(), CapError> {
        TAKEN.with(|taken| {
            if taken.iter().any(|t| t == name) {
                return Err(CapError::Taken(name.into()));
            }
            taken.push(name.into());
            Ok(())
        })
    }

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
