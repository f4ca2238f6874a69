//! The ELF64 file header and program header table of an hvt executable (docs/hvt-abi.md, The
//! executable), read by hand from untrusted bytes: every offset and size is checked against the
//! file before it is used.

use sturdy_abi::{get_u16, get_u32, get_u64};

use super::LoadError;

/// Size of the ELF64 file header (`e_ehsize`).
const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header (`e_phentsize`).
const PHDR_SIZE: usize = 56;

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u32 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

/// `p_type` values the loader looks at.
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;

/// `p_flags` bits.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// One program header, as found in the file (nothing validated yet but its presence).
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

/// An ELF file whose header passed the checks of docs/hvt-abi.md (The executable) and whose program
/// header table lies entirely inside the file.
pub struct Elf<'a> {
    pub bytes: &'a [u8],
    pub entry: u64,
    pub phdrs: Vec<Phdr>,
}

/// `len` bytes of `bytes` at `off`, or `None` if any of them lies outside (or the range
/// overflows). The one door through which the loader reads file contents at file-given offsets.
pub fn slice(bytes: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// End of the program header table (`e_phoff + e_phnum * 56`), from a header already checked by
/// [`Elf::parse`].
pub fn table_end(bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..EHDR_SIZE)?;
    let count = u64::from(get_u16(h, 56)).checked_mul(PHDR_SIZE as u64)?;
    get_u64(h, 32).checked_add(count)
}

fn invalid(reason: String) -> LoadError {
    LoadError::Invalid(reason)
}

impl<'a> Elf<'a> {
    /// Checks the file header (docs/hvt-abi.md, The executable) and reads the program header table.
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, LoadError> {
        if !bytes.starts_with(b"\x7fELF") {
            return Err(invalid("not an ELF file".into()));
        }
        let h = bytes.get(..EHDR_SIZE).ok_or_else(|| {
            invalid(format!(
                "truncated ELF header ({} bytes, need {EHDR_SIZE})",
                bytes.len()
            ))
        })?;
        if h[4] != ELFCLASS64 {
            return Err(invalid(format!(
                "not a 64-bit ELF file (ELF class {})",
                h[4]
            )));
        }
        if h[5] != ELFDATA2LSB {
            return Err(invalid(format!(
                "not a little-endian ELF file (ELF data encoding {})",
                h[5]
            )));
        }
        // OSABI (h[7]) is deliberately not checked (docs/hvt-abi.md, The executable).
        let e_version = get_u32(h, 20);
        if e_version != EV_CURRENT {
            return Err(invalid(format!("unsupported ELF version {e_version}")));
        }
        let e_ehsize = get_u16(h, 52);
        if usize::from(e_ehsize) != EHDR_SIZE {
            return Err(invalid(format!(
                "bad ELF header size e_ehsize {e_ehsize}, expected {EHDR_SIZE}"
            )));
        }
        let e_phentsize = get_u16(h, 54);
        if usize::from(e_phentsize) != PHDR_SIZE {
            return Err(invalid(format!(
                "bad program header size e_phentsize {e_phentsize}, expected {PHDR_SIZE}"
            )));
        }
        let e_phnum = get_u16(h, 56);
        if e_phnum == 0 {
            return Err(invalid("no program headers (e_phnum 0)".into()));
        }
        let e_type = get_u16(h, 16);
        if e_type != ET_EXEC {
            return Err(invalid(format!(
                "not a static executable (e_type {e_type}, expected ET_EXEC 2)"
            )));
        }
        let e_machine = get_u16(h, 18);
        if e_machine != EM_X86_64 {
            return Err(invalid(format!(
                "not an x86_64 executable (e_machine {e_machine})"
            )));
        }

        // The table must be in the file before anything is allocated for it: at most
        // 65535 * 56 bytes, and never more than the file holds.
        let e_phoff = get_u64(h, 32);
        let table_len = u64::from(e_phnum) * PHDR_SIZE as u64;
        let table = slice(bytes, e_phoff, table_len).ok_or_else(|| {
            invalid(format!(
                "truncated program header table ({e_phnum} entries at offset {e_phoff:#x}, file is {} bytes)",
                bytes.len()
            ))
        })?;
        let phdrs = table
            .chunks_exact(PHDR_SIZE)
            .map(|p| Phdr {
                p_type: get_u32(p, 0),
                p_flags: get_u32(p, 4),
                p_offset: get_u64(p, 8),
                p_vaddr: get_u64(p, 16),
                p_filesz: get_u64(p, 32),
                p_memsz: get_u64(p, 40),
                p_align: get_u64(p, 48),
            })
            .collect();
        Ok(Elf {
            bytes,
            entry: get_u64(h, 24),
            phdrs,
        })
    }
}
