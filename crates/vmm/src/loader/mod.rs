//! The ELF loader's plan: validates an untrusted hvt executable exactly as docs/hvt-abi.md (The
//! executable, Notes, Loading, Manifest) says, and describes what to copy where. Pure: no I/O, no
//! KVM, no guest memory; the monitor carries out the [`LoadPlan`] (docs/hvt-abi.md, Loading, rules
//! 6 and 7).
//!
//! Order of checks, upstream's (so a file with several defects is refused for the same one): the
//! ELF header and program header table (`elf`); the ABI1 note, the MFT1 note and its manifest,
//! sturdy's own note (`notes`); then `e_entry` and the PT_LOAD segments.
//!
//! In messages, "segment N" and "program header N" both mean entry N of the program header
//! table, counted from 0.

mod elf;
mod notes;

#[cfg(test)]
mod image;
#[cfg(test)]
mod props;

use sturdy_abi::sturdy_note::SturdyInfo;
use sturdy_abi::KERNEL_BASE;

use crate::manifest::{Manifest, ManifestError};
use elf::{Elf, Phdr, PF_R, PF_W, PF_X, PT_LOAD};

/// Guest page size: segment bounds must be multiples of it (docs/hvt-abi.md, Loading, rule 4).
const PAGE_SIZE: u64 = 0x1000;

/// A validated executable: everything the monitor needs to load and start it.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// `e_entry`, in `[0x100000, mem_size)`.
    pub entry: u64,
    /// The largest aligned end of the processed segments.
    pub kernel_end: u64,
    /// The processed PT_LOAD segments (`p_filesz != 0`), in file order: ascending and disjoint.
    pub segments: Vec<Segment>,
    /// The validated MFT1 manifest.
    pub manifest: Manifest,
    /// sturdy's own note, if present (and valid: a malformed one is refused).
    pub sturdy: Option<SturdyInfo>,
}

/// A PT_LOAD segment that passed docs/hvt-abi.md, Loading, rules 1 to 5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    /// Bytes `[file_offset, file_offset + filesz)` of the file go to `vaddr`; they lie inside the
    /// file, and `filesz <= memsz`.
    pub file_offset: u64,
    pub filesz: u64,
    /// `align_down(vaddr, p_align)`, 4 KiB aligned.
    pub start: u64,
    /// `align_up(vaddr + memsz, p_align)`, 4 KiB aligned, `<= mem_size`.
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// Why an executable was refused. The messages are the spec's, printed as they are.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file breaks a rule of docs/hvt-abi.md, The executable: bad header, note or segment.
    #[error("invalid executable: {0}")]
    Invalid(String),
    #[error("No Solo5 ABI information found in executable")]
    NoAbi,
    #[error("Executable is not for the solo5-hvt target")]
    WrongTarget { target: u32 },
    #[error("Executable requests unsupported ABI version {0}")]
    UnsupportedVersion(u32),
    #[error("No Solo5 manifest found in executable")]
    NoManifest,
    #[error("Solo5 manifest is invalid: {0}")]
    InvalidManifest(#[from] ManifestError),
}

fn invalid(reason: String) -> LoadError {
    LoadError::Invalid(reason)
}

/// How many leading bytes of the file [`parse`] needs, given at least its header and program
/// header table in `head`: the table and every PT_LOAD and PT_NOTE's contents. Debug
/// information follows them in the file, so the monitor reads only this prefix (a boot-time
/// saving: guest images with symbols are mostly debug information). `None` if `head` does not
/// hold a valid header and table; the caller then reads the whole file and lets `parse` say why.
pub fn needed_len(head: &[u8]) -> Option<u64> {
    let elf = Elf::parse(head).ok()?;
    let table_end = elf::table_end(head)?;
    elf.phdrs
        .iter()
        .filter(|ph| matches!(ph.p_type, PT_LOAD | elf::PT_NOTE))
        .try_fold(table_end, |end, ph| {
            Some(end.max(ph.p_offset.checked_add(ph.p_filesz)?))
        })
}

