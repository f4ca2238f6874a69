//! The one place with `unsafe`: letting a monitor inherit its NIC's fd across exec,
//! signalling a process by pid, asking who this process is, and giving freed heap back.
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
