//! Dropping privileges before the guest runs (Solo5's tenders end start-up the same way): no
//! capabilities, no new privileges, and a seccomp allow-list of exactly the system calls the run
//! loop makes. Also the SIGINT/SIGTERM handling of spec 6 (exit status 1).

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

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

/// Exits with status 1 on SIGINT and SIGTERM (spec 6), from any point of the run.
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

/// Drops every capability, sets no-new-privs and installs the seccomp allow-list on every
/// thread of the process (the vCPU thread and the NIC I/O thread). After this
/// the process can only run the vCPU, do I/O on descriptors it already holds, flush the
/// descriptors `flush_fds` (the block devices' files, for sturdy's BLOCK_FLUSH) and exit.
pub fn enter(flush_fds: &[RawFd]) -> Result<(), String> {
    drop_capabilities()?;
    let program = filter(flush_fds)?;
    seccompiler::apply_filter_all_threads(&program).map_err(err)
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

fn filter(flush_fds: &[RawFd]) -> Result<BpfProgram, String> {
    let plain = [
        libc::SYS_read,
        libc::SYS_close,
        libc::SYS_write,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
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
        // The NIC I/O thread (sendmmsg/recvmmsg: frames in batches on a fabric port's socket).
        libc::SYS_sendmmsg,
        libc::SYS_recvmmsg,
        // Its doorbells to the fabric (send(2) of one byte, on a port with shared rings).
        libc::SYS_sendto,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_ctl,
    ];
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = plain.iter().map(|&nr| (nr, vec![])).collect();

    let ioctl_rules = [KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_VCPU_EVENTS]
        .into_iter()
        .map(|req| {
            SeccompRule::new(vec![SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                req,
            )
            .map_err(err)?])
            .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);

    // BLOCK_FLUSH: fdatasync of a block device's file, and of nothing else.
    if !flush_fds.is_empty() {
        let fd_rules = flush_fds
            .iter()
            .map(|&fd| {
                let fd = u64::try_from(fd).map_err(err)?;
                let this_fd =
                    SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, fd)
                        .map_err(err)?;
                SeccompRule::new(vec![this_fd]).map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_fdatasync, fd_rules);
    }

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
    // never to executable.
    for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
        let no_exec = SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
            0,
        )
        .map_err(err)?;
        rules.insert(nr, vec![SeccompRule::new(vec![no_exec]).map_err(err)?]);
    }

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
        assert!(!filter(&[]).unwrap().is_empty());
        assert!(!filter(&[3, 9]).unwrap().is_empty());
    }

    /// Runs `f` in a child process under the filter allowing fdatasync on `flush_fds`; its
    /// wait status.
    fn in_child_under_filter(flush_fds: &[RawFd], f: impl FnOnce() -> i32) -> i32 {
        let program = filter(flush_fds).unwrap();
        // SAFETY: fork in a test; the child only applies a prebuilt filter (prctl/seccomp),
        // makes raw system calls and leaves with _exit, touching no lock another thread holds.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = match seccompiler::apply_filter(&program) {
                Ok(()) => f(),
                Err(_) => 100,
            };
            // SAFETY: ends the child without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we forked; `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        status
    }

    /// fdatasync is allowed on the block devices' descriptors and on nothing else: another
    /// descriptor gets the process killed, and without block devices it is not allowed at all.
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
        // fdatasync(2) of a descriptor this process holds.
        let sync = |fd: RawFd| {
            // SAFETY: fdatasync takes a descriptor and touches no memory of ours.
            move || unsafe { libc::fdatasync(fd) }
        };
        let allowed = in_child_under_filter(&[b], sync(b));
        assert!(
            libc::WIFEXITED(allowed) && libc::WEXITSTATUS(allowed) == 0,
            "{allowed:#x}"
        );
        let refused = in_child_under_filter(&[b], sync(o));
        assert!(
            libc::WIFSIGNALED(refused) && libc::WTERMSIG(refused) == libc::SIGSYS,
            "{refused:#x}"
        );
        let none = in_child_under_filter(&[], sync(b));
        assert!(
            libc::WIFSIGNALED(none) && libc::WTERMSIG(none) == libc::SIGSYS,
            "{none:#x}"
        );
    }
}
