//! GDT, and for deprivileged guests the IDT, TSS (with its I/O permission bitmap) and the CPL-0
//! fault stubs, all in the low 64 KiB of guest memory.
//!
//! Low memory in deprivileged mode (page flags from [`monitor_page_flags`]):
//! ```text
//! 0x0000        zero page                               not present
//! 0x1000        GDT                                     supervisor RW, NX
//! 0x2000-0x8fff page tables (see paging.rs)             not present (walked physically)
//! 0x9000        IDT (32 interrupt gates, IST 1)         supervisor RO, NX
//! 0xa000-0xcfff TSS + I/O bitmap (ports 0x500-0x5ff)    supervisor RW, NX
//! 0xd000        fault stubs (16 bytes per vector)       supervisor RO, executable
//! 0xe000-0xefff fault stack (RSP0 = IST1 = 0xf000)      supervisor RW, NX
//! 0xf000        unused                                  not present
//! ```
//! On PVM hosts CPL-3 port I/O is allowed only by the TSS I/O bitmap (`docs/hvt-abi.md`, PVM
//! hosts), so the bitmap opens the hypercall range. The whole 0x500-0x5ff range is open so that a
//! wrong hypercall port reaches the monitor and gets "Invalid guest port access"
//! (`docs/hvt-abi.md`, Hypercalls) instead of a #GP.

use super::paging::flags;
use crate::memory::{GuestAccessError, GuestMemory};

pub const GDT: u64 = 0x1000;
pub const IDT: u64 = 0x9000;
pub const TSS: u64 = 0xa000;
const STUBS: u64 = 0xd000;
/// The fault stack: the CPU pushes the trap frame at its top.
pub const FAULT_STACK: std::ops::Range<u64> = 0xe000..0xf000;

pub const SEL_KERNEL_CODE: u16 = 0x08;
pub const SEL_KERNEL_DATA: u16 = 0x10;
pub const SEL_USER_DATA: u16 = 0x18 | 3;
pub const SEL_USER_CODE: u16 = 0x20 | 3;
pub const SEL_TSS: u16 = 0x28;
pub const GDT_LIMIT: u16 = 7 * 8 - 1;

const VECTORS: u64 = 32;
pub const IDT_LIMIT: u16 = (VECTORS * 16 - 1) as u16;

const IOPB_OFFSET: u64 = 0x68;
/// 65536 port bits plus the 0xff terminator byte.
const IOPB_SIZE: u64 = 8192 + 1;
pub const TSS_LIMIT: u32 = (IOPB_OFFSET + IOPB_SIZE - 1) as u32;
const HYPERCALL_PORTS: std::ops::RangeInclusive<u16> = 0x500..=0x5ff;

/// Port the fault stubs report on. Outside the I/O bitmap, so CPL-3 code cannot use it: an exit
/// on this port in deprivileged mode comes from a stub.
pub const FAULT_PORT: u16 = 0x4f0;

/// Spec 3: the upstream GDT.
pub fn write_upstream_gdt(mem: &GuestMemory) -> Result<(), GuestAccessError> {
    let gdt: [u64; 3] = [0, 0x00af_9900_0000_ffff, 0x00cf_9300_0000_ffff];
    mem.setup_write(GDT, &to_bytes(&gdt))
}

/// GDT with user segments and the TSS, the IDT, the TSS with its I/O bitmap, and the stubs.
pub fn write_deprivileged_tables(mem: &GuestMemory) -> Result<(), GuestAccessError> {
    let (tss_lo, tss_hi) = system_descriptor(TSS, TSS_LIMIT, 0xb);
    // Accessed bits preset: the CPU need not write the GDT when it loads a selector.
    let gdt: [u64; 7] = [
        0,
        0x00af_9b00_0000_ffff, // 0x08 kernel code, 64-bit
        0x00cf_9300_0000_ffff, // 0x10 kernel data
        0x00cf_f300_0000_ffff, // 0x18 user data, DPL 3
        0x00af_fb00_0000_ffff, // 0x20 user code, 64-bit, DPL 3
        tss_lo,                // 0x28 TSS (busy), 16 bytes
        tss_hi,
    ];
    mem.setup_write(GDT, &to_bytes(&gdt))?;

    let mut idt = Vec::with_capacity((VECTORS * 16) as usize);
    for v in 0..VECTORS {
        let handler = STUBS + v * 16;
        let lo = (handler & 0xffff)
            | (u64::from(SEL_KERNEL_CODE) << 16)
            | (1 << 32) // IST 1
            | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
            | (((handler >> 16) & 0xffff) << 48);
        idt.extend_from_slice(&lo.to_le_bytes());
        idt.extend_from_slice(&(handler >> 32).to_le_bytes());
    }
    mem.setup_write(IDT, &idt)?;

    let mut tss = vec![0u8; (IOPB_OFFSET + IOPB_SIZE) as usize];
    let stack_top = FAULT_STACK.end;
    tss[4..12].copy_from_slice(&stack_top.to_le_bytes()); // RSP0
    tss[0x24..0x2c].copy_from_slice(&stack_top.to_le_bytes()); // IST1
    tss[0x66..0x68].copy_from_slice(&(IOPB_OFFSET as u16).to_le_bytes());
    let iopb = &mut tss[IOPB_OFFSET as usize..];
    iopb.fill(0xff); // every port denied, terminator included
    for port in HYPERCALL_PORTS {
        iopb[usize::from(port / 8)] &= !(1 << (port % 8));
    }
    mem.setup_write(TSS, &tss)?;

    mem.setup_write(STUBS, &fault_stubs())
}

