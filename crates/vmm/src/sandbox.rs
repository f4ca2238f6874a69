//! Dropping privileges before the guest runs (Solo5's tenders end start-up the same way): no
//! capabilities, no new privileges, and a seccomp allow-list of exactly the system calls the run
//! loop makes. Also the SIGINT/SIGTERM handling of spec 6 (exit status 1).

use std::collections::BTreeMap;

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
/// the process can only run the vCPU, do I/O on descriptors it already holds, and exit.
pub fn enter() -> Result<(), String> {
    drop_capabilities()?;
    let program = filter()?;
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

fn filter() -> Result<BpfProgram, String> {
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
        assert!(!filter().unwrap().is_empty());
    }
}
