//! Reports of CPU exceptions taken by deprivileged guests: the trap frame pushed by the CPU
//! (read from the monitor's fault stack) plus CR2, turned into a message an operator can act on.

use std::fmt;

use crate::cpu::FaultFrame;

/// A CPU exception in a deprivileged guest. The monitor exits with status 255 (docs/hvt-abi.md,
/// Monitor command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFault {
    pub frame: FaultFrame,
    pub cr2: u64,
}

/// Mnemonic and name of an exception vector.
pub fn vector_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point exception"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection exception"),
        _ => ("#??", "reserved exception"),
    }
}

/// What a page-fault error code says, e.g. "write to a read-only page".
pub fn page_fault_cause(error_code: u64) -> &'static str {
    let present = error_code & 1 != 0;
    let write = error_code & 2 != 0;
    let fetch = error_code & 0x10 != 0;
    match (present, write, fetch) {
        (false, _, true) => "instruction fetch from an unmapped page",
        (false, true, _) => "write to an unmapped page",
        (false, false, _) => "read from an unmapped page",
        (true, _, true) => "instruction fetch from a non-executable page",
        (true, true, _) => "write to a read-only page",
        (true, false, _) => "read from a page the guest may not access",
    }
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fr = &self.frame;
        let (mnemonic, name) = vector_name(fr.vector);
        write!(
            f,
            "guest CPU exception {mnemonic} ({name}, vector {}) at rip={:#x}",
            fr.vector, fr.rip
        )?;
        if fr.vector == 14 {
            write!(
                f,
                ", cr2={:#x}: {}",
                self.cr2,
                page_fault_cause(fr.error_code)
            )?;
        }
        write!(
            f,
            "; error code {:#x}, rsp={:#x}, rflags={:#x}",
            fr.error_code, fr.rsp, fr.rflags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fault_report_names_everything() {
        let f = GuestFault {
            frame: FaultFrame {
                vector: 14,
                error_code: 0x7,
                rip: 0x100123,
                cs: 0x23,
                rflags: 0x202,
                rsp: 0x1ff000,
                ss: 0x1b,
            },
            cr2: 0x100000,
        };
        let s = f.to_string();
        assert!(s.contains("#PF"), "{s}");
        assert!(s.contains("rip=0x100123"), "{s}");
        assert!(s.contains("cr2=0x100000"), "{s}");
        assert!(s.contains("write to a read-only page"), "{s}");
        assert!(s.contains("error code 0x7"), "{s}");
        assert_eq!(
            page_fault_cause(0x15),
            "instruction fetch from a non-executable page"
        );
        assert_eq!(page_fault_cause(0x4), "read from an unmapped page");
    }
}
