//! One instance of a service: a `sturdy-hvt` process on a fabric port, its console read into
//! the service's [`Console`] (by the process's one console reader thread).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::console::reader::{self, Drained};
use crate::console::Console;

/// How long an exit waits for the monitor's last console lines: they are read as soon as it
/// exits, unless the console reader is stuck (on a disk that does not answer, say).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or exited, not yet reaped) monitor process.
#[derive(Debug)]
pub struct Instance {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
    /// Tells when its stdout and stderr were read to their end.
    console: Arc<Drained>,
}

impl Instance {
    /// Starts `hvt` with `args`, where `{fd}` in an argument is replaced by the number of the
    /// inherited `fd` (the guest's end of its fabric port, closed here once the child has it;
    /// `None` for a unikernel without a NIC).
    pub fn spawn(
        hvt: &Path,
        args: &[String],
        fd: Option<OwnedFd>,
        console: &Arc<Mutex<Console>>,
    ) -> std::io::Result<Instance> {
        let raw = fd.as_ref().map(|fd| fd.as_raw_fd());
        let mut cmd = Command::new(hvt);
        cmd.args(
            args.iter()
                .map(|a| a.replace("{fd}", &raw.unwrap_or(-1).to_string())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the supervisor's terminal is the supervisor's
        // to handle (it stops the app in order), not a signal to every monitor at once.
        .process_group(0);
        crate::os::inherit(&mut cmd, raw);
        let mut child = cmd.spawn()?;
        drop(fd);
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both piped above");
        };
        let console = match reader::read(stdout.into(), stderr.into(), console) {
            Ok(drained) => drained,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Instance {
            child,
            pid,
            started: Instant::now(),
            console,
        })
    }

    /// Its exit status if it has exited: the code, or 128 + signal number if killed.
    pub fn try_exit(&mut self) -> Option<i32> {
        let status = self.child.try_wait().ok()??;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        // The console is read to its end before the exit is reported.
        self.console.wait(DRAIN_TIMEOUT);
        Some(code)
    }

    /// Kills it (SIGKILL), reaps it and returns its exit status (137 if the kill ended it).
    pub fn kill(mut self) -> i32 {
        let _ = self.child.kill();
        let status = self.child.wait();
        self.console.wait(DRAIN_TIMEOUT);
        match status {
            Ok(status) => status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            Err(_) => 128 + libc::SIGKILL,
        }
    }
}