/// Page flags of the monitor's low pages in deprivileged mode (0 = not present).
pub fn monitor_page_flags(addr: u64) -> u64 {
    match addr {
        GDT => flags::SUPERVISOR_RW,
        IDT => flags::SUPERVISOR_RO,
        0xa000..=0xcfff => flags::SUPERVISOR_RW,
        STUBS => flags::SUPERVISOR_EXEC,
        a if FAULT_STACK.contains(&a) => flags::SUPERVISOR_RW,
        _ => 0,
    }
}

/// One 16-byte stub per vector:
/// `[push 0] ; push vector ; mov eax, esp ; mov dx, FAULT_PORT ; out dx, eax ; hlt ; jmp hlt`.
/// The frame at ESP is then {vector, error code, rip, cs, rflags, rsp, ss} ([`FaultFrame`]).
fn fault_stubs() -> Vec<u8> {
    const HAS_ERROR_CODE: [u64; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
    let port = FAULT_PORT.to_le_bytes();
    let mut code = vec![0xccu8; (VECTORS * 16) as usize];
    for v in 0..VECTORS {
        let mut stub = Vec::with_capacity(16);
        if !HAS_ERROR_CODE.contains(&v) {
            stub.extend_from_slice(&[0x6a, 0x00]); // push 0
        }
        stub.extend_from_slice(&[0x6a, v as u8]); // push vector
        stub.extend_from_slice(&[0x89, 0xe0]); // mov eax, esp
        stub.extend_from_slice(&[0x66, 0xba, port[0], port[1]]); // mov dx, FAULT_PORT
        stub.push(0xef); // out dx, eax
        stub.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // hlt ; jmp hlt
        let at = (v * 16) as usize;
        code[at..at + stub.len()].copy_from_slice(&stub);
    }
    code
}

/// A 64-bit system segment descriptor (TSS) as its two GDT words.
fn system_descriptor(base: u64, limit: u32, type_: u64) -> (u64, u64) {
    let limit = u64::from(limit);
    let lo = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (type_ << 40)
        | (1 << 47) // present
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    (lo, base >> 32)
}

fn to_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The frame a fault stub reports, read from the fault stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultFrame {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl FaultFrame {
    pub const SIZE: usize = 56;

    /// Reads the frame at `gpa` (the stub's ESP). The address comes from a stub the monitor
    /// wrote, but is still checked to lie in the fault stack.
    pub fn read(mem: &GuestMemory, gpa: u64) -> Option<FaultFrame> {
        if gpa < FAULT_STACK.start || gpa + Self::SIZE as u64 > FAULT_STACK.end {
            return None;
        }
        let mut b = [0u8; Self::SIZE];
        mem.setup_read(gpa, &mut b).ok()?;
        let w = |i: usize| sturdy_abi::get_u64(&b, i * 8);
        Some(FaultFrame {
            vector: w(0),
            error_code: w(1),
            rip: w(2),
            cs: w(3),
            rflags: w(4),
            rsp: w(5),
            ss: w(6),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_fit_and_push_error_code_placeholder() {
        let code = fault_stubs();
        // #DE (0) has no error code: push 0 first.
        assert_eq!(&code[0..4], &[0x6a, 0x00, 0x6a, 0x00]);
        // #PF (14) has one: push vector directly.
        assert_eq!(&code[14 * 16..14 * 16 + 2], &[0x6a, 14]);
        assert_eq!(code[14 * 16 + 8], 0xef);
    }

    #[test]
    fn tss_descriptor_encodes_base_and_limit() {
        let (lo, hi) = system_descriptor(0xa000, 0x2068, 0xb);
        assert_eq!(lo & 0xffff, 0x2068);
        assert_eq!((lo >> 16) & 0xff_ffff, 0xa000);
        assert_eq!((lo >> 40) & 0xf, 0xb);
        assert_eq!(hi, 0);
    }
}
