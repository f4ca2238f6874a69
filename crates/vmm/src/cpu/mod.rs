//! Guest CPU state and the memory structures the CPU needs: page tables, GDT, and in deprivileged
//! mode the monitor-owned IDT, TSS and fault stubs.
//!
//! Two modes (`docs/sturdy-note.md`):
//! - [`Mode::Upstream`]: exactly the layout of `docs/hvt-abi.md`, Memory and CPU; the guest runs
//!   at CPL 0 and owns everything, as under upstream solo5-hvt.
//! - [`Mode::Deprivileged`]: for guests carrying sturdy's note. The guest runs at CPL 3; page
//!   tables, GDT, IDT, TSS and fault stubs live in supervisor-only or unmapped pages, text is
//!   read-only, data is non-executable (NX), page zero is unmapped. CPU exceptions enter small
//!   CPL-0 stubs that report the trap frame to the monitor on [`FAULT_PORT`].

mod paging;
mod tables;

use kvm_bindings::{kvm_segment, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use crate::loader::Segment;
use crate::memory::GuestMemory;

pub use tables::{FaultFrame, FAULT_PORT, FAULT_STACK};

/// How the guest is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// CPL 0, upstream layout (docs/hvt-abi.md, Memory and CPU).
    Upstream,
    /// CPL 3 under monitor-owned tables (sturdy note, FLAG_DEPRIVILEGED).
    Deprivileged,
}

/// Size of the monitor-reserved tail of guest memory in deprivileged mode. It holds the extra
/// page tables a kernel larger than 1 MiB needs for 4 KiB-granular protection; the guest sees
/// `boot_info.mem_size` end below it.
pub const RESERVED_TAIL: u64 = 2 << 20;

/// End of the low area holding monitor structures (docs/hvt-abi.md, Memory and CPU: the GDT at
/// 0x1000 to 0xffff).
pub const LOW_MONITOR_END: u64 = 0x1_0000;

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("KVM refused the vCPU setup ({what}): {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("guest memory too small: a deprivileged guest needs its kernel, a stack and 2 MiB for the monitor's tables; use a larger --mem")]
    TooSmall,
    #[error("guest memory too small for its NIC rings: they take {rings_mib} MiB (slots for frames of up to {max_frame} bytes, the largest NIC's MTU + 14) beside the kernel, a stack and the monitor's tables; use --mem={need_mib} or more (or a TAP with a smaller MTU)")]
    TooSmallForRings {
        rings_mib: u64,
        max_frame: u32,
        need_mib: u64,
    },
    #[error("writing the guest's CPU tables failed: {0}")]
    Memory(#[from] crate::memory::GuestAccessError),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Kvm { what, source }
}

/// The least `usable_end` a deprivileged guest needs: its kernel, rounded up to a 2 MiB page,
/// and one more 2 MiB page for heap and stack.
pub fn min_usable_end(kernel_end: u64) -> u64 {
    kernel_end.div_ceil(2 << 20) * (2 << 20) + (2 << 20)
}

/// Where things ended up, for boot info and the hypercall access map.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Memory the guest may use: `boot_info.mem_size`, the top of its stack.
    pub usable_end: u64,
}

/// Writes page tables (and in deprivileged mode GDT, IDT, TSS, fault stubs) into guest memory,
/// records in `mem` what hypercalls may not touch, and returns the layout.
pub fn setup_memory(
    mem: &mut GuestMemory,
    mode: Mode,
    segments: &[Segment],
    kernel_end: u64,
) -> Result<Layout, CpuError> {
    let mem_size = mem.size();
    match mode {
        Mode::Upstream => {
            paging::write_upstream(mem)?;
            tables::write_upstream_gdt(mem)?;
            Ok(Layout {
                usable_end: mem_size,
            })
        }
        Mode::Deprivileged => {
            if mem_size < min_usable_end(kernel_end) + RESERVED_TAIL {
                return Err(CpuError::TooSmall);
            }
            let usable_end = mem_size - RESERVED_TAIL;
            paging::write_deprivileged(mem, segments, kernel_end, usable_end)?;
            tables::write_deprivileged_tables(mem)?;
            mem.forbid(0..LOW_MONITOR_END);
            mem.forbid(usable_end..mem_size);
            mem.deny_writes(LOW_MONITOR_END..sturdy_abi::KERNEL_BASE);
            Ok(Layout { usable_end })
        }
    }
}

/// Sets the vCPU's CPUID, special and general registers for entry at `entry` (docs/hvt-abi.md,
/// Memory and CPU).
pub fn setup_vcpu(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    mode: Mode,
    entry: u64,
    layout: &Layout,
) -> Result<(), CpuError> {
    let cpuid: CpuId = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;

    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.cr0 = 0x8001_0021; // PE | NE | WP | PG
    sregs.cr3 = paging::PML4;
    sregs.cr4 = 0x620; // PAE | OSFXSR | OSXMMEXCPT
    sregs.efer = 0x500; // LME | LMA
    sregs.ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    match mode {
        Mode::Upstream => {
            let code = segment(tables::SEL_KERNEL_CODE, 0, 9, true);
            let data = segment(tables::SEL_KERNEL_DATA, 0, 3, false);
            sregs.cs = code;
            (sregs.ss, sregs.ds, sregs.es, sregs.fs, sregs.gs) = (data, data, data, data, data);
            sregs.tr = kvm_segment {
                limit: 0xffff,
                type_: 11,
                present: 1,
                ..Default::default()
            };
            sregs.gdt.base = tables::GDT;
            sregs.gdt.limit = 23;
            sregs.idt.base = 0;
            sregs.idt.limit = 0;
        }
        Mode::Deprivileged => {
            sregs.efer |= 0x800; // NXE: data is mapped non-executable
            let code = segment(tables::SEL_USER_CODE, 3, 11, true);
            let data = segment(tables::SEL_USER_DATA, 3, 3, false);
            sregs.cs = code;
            (sregs.ss, sregs.ds, sregs.es, sregs.fs, sregs.gs) = (data, data, data, data, data);
            sregs.tr = kvm_segment {
                base: tables::TSS,
                limit: tables::TSS_LIMIT,
                selector: tables::SEL_TSS,
                type_: 11,
                present: 1,
                ..Default::default()
            };
            sregs.gdt.base = tables::GDT;
            sregs.gdt.limit = tables::GDT_LIMIT;
            sregs.idt.base = tables::IDT;
            sregs.idt.limit = tables::IDT_LIMIT;
        }
    }
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;

    let regs = kvm_bindings::kvm_regs {
        rip: entry,
        rflags: 0x2,
        // Entry as if called: RSP + 8 is 16-byte aligned.
        rsp: layout.usable_end - 8,
        rdi: sturdy_abi::BOOT_INFO_BASE,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
    Ok(())
}

/// A flat 4 GiB code or data segment.
fn segment(selector: u16, dpl: u8, type_: u8, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        ..Default::default()
    }
}
