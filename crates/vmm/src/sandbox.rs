//! Dropping privileges before the guest runs (Solo5's tenders end start-up the same way, and
//! Firecracker's jailer is the model for the rest). In two steps, around the start of the NIC
//! I/O thread:
//!
//! 1. [`drop_privileges`], while the monitor is one thread: clear the ambient and bounding
//!    capability sets, become the unprivileged user and group the command line names
//!    (`--uid`/`--gid`, one per instance when the daemon starts it, so that a compromised
//!    monitor cannot signal its siblings), drop every capability, and keep the parent-death
//!    signal the parent asked for (a change of user clears it). KVM ioctls on the descriptors
//!    opened before keep working: KVM checks who opened /dev/kvm, not who uses the descriptor.
//! 2. [`enter`], once every thread is set up: no new privileges, and a seccomp allow-list of
//!    exactly the system calls the run makes, each call that names a descriptor pinned to the
//!    descriptors it may use ([`Descriptors`]), as Solo5 pins pwrite to the block file. Nothing
//!    can be opened any more.
//!
//! Also the SIGINT/SIGTERM handling of docs/hvt-abi.md, Monitor command line (exit status 1).

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Who the monitor becomes after opening its devices (`--uid`, `--gid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// The descriptors the run may use, by what it does with them. A call that names a descriptor
/// is allowed only on these; anything else it names kills the monitor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Descriptors {
    /// The vCPU: KVM_RUN and the register reads of fault reports.
    pub vcpu: RawFd,
    /// Block devices' files: pread64 and pwrite64.
    pub blocks: Vec<RawFd>,
    /// Block devices' files the guest may flush (sturdy's BLOCK_FLUSH): fdatasync.
    pub flushes: Vec<RawFd>,
    /// read and write: NICs (TAP devices and sockets) and eventfds; write also on stdout (the
    /// console) and stderr (the monitor's messages).
    pub streams: Vec<RawFd>,
    /// sendmmsg, recvmmsg and sendto: NIC sockets.
    pub sockets: Vec<RawFd>,
    /// epoll_wait, epoll_pwait and epoll_ctl: the NIC I/O thread's epoll set.
    pub epoll: Option<RawFd>,
}

/// `_IOC` encoding of the KVM vCPU ioctls the run loop may issue.
const fn kvm_ioctl(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
}
const IOC_READ: u64 = 2;
const KVM_RUN: u64 = kvm_ioctl(0, 0x80, 0);
const KVM_GET_REGS: u64 = kvm_ioctl(
    IOC_READ,
    0x81,
    std::mem::size_of::<kvm_bindings::kvm_regs>(),
);
const KVM_GET_SREGS: u64 = kvm_ioctl(
    IOC_READ,
    0x83,
    std::mem::size_of::<kvm_bindings::kvm_sregs>(),
);
const KVM_GET_VCPU_EVENTS: u64 = kvm_ioctl(
    IOC_READ,
    0x9f,
    std::mem::size_of::<kvm_bindings::kvm_vcpu_events>(),
);

/// Exits with status 1 on SIGINT and SIGTERM (docs/hvt-abi.md, Monitor command line), from any
/// point of the run.
pub fn exit_on_signals() {
    extern "C" fn on_signal(_sig: libc::c_int) {
        const MSG: &[u8] = b"sturdy-hvt: exiting on signal\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer.
        unsafe {
            libc::write(libc::STDERR_FILENO, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(1);
        }
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only calls async-signal-safe functions; the
        // sigaction struct is fully initialised (zeroed, then handler and mask set).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Step 1 (see the module doc), before the monitor starts any thread: capability sets are
/// per thread, and threads started later inherit what this one has.
///
/// Clears the ambient set, and the bounding set where the monitor may (it needs CAP_SETPCAP:
/// root may, an unprivileged user running it by hand may not, and its bounding set only limits
/// what an exec could gain, which the filter forbids); becomes `identity` with no supplementary
/// groups, if given; drops every capability; and sets the parent-death signal again if one was
/// set (a change of user clears it), failing if the parent is already gone.
pub fn drop_privileges(identity: Option<Identity>) -> Result<(), String> {
    let mut death_signal: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer, valid for the call.
    if unsafe {
        libc::prctl(
            libc::PR_GET_PDEATHSIG,
            &mut death_signal as *mut libc::c_int,
        )
    } != 0
    {
        return Err(format!("prctl(PR_GET_PDEATHSIG): {}", last_error()));
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };

    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "clearing the ambient capabilities: {}",
            last_error()
        ));
    }
    let bounding = clear_bounding_set();
    if let Some(id) = identity {
        bounding?;
        become_user(id)?;
    }
    drop_capabilities()?;
    if death_signal != 0 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) } != 0 {
            return Err(format!("prctl(PR_SET_PDEATHSIG): {}", last_error()));
        }
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return Err("the process that started the monitor exited".into());
        }
    }
    Ok(())
}

/// Step 2 (see the module doc), once every thread is set up: no new privileges and the
/// seccomp allow-list on every thread of the process (the vCPU thread and the NIC I/O thread).
/// After this the process can only run the vCPU, do I/O on the descriptors in `fds`, and exit.
pub fn enter(fds: &Descriptors) -> Result<(), String> {
    let program = filter(fds)?;
    seccompiler::apply_filter_all_threads(&program).map_err(err)
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Drops every capability from this thread's bounding set.
fn clear_bounding_set() -> Result<(), String> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) } != 0 {
            let e = last_error();
            if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                // Past the last capability this kernel knows.
                return Ok(());
            }
            return Err(format!(
                "clearing the capability bounding set (capability {cap}): {e}"
            ));
        }
    }
    Ok(())
}

/// Sets every user and group id of the process (all its threads: the C library applies each
/// change to every thread) to `id`, with no supplementary groups, and checks that it took.
fn become_user(id: Identity) -> Result<(), String> {
    let fail = |what: &str| {
        format!(
            "cannot become uid {} gid {}: {what}: {}",
            id.uid,
            id.gid,
            last_error()
        )
    };
    // SAFETY: setgroups with a count of 0 reads no memory.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(fail("setgroups"));
    }
    // SAFETY: setresgid and setresuid take integers only.
    if unsafe { libc::setresgid(id.gid, id.gid, id.gid) } != 0 {
        return Err(fail("setresgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(id.uid, id.uid, id.uid) } != 0 {
        return Err(fail("setresuid"));
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: getresuid writes three ids through pointers valid for the call.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    if [r, e, s] != [id.uid; 3] {
        return Err(format!(
            "the user ids are {r}/{e}/{s} after setresuid({})",
            id.uid
        ));
    }
    Ok(())
}

fn drop_capabilities() -> Result<(), String> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and two data structs (version 3), both valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> String {
    format!("seccomp: {e}")
}

/// `arg0 == fd`: the call names `fd`.
fn on_fd(fd: RawFd) -> Result<SeccompCondition, String> {
    SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        fd as u32 as u64,
    )
    .map_err(err)
}

/// One rule per descriptor: the call is allowed on any of `fds`. Empty when `fds` is: the
/// caller must then leave the call out (an empty rule list would allow it on anything).
fn on_any(fds: &[RawFd]) -> Result<Vec<SeccompRule>, String> {
    fds.iter()
        .map(|&fd| SeccompRule::new(vec![on_fd(fd)?]).map_err(err))
        .collect()
}

fn filter(fds: &Descriptors) -> Result<BpfProgram, String> {
    let plain = [
        libc::SYS_close,
        // A POLL hypercall's descriptors are in memory, where seccomp cannot look.
        libc::SYS_ppoll,
        libc::SYS_clock_gettime,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_brk,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_sched_yield,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = plain.iter().map(|&nr| (nr, vec![])).collect();
    let mut pinned = |nrs: &[i64], fds: &[RawFd]| -> Result<(), String> {
        let on = on_any(fds)?;
        if !on.is_empty() {
            for &nr in nrs {
                rules.insert(nr, on.clone());
            }
        }
        Ok(())
    };
    pinned(&[libc::SYS_read], &fds.streams)?;
    let mut writable = fds.streams.clone();
    writable.extend([libc::STDOUT_FILENO, libc::STDERR_FILENO]);
    pinned(&[libc::SYS_write], &writable)?;
    pinned(&[libc::SYS_pread64, libc::SYS_pwrite64], &fds.blocks)?;
    // BLOCK_FLUSH: fdatasync of a block device's file, and of nothing else.
    pinned(&[libc::SYS_fdatasync], &fds.flushes)?;
    // The NIC I/O thread: frames in batches on a fabric port's socket (sendmmsg/recvmmsg) and
    // its doorbells to the fabric (send(2) of one byte, on a port with shared rings).
    pinned(
        &[libc::SYS_sendmmsg, libc::SYS_recvmmsg, libc::SYS_sendto],
        &fds.sockets,
    )?;
    pinned(
        &[
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_ctl,
        ],
        fds.epoll.as_slice(),
    )?;

    let ioctl_rules = [KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_VCPU_EVENTS]
        .into_iter()
        .map(|req| {
            let request = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)
                .map_err(err)?;
            SeccompRule::new(vec![on_fd(fds.vcpu)?, request]).map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);

    // Dropping an OwnedFd checks it with fcntl(F_GETFD) in debug builds.
    let getfd = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::F_GETFD as u64,
    )
    .map_err(err)?;
    rules.insert(
        libc::SYS_fcntl,
        vec![SeccompRule::new(vec![getfd]).map_err(err)?],
    );

    // The allocator may map memory and change its protection (a new thread's malloc arena),
    // never to executable, and maps no file: mmap's descriptor must be -1.
    let no_exec = || {
        SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )
        .map_err(err)
    };
    let anonymous = SeccompCondition::new(
        4,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        u64::from(u32::MAX),
    )
    .map_err(err)?;
    rules.insert(
        libc::SYS_mmap,
        vec![SeccompRule::new(vec![no_exec()?, anonymous]).map_err(err)?],
    );
    rules.insert(
        libc::SYS_mprotect,
        vec![SeccompRule::new(vec![no_exec()?]).map_err(err)?],
    );

    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into().map_err(err)?,
    )
    .map_err(err)?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_abi() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_GET_VCPU_EVENTS, 0x8040_ae9f);
    }

    #[test]
    fn filter_compiles() {
        assert!(!filter(&Descriptors::default()).unwrap().is_empty());
    }

    /// Runs `body` in a child process under the filter for `fds`; its wait status.
    fn in_filtered_child(fds: &Descriptors, body: impl FnOnce()) -> libc::c_int {
        let program = filter(fds).unwrap();
        // SAFETY: the child only applies the prepared filter (prctl and seccomp system calls,
        // no allocation), runs `body` (plain system calls) and _exits; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", last_error());
            if pid == 0 {
                if seccompiler::apply_filter(&program).is_err() {
                    libc::_exit(3);
                }
                body();
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            status
        }
    }

    /// fdatasync is allowed on the flushable block devices' descriptors and on nothing else:
    /// another descriptor gets the process killed, and without such devices it is not allowed
    /// at all.
    #[test]
    fn fdatasync_is_pinned_to_the_block_devices() {
        let dir = std::env::temp_dir();
        let open = |name: &str| {
            let path = dir.join(format!("sturdy-sandbox-{}-{name}", std::process::id()));
            let file = std::fs::File::create(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            file
        };
        let (block, other) = (open("block"), open("other"));
        use std::os::fd::AsRawFd;
        let (b, o) = (block.as_raw_fd(), other.as_raw_fd());
        let sync = |fd: RawFd| {
            move || {
                // SAFETY: fdatasync takes a descriptor and touches no memory of ours.
                unsafe { libc::fdatasync(fd) };
            }
        };
        let flushable = Descriptors {
            blocks: vec![b],
            flushes: vec![b],
            ..Default::default()
        };
        let allowed = in_filtered_child(&flushable, sync(b));
        assert!(
            libc::WIFEXITED(allowed) && libc::WEXITSTATUS(allowed) == 0,
            "{allowed:#x}"
        );
        let refused = in_filtered_child(&flushable, sync(o));
        assert!(
            libc::WIFSIGNALED(refused) && libc::WTERMSIG(refused) == libc::SIGSYS,
            "{refused:#x}"
        );
        let unflushable = Descriptors {
            blocks: vec![b],
            ..Default::default()
        };
        let none = in_filtered_child(&unflushable, sync(b));
        assert!(
            libc::WIFSIGNALED(none) && libc::WTERMSIG(none) == libc::SIGSYS,
            "{none:#x}"
        );
    }

    #[test]
    fn calls_on_descriptors_are_pinned_to_those_given() {
        let pipe = || {
            let mut p = [0; 2];
            // SAFETY: pipe writes two descriptors into `p`.
            assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
            p
        };
        let (given, other) = (pipe(), pipe());
        let fds = Descriptors {
            streams: vec![given[0], given[1]],
            ..Default::default()
        };
        let write = |fd: RawFd| {
            move || {
                // SAFETY: write(2) of one byte from a static buffer.
                unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
            }
        };
        let status = in_filtered_child(&fds, write(given[1]));
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
        let status = in_filtered_child(&fds, write(other[1]));
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "a write to a descriptor not given was allowed: {status:#x}"
        );
        // pwrite with no block device: not allowed on anything.
        let status = in_filtered_child(&fds, || {
            // SAFETY: pwrite(2) of one byte from a static buffer.
            unsafe { libc::pwrite(given[1], b"x".as_ptr().cast(), 1, 0) };
        });
        assert!(libc::WIFSIGNALED(status), "{status:#x}");
        // A file mapping: refused, an anonymous one allowed.
        let map = |fd: RawFd| {
            move || {
                let flags = if fd < 0 {
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS
                } else {
                    libc::MAP_PRIVATE
                };
                // SAFETY: a fresh mapping the child never uses.
                unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, flags, fd, 0) };
            }
        };
        let status = in_filtered_child(&fds, map(-1));
        assert!(libc::WIFEXITED(status), "{status:#x}");
        let status = in_filtered_child(&fds, map(given[0]));
        assert!(libc::WIFSIGNALED(status), "{status:#x}");
        for fd in given.into_iter().chain(other) {
            // SAFETY: closing the pipes made above.
            unsafe { libc::close(fd) };
        }
    }
}
