//! The one place with `unsafe`: letting a monitor inherit its NIC's fd across exec,
//! signalling a process by pid, and asking who this process is.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Clears close-on-exec on `fd` (if any) in the child only, so the monitor (and nothing else the
/// supervisor spawns) inherits it; and ties the monitor's life to the spawning thread's: if the
/// supervisor dies (even by SIGKILL), the kernel kills its monitors (PR_SET_PDEATHSIG), so
/// none is ever orphaned. The signal follows the *thread* that spawned: spawn from threads that
/// live as long as the application (the caller of `App::start`, the supervision thread).
pub fn inherit(cmd: &mut Command, fd: Option<i32>) {
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, prctl and
    // getppid, which are async-signal-safe, on a descriptor number the parent keeps open until
    // after the spawn.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            if let Some(fd) = fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the supervisor exited"));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid` (never to a group: pid 0 and values that are not a single
/// process are refused).
pub fn signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours; `pid` is positive, so
    // it names one process, never a group.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The user this process acts as (its effective uid).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
