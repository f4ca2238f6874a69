//! The one place with `unsafe`: letting a monitor inherit its NIC's fd across exec.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Clears close-on-exec on `fd` in the child only, so the monitor (and nothing else the
/// supervisor spawns) inherits it; and ties the monitor's life to the spawning thread's: if the
/// supervisor dies (even by SIGKILL), the kernel kills its monitors (PR_SET_PDEATHSIG), so
/// none is ever orphaned. The signal follows the *thread* that spawned: spawn from threads that
/// live as long as the application (the caller of `App::start`, the supervision thread).
pub fn inherit(cmd: &mut Command, fd: i32) {
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, prctl and
    // getppid, which are async-signal-safe, on a descriptor number the parent keeps open until
    // after the spawn.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
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