/// Reads the part of the unikernel file at `path` the loader needs (see [`needed_len`]):
/// headers, notes and loadable segments, not the debug information after them.
///
/// Only a regular file is read: the file is opened without blocking (a FIFO or a device
/// would otherwise hold the caller for as long as nobody writes to it) and anything else is
/// refused with `InvalidInput`, naming what it is.
pub fn read_image(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
    const HEAD: u64 = 64 << 10;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file (an image must be an ELF file)"),
        ));
    }
    let size = meta.len();
    let mut image = vec![0u8; HEAD.min(size) as usize];
    file.read_exact_at(&mut image, 0)?;
    let want = needed_len(&image).unwrap_or(size).min(size) as usize;
    if want > image.len() {
        let have = image.len();
        image.resize(want, 0);
        file.read_exact_at(&mut image[have..], have as u64)?;
    }
    Ok(image)
}

/// The manifest of the unikernel `elf` (its ELF header, ABI note and MFT1 note checked): what
/// devices it declares, for a supervisor deciding what to attach before it runs the monitor.
pub fn manifest(elf: &[u8]) -> Result<Manifest, LoadError> {
    let elf = Elf::parse(elf)?;
    notes::check_abi1(&elf)?;
    Ok(Manifest::parse(notes::find_mft1(&elf)?)?)
}

/// Validates `elf` for a guest of `mem_size` bytes and returns what to load where.
pub fn parse(elf: &[u8], mem_size: u64) -> Result<LoadPlan, LoadError> {
    let elf = Elf::parse(elf)?;
    notes::check_abi1(&elf)?;
    let manifest = Manifest::parse(notes::find_mft1(&elf)?)?;
    let sturdy = notes::find_sturdy(&elf)?;

    // docs/hvt-abi.md, Loading: the entry point (checked before the segments, as upstream does).
    if elf.entry < KERNEL_BASE || elf.entry >= mem_size {
        return Err(invalid(format!(
            "entry point {:#x} is outside guest memory [{KERNEL_BASE:#x}, {mem_size:#x})",
            elf.entry
        )));
    }

    let mut segments: Vec<Segment> = Vec::new();
    for (i, ph) in elf.phdrs.iter().enumerate() {
        // docs/hvt-abi.md, Loading: only PT_LOAD with file contents (not the empty TLS one, not
        // .bss).
        if ph.p_type != PT_LOAD || ph.p_filesz == 0 {
            continue;
        }
        segments.push(segment(i, ph, segments.last(), elf.bytes, mem_size)?);
    }
    // Upstream would start a guest with nothing loaded; nothing useful runs from zeroed memory.
    let kernel_end = segments
        .iter()
        .map(|s| s.end)
        .max()
        .ok_or_else(|| invalid("no PT_LOAD segment with file contents".into()))?;
    Ok(LoadPlan {
        entry: elf.entry,
        kernel_end,
        segments,
        manifest,
        sturdy,
    })
}

