//! One instance of a service: a `sturdy-hvt` process on a fabric port, confined to its user id
//! and cgroup, its console read into the service's [`Console`] (by the process's one console
//! reader thread).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::console::reader::{self, Drained};
use crate::console::Console;
use crate::sandbox::Confined;

/// How an instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// Its exit status: the code, or 128 + signal number if killed.
    pub status: i32,
    /// The kernel killed it for memory: its cgroup's limit, in MiB.
    pub out_of_memory_mib: Option<u64>,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.out_of_memory_mib {
            Some(limit) => write!(f, "killed: out of memory (limit {limit} MiB)"),
            None => write!(f, "exited with status {}", self.status),
        }
    }
}

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
    /// Its user id and cgroup, until it is reaped.
    confined: Option<Confined>,
    /// The daemon's end of its control socket.
    _control: UnixStream,
    /// Tells when its stdout and stderr were read to their end.
    console: Arc<Drained>,
}

impl Instance {
    /// Starts `hvt` with `args`, where `{fd}` in an argument is replaced by the number of the
    /// inherited `fd` (the guest's end of its fabric port, closed here once the child has it;
    /// `None` for a unikernel without a NIC), as the user `confined` holds (`--uid`, `--gid`),
    /// in its cgroup, with a control socket (`--control`), and no other descriptor of the
    /// daemon's.
    pub fn spawn(
        hvt: &Path,
        args: &[String],
        fd: Option<OwnedFd>,
        confined: Confined,
        console: &Arc<Mutex<Console>>,
    ) -> std::io::Result<Instance> {
        let raw = fd.as_ref().map(|fd| fd.as_raw_fd());
        let (control, theirs) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                confined.release();
                return Err(e);
            }
        };
        let uid = confined.lease.uid;
        let mut cmd = Command::new(hvt);
        cmd.args([
            format!("--uid={uid}"),
            format!("--gid={uid}"),
            format!("--control=@{}", theirs.as_raw_fd()),
        ])
        .args(
            args.iter()
                .map(|a| a.replace("{fd}", &raw.unwrap_or(-1).to_string())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the supervisor's terminal is the supervisor's
        // to handle (it stops the app in order), not a signal to every monitor at once.
        .process_group(0);
        let keep: Vec<_> = raw.into_iter().chain([theirs.as_raw_fd()]).collect();
        crate::os::inherit(&mut cmd, &keep, confined.cgroup.procs_files());
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                confined.release();
                return Err(e);
            }
        };
        drop(fd);
        drop(theirs);
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
            confined: Some(confined),
            _control: control,
            console,
        })
    }

    /// How it ended, if it has: its status, and whether the kernel killed it for memory.
    pub fn try_exit(&mut self) -> Option<Ended> {
        let status = self.child.try_wait().ok()??;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        // The console is read to its end before the exit is reported.
        self.console.wait(DRAIN_TIMEOUT);
        Some(self.ended(code))
    }

    /// Kills it (SIGKILL), reaps it and returns how it ended (status 137 if the kill ended it).
    pub fn kill(mut self) -> Ended {
        let _ = self.child.kill();
        let status = self.child.wait();
        self.console.wait(DRAIN_TIMEOUT);
        let code = match status {
            Ok(status) => status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            Err(_) => 128 + libc::SIGKILL,
        };
        self.ended(code)
    }

    /// Once reaped: its cgroup read and removed, its user id freed.
    fn ended(&mut self, status: i32) -> Ended {
        let out_of_memory_mib = self.confined.take().and_then(Confined::release);
        Ended {
            status,
            out_of_memory_mib,
        }
    }
}
