//! The one place with `unsafe`: letting a monitor inherit its NIC's fd across exec.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Clears close-on-exec on `fd` in the child only, so the monitor (and nothing else the
/// supervisor spawns) inherits it.
pub fn inherit(cmd: &mut Command, fd: i32) {
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe, on a descriptor number the parent keeps open until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
