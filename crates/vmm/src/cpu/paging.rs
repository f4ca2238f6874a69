//! Identity-mapped 4-level page tables (`docs/hvt-abi.md`, Memory and CPU, for the upstream
//! layout; `docs/sturdy-note.md` for the deprivileged one).

use crate::loader::Segment;
use crate::memory::{GuestAccessError, GuestMemory};

use super::tables;

pub const PML4: u64 = 0x2000;
const PDPT: u64 = 0x3000;
/// Four page directories, one per GiB.
const PD: u64 = 0x4000;
/// Page table of the first 2 MiB.
const PT0: u64 = 0x8000;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const NO_EXEC: u64 = 1 << 63;

const PAGE: u64 = 0x1000;
const HUGE_PAGE: u64 = 2 << 20;

/// Writes `entries` as consecutive little-endian u64s at `gpa`.
fn write_entries(mem: &GuestMemory, gpa: u64, entries: &[u64]) -> Result<(), GuestAccessError> {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.setup_write(gpa, &bytes)
}

/// Spec 3: 4 KiB pages for the first 2 MiB (zero page and 0x1000-0xffff not present, boot info
/// read-only, kernel RW), 2 MiB pages up to the end of memory; no NX, no U/S.
pub fn write_upstream(mem: &GuestMemory) -> Result<(), GuestAccessError> {
    let mem_size = mem.size();
    write_entries(mem, PML4, &[PDPT | PRESENT | WRITABLE])?;
    let pdpt: Vec<u64> = (0..4)
        .map(|i| (PD + i * PAGE) | PRESENT | WRITABLE)
        .collect();
    write_entries(mem, PDPT, &pdpt)?;

    let mut pd = vec![0u64; 2048];
    pd[0] = PT0 | PRESENT | WRITABLE;
    for (i, entry) in pd.iter_mut().enumerate().skip(1) {
        let addr = i as u64 * HUGE_PAGE;
        if addr + HUGE_PAGE <= mem_size {
            *entry = addr | PRESENT | WRITABLE | HUGE;
        }
    }
    write_entries(mem, PD, &pd)?;

    let pt: Vec<u64> = (0..512u64)
        .map(|i| {
            let addr = i * PAGE;
            if addr < super::LOW_MONITOR_END {
                0
            } else if addr < sturdy_abi::KERNEL_BASE {
                addr | PRESENT
            } else {
                addr | PRESENT | WRITABLE
            }
        })
        .collect();
    write_entries(mem, PT0, &pt)
}

/// Deprivileged layout: U/S on every level for guest pages, 4 KiB pages with per-segment
/// permissions up to the 2 MiB boundary above the kernel, then 2 MiB RW+NX pages up to
/// `usable_end`. Monitor structures are supervisor-only or unmapped; page zero is unmapped; the
/// reserved tail (which holds the extra page tables) is unmapped.
pub fn write_deprivileged(
    mem: &GuestMemory,
    segments: &[Segment],
    kernel_end: u64,
    usable_end: u64,
) -> Result<(), GuestAccessError> {
    let dir = PRESENT | WRITABLE | USER;
    write_entries(mem, PML4, &[PDPT | dir])?;
    let gib = usable_end.div_ceil(1 << 30);
    let pdpt: Vec<u64> = (0..gib).map(|i| (PD + i * PAGE) | dir).collect();
    write_entries(mem, PDPT, &pdpt)?;

    // 2 MiB regions below `fine_end` get 4 KiB page tables: PT0 for the first, then tables
    // allocated from the reserved tail.
    let fine_end = kernel_end.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let mut next_table = usable_end;
    let mut pd = vec![0u64; 2048];
    for (i, entry) in pd.iter_mut().enumerate() {
        let region = i as u64 * HUGE_PAGE;
        if region >= usable_end {
            break;
        }
        if region < fine_end || region == 0 {
            let table = if region == 0 {
                PT0
            } else {
                let t = next_table;
                next_table += PAGE;
                t
            };
            let pt: Vec<u64> = (0..512u64)
                .map(|p| {
                    let addr = region + p * PAGE;
                    addr | page_flags(addr, segments, kernel_end)
                })
                .map(|e| if e & PRESENT == 0 { 0 } else { e })
                .collect();
            write_entries(mem, table, &pt)?;
            *entry = table | dir;
        } else {
            *entry = region | dir | HUGE | NO_EXEC;
        }
    }
    write_entries(mem, PD, &pd)
}

/// Flags of the 4 KiB page at `addr` in deprivileged mode (0 = not present).
fn page_flags(addr: u64, segments: &[Segment], kernel_end: u64) -> u64 {
    if addr < super::LOW_MONITOR_END {
        return tables::monitor_page_flags(addr);
    }
    if addr < sturdy_abi::KERNEL_BASE {
        // Boot info, manifest copy, command line: the guest reads them.
        return PRESENT | USER | NO_EXEC;
    }
    if let Some(s) = segments.iter().find(|s| addr >= s.start && addr < s.end) {
        let mut f = PRESENT | USER;
        if s.write {
            f |= WRITABLE;
        }
        if !s.exec {
            f |= NO_EXEC;
        }
        return f;
    }
    if addr >= kernel_end {
        // Heap and stack.
        return PRESENT | USER | WRITABLE | NO_EXEC;
    }
    0 // a hole between segments
}

/// Flags for monitor-owned pages (used by `tables`).
pub mod flags {
    pub const SUPERVISOR_RO: u64 = super::PRESENT | super::NO_EXEC;
    pub const SUPERVISOR_RW: u64 = super::PRESENT | super::WRITABLE | super::NO_EXEC;
    pub const SUPERVISOR_EXEC: u64 = super::PRESENT;
}