/// Applies docs/hvt-abi.md, Loading, rules 1 to 5 to program header `i`, which follows `prev`.
fn segment(
    i: usize,
    ph: &Phdr,
    prev: Option<&Segment>,
    file: &[u8],
    mem_size: u64,
) -> Result<Segment, LoadError> {
    let err = |why: String| invalid(format!("segment {i} {why}"));
    let vaddr = ph.p_vaddr;

    // Rule 1: above the kernel base, ascending, p_align a power of two. Like upstream's
    // align_up/align_down, 0 is refused (it is not a power of two).
    if vaddr < KERNEL_BASE {
        return Err(err(format!(
            "starts below {KERNEL_BASE:#x} (p_vaddr {vaddr:#x})"
        )));
    }
    if let Some(prev) = prev.filter(|p| vaddr < p.vaddr) {
        return Err(err(format!(
            "is not in ascending order (p_vaddr {vaddr:#x} < {:#x})",
            prev.vaddr
        )));
    }
    let align = ph.p_align;
    if !align.is_power_of_two() {
        return Err(err(format!(
            "has p_align {:#x}, not a power of two",
            ph.p_align
        )));
    }

    // Rule 2: the aligned start is above the kernel base and does not overlap.
    let start = vaddr & !(align - 1);
    if start < KERNEL_BASE {
        return Err(err(format!(
            "starts below {KERNEL_BASE:#x} once aligned (p_vaddr {vaddr:#x}, p_align {align:#x})"
        )));
    }
    if let Some(prev) = prev.filter(|p| start < p.end) {
        return Err(err(format!(
            "overlaps the previous one (starts at {start:#x}, previous ends at {:#x})",
            prev.end
        )));
    }

    // Rule 3: the file contents fit in guest memory; memsz covers them.
    if vaddr.checked_add(ph.p_filesz).is_none_or(|e| e > mem_size) {
        return Err(err(format!(
            "does not fit in guest memory (p_vaddr {vaddr:#x} + p_filesz {:#x} > mem_size {mem_size:#x})",
            ph.p_filesz
        )));
    }
    if ph.p_memsz < ph.p_filesz {
        return Err(err(format!(
            "has p_memsz {:#x} smaller than p_filesz {:#x}",
            ph.p_memsz, ph.p_filesz
        )));
    }

    // Rule 4: the aligned end fits in guest memory; both bounds are page aligned.
    let end = vaddr
        .checked_add(ph.p_memsz)
        .and_then(|e| sturdy_abi::note::align_up(e, align));
    let Some(end) = end.filter(|&e| e <= mem_size) else {
        return Err(err(format!(
            "does not fit in guest memory (p_vaddr {vaddr:#x} + p_memsz {:#x}, aligned to {align:#x}, \
             > mem_size {mem_size:#x})",
            ph.p_memsz
        )));
    };
    if start & (PAGE_SIZE - 1) != 0 || end & (PAGE_SIZE - 1) != 0 {
        return Err(err(format!(
            "is not 4 KiB aligned (from {start:#x} to {end:#x})"
        )));
    }

    // Rule 5: W^X.
    let (read, write, exec) = (
        ph.p_flags & PF_R != 0,
        ph.p_flags & PF_W != 0,
        ph.p_flags & PF_X != 0,
    );
    if write && exec {
        return Err(err("is both writable and executable".into()));
    }

    // What rule 6 will copy must be in the file.
    if elf::slice(file, ph.p_offset, ph.p_filesz).is_none() {
        return Err(err(format!(
            "has its contents outside the file (p_offset {:#x} + p_filesz {:#x} > file size {:#x})",
            ph.p_offset,
            ph.p_filesz,
            file.len()
        )));
    }

    Ok(Segment {
        vaddr,
        memsz: ph.p_memsz,
        file_offset: ph.p_offset,
        filesz: ph.p_filesz,
        start,
        end,
        read,
        write,
        exec,
    })
}

#[cfg(test)]
mod tests {
    use super::image::*;
    use super::*;
    use sturdy_abi::{put_u16, put_u32, put_u64};

    const MEM: u64 = 512 * MIB;

    fn err(file: &[u8], mem_size: u64) -> String {
        parse(file, mem_size)
            .expect_err("executable accepted")
            .to_string()
    }

    /// The built `image` with field `off` of program header `i` set to `v`.
    fn with_phdr(image: &Image, i: usize, off: usize, v: u64) -> Vec<u8> {
        let mut f = image.build();
        match off {
            P_TYPE | P_FLAGS => put_u32(&mut f, phdr_off(i) + off, v as u32),
            _ => put_u64(&mut f, phdr_off(i) + off, v),
        }
        f
    }

