//! The one place with `unsafe`: what a monitor inherits across exec (its descriptors and
//! cgroups, nothing else), signalling a process by pid, asking who this process is, and giving
//! freed heap back.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// What the monitor gets from its parent, set up in the child only, before exec:
///
/// - it joins the cgroups whose `cgroup.procs` files are `join` (so it never runs outside
///   them: no window in which its guest runs unlimited);
/// - it keeps descriptors 0-2 and `keep` (its NIC's socket and control socket), and nothing
///   else the daemon holds: every other descriptor is made close-on-exec (close_range, or one
///   by one on kernels before 5.11), so the exec closes it;
/// - its life is tied to the spawning thread's: if the supervisor dies (even by SIGKILL), the
///   kernel kills its monitors (PR_SET_PDEATHSIG), so none is ever orphaned. The signal follows
///   the *thread* that spawned: spawn from threads that live as long as the application (the
///   caller of `App::start`, the supervision thread).
pub fn inherit(cmd: &mut Command, keep: &[RawFd], join: Vec<CString>) {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    keep.dedup();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (open, write, close, close_range, fcntl, getrlimit, prctl, getpid, getppid), which are
    // async-signal-safe, on paths prepared before the fork and descriptor numbers the parent
    // keeps open until after the spawn; it allocates nothing.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            for path in &join {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
            let mut from = 3;
            for &fd in keep.iter().filter(|&&fd| fd >= 3) {
                if fd > from {
                    cloexec_range(from, fd - 1)?;
                }
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                from = fd + 1;
            }
            cloexec_range(from, RawFd::MAX)?;
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

/// Makes descriptors `first..=last` close-on-exec. Async-signal-safe: for `inherit`'s child.
///
/// # Safety
/// Only changes descriptor flags; call it where no other thread of this process may rely on
/// those descriptors being inherited (a forked child before exec).
unsafe fn cloexec_range(first: RawFd, last: RawFd) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on a range of descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Before Linux 5.11: one by one, up to the highest descriptor this process may have.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct into `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = RawFd::try_from(limit.rlim_cur)
        .unwrap_or(RawFd::MAX)
        .min(last.saturating_add(1));
    for fd in first..end {
        // SAFETY: F_SETFD on any number only sets that descriptor's flags (EBADF if none).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
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

/// Bytes the allocator holds free (freed by the program, kept for reuse) in all its arenas:
/// glibc's `mallinfo2().fordblks`. Always 0 but on glibc.
pub fn free_heap_bytes() -> usize {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 takes nothing and returns a struct by value; it reads malloc's
        // own state under its locks.
        unsafe { libc::mallinfo2() }.fordblks
    }
    #[cfg(not(target_env = "gnu"))]
    0
}

/// Gives the pages of the heap's free blocks back to the system (glibc's `malloc_trim(0)`, which
/// walks every arena). Each thread that allocates gets an arena of its own (up to 64 MiB), and
/// glibc itself gives back only the free memory at an arena's top: what a burst of work freed
/// below a block still in use stays resident. A no-op but on glibc.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes an integer and works on malloc's own state under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    fn rss_anon_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn trimming_gives_back_the_pages_of_blocks_freed_below_live_ones() {
        // 128 blocks of 64 KiB (under malloc's mmap threshold: from an arena), every other one
        // freed: each freed block lies between two live ones, so glibc's free can neither
        // merge it into the arena's top nor give it back, and 4 MiB of free heap stay resident.
        let mut blocks: Vec<Option<Vec<u8>>> =
            (0..128u8).map(|i| Some(vec![i | 1; 64 * 1024])).collect();
        for block in blocks.iter_mut().step_by(2) {
            *block = None;
        }
        assert!(
            super::free_heap_bytes() >= 4 << 20,
            "{} bytes free",
            super::free_heap_bytes()
        );
        let before = rss_anon_kib();
        super::trim_heap();
        let after = rss_anon_kib();
        assert!(
            before >= after + 2048,
            "RssAnon {before} KiB before the trim, {after} KiB after"
        );
        drop(blocks);
    }
}