    #[test]
    fn manifest_alone_lists_the_declared_devices() {
        let file = Image::hvt()
            .with_devices(&[("service", 1), ("storage", 2)])
            .build();
        let m = manifest(&file).unwrap();
        let names: Vec<&str> = m.devices().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["service", "storage"]);
        assert!(manifest(&file[..40]).is_err());
    }

    #[test]
    fn minimal_image_plan() {
        let file = Image::hvt().build();
        let plan = parse(&file, MEM).unwrap();
        assert_eq!(plan.entry, 0x10_0020);
        assert_eq!(plan.sturdy, None);
        assert!(plan.manifest.devices().is_empty());
        // .bss (p_filesz 0) and the empty TLS segment at 0 are not processed (docs/hvt-abi.md,
        // Loading).
        assert_eq!(plan.kernel_end, HVT_KERNEL_END);
        let s = &plan.segments;
        assert_eq!(s.len(), 3);
        let off = u64::from_le_bytes(file[phdr_off(TEXT) + P_OFFSET..][..8].try_into().unwrap());
        assert_eq!(
            s[0],
            Segment {
                vaddr: 0x10_0000,
                memsz: 0x40,
                file_offset: off,
                filesz: 0x40,
                start: 0x10_0000,
                end: 0x10_1000,
                read: true,
                write: false,
                exec: true,
            }
        );
        assert_eq!(&file[off as usize..][..0x40], &[0xf4; 0x40]);
        assert_eq!(
            (s[1].start, s[1].end, s[1].read, s[1].write, s[1].exec),
            (0x10_1000, 0x10_2000, true, false, false)
        );
        assert_eq!(
            (s[2].vaddr, s[2].filesz, s[2].memsz, s[2].end),
            (0x10_2000, 0x10, 0x800, 0x10_3000)
        );
        assert!(s[2].write && !s[2].exec);
    }

    #[test]
    fn needed_len_covers_everything_parse_reads() {
        let mut f = Image::hvt().build();
        let n = needed_len(&f).expect("valid header") as usize;
        assert!(n <= f.len());
        // Appended bytes (debug information) are not needed, and the prefix parses the same.
        f.extend_from_slice(&[0xaa; 4096]);
        assert_eq!(needed_len(&f), Some(n as u64));
        let whole = parse(&f, MEM).unwrap();
        let prefix = parse(&f[..n], MEM).unwrap();
        assert_eq!(whole.segments, prefix.segments);
        assert_eq!(whole.kernel_end, prefix.kernel_end);
        // Anything shorter loses a note or a segment.
        assert!(parse(&f[..n - 1], MEM).is_err());
        assert_eq!(needed_len(b"not an elf"), None);
    }

    #[test]
    fn not_an_elf_file() {
        assert_eq!(err(b"", MEM), "invalid executable: not an ELF file");
        assert_eq!(
            err(b"#!/bin/sh\necho hello\n", MEM),
            "invalid executable: not an ELF file"
        );
        assert_eq!(err(b"\x7fEL", MEM), "invalid executable: not an ELF file");
        assert_eq!(
            err(b"\x7fELF\x02\x01", MEM),
            "invalid executable: truncated ELF header (6 bytes, need 64)"
        );
        let file = Image::hvt().build();
        assert_eq!(
            err(&file[..63], MEM),
            "invalid executable: truncated ELF header (63 bytes, need 64)"
        );
    }

    #[test]
    fn header_rules() {
        let good = Image::hvt().build();
        let patched = |off: usize, bytes: &[u8]| {
            let mut f = good.clone();
            f[off..off + bytes.len()].copy_from_slice(bytes);
            err(&f, MEM)
        };
        assert_eq!(
            patched(4, &[1]),
            "invalid executable: not a 64-bit ELF file (ELF class 1)"
        );
        assert_eq!(
            patched(5, &[2]),
            "invalid executable: not a little-endian ELF file (ELF data encoding 2)"
        );
        assert_eq!(
            patched(20, &[0]),
            "invalid executable: unsupported ELF version 0"
        );
        assert_eq!(
            patched(52, &[52, 0]),
            "invalid executable: bad ELF header size e_ehsize 52, expected 64"
        );
        assert_eq!(
            patched(54, &[32, 0]),
            "invalid executable: bad program header size e_phentsize 32, expected 56"
        );
        assert_eq!(
            patched(56, &[0, 0]),
            "invalid executable: no program headers (e_phnum 0)"
        );
        assert_eq!(
            patched(16, &[3, 0]),
            "invalid executable: not a static executable (e_type 3, expected ET_EXEC 2)"
        );
        assert_eq!(
            patched(18, &[183, 0]),
            "invalid executable: not an x86_64 executable (e_machine 183)"
        );
        assert_eq!(
            patched(18, &[3, 0]),
            "invalid executable: not an x86_64 executable (e_machine 3)"
        );
        // OSABI is not checked (docs/hvt-abi.md, The executable).
        let mut f = good.clone();
        f[7] = 9;
        assert!(parse(&f, MEM).is_ok());
    }

    #[test]
    fn a_32_bit_elf_is_refused_before_its_fields_are_read() {
        // A real ELF32 header is 52 bytes: too short for ELF64, but the class is what is wrong.
        let mut f = vec![0u8; 52];
        f[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
        assert_eq!(
            err(&f, MEM),
            "invalid executable: truncated ELF header (52 bytes, need 64)"
        );
        f.resize(4096, 0);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: not a 64-bit ELF file (ELF class 1)"
        );
    }

    #[test]
    fn truncated_program_header_table() {
        let file = Image::hvt().build();
        let table_end = phdr_off(file[56] as usize);
        assert_eq!(
            err(&file[..table_end - 1], MEM),
            format!("invalid executable: truncated program header table (8 entries at offset 0x40, file is {} bytes)", table_end - 1)
        );
        let mut f = file.clone();
        put_u16(&mut f, 56, u16::MAX);
        assert!(err(&f, MEM)
            .starts_with("invalid executable: truncated program header table (65535 entries"));
        let mut f = file.clone();
        put_u64(&mut f, 32, u64::MAX - 8);
        assert!(err(&f, MEM).starts_with("invalid executable: truncated program header table (8 entries at offset 0xfffffffffffffff7"));
        // Cut at the end instead: the table is fine, the note there is not.
        assert_eq!(
            err(&file[..file.len() - 1], MEM),
            "invalid executable: MFT1 note in program header 7: descriptor lies past the end of the file"
        );
    }

    #[test]
    fn entry_point() {
        let mut image = Image::hvt();
        image.entry = 0xfffff;
        assert_eq!(
            err(&image.build(), MEM),
            "invalid executable: entry point 0xfffff is outside guest memory [0x100000, 0x20000000)"
        );
        image.entry = MEM;
        assert!(err(&image.build(), MEM)
            .starts_with("invalid executable: entry point 0x20000000 is outside"));
        image.entry = MEM - 1;
        let mut f = image.build();
        put_u64(&mut f, phdr_off(DATA) + P_VADDR, MEM - 0x1000);
        put_u64(&mut f, phdr_off(DATA) + P_MEMSZ, 0x1000);
        let plan = parse(&f, MEM).unwrap();
        assert_eq!((plan.entry, plan.kernel_end), (MEM - 1, MEM));
    }

    #[test]
    fn write_and_execute_is_refused() {
        let f = with_phdr(&Image::hvt(), DATA, P_FLAGS, u64::from(PF_R | PF_W | PF_X));
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 3 is both writable and executable"
        );
        let f = with_phdr(&Image::hvt(), TEXT, P_FLAGS, u64::from(PF_W | PF_X));
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 1 is both writable and executable"
        );
        // Without contents the segment is not processed, whatever its flags.
        assert!(parse(&with_phdr(&Image::hvt(), BSS, P_FLAGS, 7), MEM).is_ok());
    }

    #[test]
    fn segment_below_kernel_base() {
        let f = with_phdr(&Image::hvt(), TEXT, P_VADDR, 0xff000);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 1 starts below 0x100000 (p_vaddr 0xff000)"
        );
        let f = with_phdr(&Image::hvt(), TEXT, P_VADDR, 0);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 1 starts below 0x100000 (p_vaddr 0x0)"
        );
        // p_vaddr above the base, but aligned down below it.
        let mut image = Image::hvt();
        let Part::Load { align, .. } = &mut image.parts[TEXT] else {
            unreachable!()
        };
        *align = 0x20_0000;
        assert_eq!(
            err(&image.build(), MEM),
            "invalid executable: segment 1 starts below 0x100000 once aligned (p_vaddr 0x100000, p_align 0x200000)"
        );
    }

    #[test]
    fn overlapping_and_unordered_segments() {
        let f = with_phdr(&Image::hvt(), RODATA, P_VADDR, 0x10_0800);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 2 overlaps the previous one (starts at 0x100000, previous ends at 0x101000)"
        );
        let f = with_phdr(&Image::hvt(), RODATA, P_MEMSZ, 0x1001);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 3 overlaps the previous one (starts at 0x102000, previous ends at 0x103000)"
        );
        let f = with_phdr(&Image::hvt(), DATA, P_VADDR, 0x10_0000);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 3 is not in ascending order (p_vaddr 0x100000 < 0x101000)"
        );
        // Touching is not overlapping.
        let f = with_phdr(&Image::hvt(), RODATA, P_MEMSZ, 0x1000);
        assert!(parse(&f, MEM).is_ok());
    }

    #[test]
    fn segment_beyond_guest_memory() {
        let mem = 2 * MIB;
        let f = with_phdr(&Image::hvt(), DATA, P_VADDR, mem - 8);
        assert_eq!(
            err(&f, mem),
            "invalid executable: segment 3 does not fit in guest memory (p_vaddr 0x1ffff8 + p_filesz 0x10 > mem_size 0x200000)"
        );
        let mut f = with_phdr(&Image::hvt(), DATA, P_VADDR, mem - 0x1000);
        assert!(parse(&f, mem).is_ok(), "ends exactly at the end of memory");
        put_u64(&mut f, phdr_off(DATA) + P_MEMSZ, 0x1001);
        assert_eq!(
            err(&f, mem),
            "invalid executable: segment 3 does not fit in guest memory (p_vaddr 0x1ff000 + p_memsz 0x1001, aligned to 0x1000, > mem_size 0x200000)"
        );
        let f = with_phdr(&Image::hvt(), DATA, P_MEMSZ, u64::MAX - 0x10_2000);
        assert!(err(&f, MEM).starts_with("invalid executable: segment 3 does not fit in guest memory (p_vaddr 0x102000 + p_memsz 0xffffffffffefdfff, aligned"));
        let f = with_phdr(&Image::hvt(), DATA, P_FILESZ, u64::MAX);
        assert!(err(&f, MEM).starts_with("invalid executable: segment 3 does not fit in guest memory (p_vaddr 0x102000 + p_filesz 0xffffffffffffffff"));
        // The whole image in exactly as much memory as it needs.
        assert!(parse(&Image::hvt().build(), HVT_KERNEL_END).is_ok());
        assert!(parse(&Image::hvt().build(), HVT_KERNEL_END - 1).is_err());
    }

    #[test]
    fn memsz_smaller_than_filesz() {
        let f = with_phdr(&Image::hvt(), DATA, P_MEMSZ, 0xf);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 3 has p_memsz 0xf smaller than p_filesz 0x10"
        );
    }

    #[test]
    fn alignment() {
        let f = with_phdr(&Image::hvt(), TEXT, P_ALIGN, 0x3000);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 1 has p_align 0x3000, not a power of two"
        );
        // Unaligned start with a small p_align.
        let mut f = with_phdr(&Image::hvt(), RODATA, P_ALIGN, 8);
        put_u64(&mut f, phdr_off(RODATA) + P_VADDR, 0x10_1008);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 2 is not 4 KiB aligned (from 0x101008 to 0x101028)"
        );
        let f = with_phdr(&Image::hvt(), RODATA, P_ALIGN, 1);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 2 is not 4 KiB aligned (from 0x101000 to 0x101020)"
        );
        // p_align 0 is not a power of two (upstream refuses it too).
        let f = with_phdr(&Image::hvt(), RODATA, P_ALIGN, 0);
        assert_eq!(
            err(&f, MEM),
            "invalid executable: segment 2 has p_align 0x0, not a power of two"
        );
        // A large alignment widens the segment.
        let mut image = Image::hvt();
        let Part::Load { vaddr, align, .. } = &mut image.parts[DATA] else {
            unreachable!()
        };
        (*vaddr, *align) = (0x20_0000, 0x20_0000);
        let plan = parse(&image.build(), MEM).unwrap();
        assert_eq!(
            (
                plan.segments[2].start,
                plan.segments[2].end,
                plan.kernel_end
            ),
            (0x20_0000, 0x40_0000, 0x40_0000)
        );
    }

    #[test]
    fn segment_contents_outside_the_file() {
        let file = Image::hvt().build();
        let f = with_phdr(&Image::hvt(), TEXT, P_OFFSET, file.len() as u64 - 0x3f);
        assert_eq!(
            err(&f, MEM),
            format!(
                "invalid executable: segment 1 has its contents outside the file (p_offset {:#x} + p_filesz 0x40 > file size {:#x})",
                file.len() - 0x3f,
                file.len()
            )
        );
        let f = with_phdr(&Image::hvt(), TEXT, P_OFFSET, u64::MAX);
        assert!(err(&f, MEM)
            .contains("segment 1 has its contents outside the file (p_offset 0xffffffffffffffff"));
        // Exactly at the end of the file is fine.
        let f = with_phdr(&Image::hvt(), TEXT, P_OFFSET, file.len() as u64 - 0x40);
        assert!(parse(&f, MEM).is_ok());
    }

    #[test]
    fn no_loadable_segment() {
        let mut image = Image::hvt();
        for i in [TEXT, RODATA, DATA] {
            image.parts[i] = Part::Other {
                p_type: 6,
                data: vec![1, 2, 3],
            };
        }
        assert_eq!(
            err(&image.build(), MEM),
            "invalid executable: no PT_LOAD segment with file contents"
        );
    }

    #[test]
    fn other_program_headers_are_ignored() {
        // PT_INTERP, PT_GNU_STACK, PT_TLS...: whatever their fields say.
        let mut image = Image::hvt();
        image.parts.push(Part::Other {
            p_type: 0x6474_e551,
            data: vec![],
        });
        let mut f = image.build();
        let last = image.parts.len() - 1;
        for field in [P_OFFSET, P_VADDR, P_FILESZ, P_MEMSZ, P_ALIGN] {
            put_u64(&mut f, phdr_off(last) + field, u64::MAX);
        }
        put_u32(&mut f, phdr_off(last) + P_FLAGS, 7);
        assert!(parse(&f, MEM).is_ok());
    }

    #[test]
    fn checks_happen_in_upstream_order() {
        // Bad header beats everything.
        let mut image = Image::hvt();
        image.parts[ABI1] = Part::Note(abi1_note(2, 2));
        image.entry = 0;
        let mut f = image.build();
        put_u16(&mut f, 18, 40);
        assert!(err(&f, MEM).contains("e_machine 40"));
        // Notes before entry and segments.
        assert_eq!(
            err(&image.build(), MEM),
            "Executable is not for the solo5-hvt target"
        );
        // Manifest before the sturdy note, sturdy note before segments.
        let mut image = Image::hvt().with_sturdy(9, 0);
        image.entry = 0;
        assert!(err(&image.build(), MEM).starts_with("invalid executable: malformed sturdy note"));
        image.parts[MFT1] = Part::Note(mft1_note(&[0; 8]));
        assert!(err(&image.build(), MEM).starts_with("Solo5 manifest is invalid"));
        // Entry before segments.
        let mut image = Image::hvt();
        image.entry = 0;
        let f = with_phdr(&image, TEXT, P_FLAGS, 7);
        assert!(err(&f, MEM).contains("entry point"));
    }

    /// A FIFO with no writer would block an open for ever (it wedged the daemon that read
    /// images): refused at once, as a directory is.
    #[test]
    fn only_regular_files_are_read_as_images() {
        let dir = std::env::temp_dir().join(format!("sturdy-read-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(read_image(&path)));
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("reading a FIFO as an image blocked")
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            e.to_string().starts_with("a FIFO, not a regular file"),
            "{e}"
        );
        let e = read_image(&dir).unwrap_err();
        assert!(e.to_string().starts_with("a directory"), "{e}");
        let file = dir.join("hello");
        std::fs::write(&file, b"\x7fELF").unwrap();
        assert_eq!(read_image(&file).unwrap(), b"\x7fELF");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
