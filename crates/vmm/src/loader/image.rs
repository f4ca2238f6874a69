//! Test-only builder of hvt executables, written byte by byte (no linker, no goblin): the valid
//! image the loader tests start from, before they break one thing in it.

use sturdy_abi::mft::{MftEntry, MFT_RESERVED_FIRST};
use sturdy_abi::note::{ABI1_TYPE, ABI_TARGET_HVT, MFT1_TYPE};
use sturdy_abi::sturdy_note::{STURDY_NOTE_TYPE, STURDY_NOTE_VERSION};
use sturdy_abi::{put_u16, put_u32, put_u64, HVT_ABI_VERSION};

use super::elf::{PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};
use crate::manifest::tests::{entry, mft};

const PT_INTERP: u32 = 3;

/// One program header and what its segment holds.
#[derive(Clone, Debug)]
pub enum Part {
    Note(Vec<u8>),
    Load {
        vaddr: u64,
        memsz: u64,
        flags: u32,
        align: u64,
        data: Vec<u8>,
    },
    Other {
        p_type: u32,
        data: Vec<u8>,
    },
}

/// An executable to build: program headers in this order, segments packed after the table.
#[derive(Clone, Debug)]
pub struct Image {
    pub parts: Vec<Part>,
    pub entry: u64,
}

/// Program header indices in [`Image::hvt`].
pub const TEXT: usize = 1;
pub const RODATA: usize = 2;
pub const DATA: usize = 3;
pub const BSS: usize = 4;
pub const ABI1: usize = 6;
pub const MFT1: usize = 7;
/// Where [`Image::with_sturdy`] puts sturdy's note.
pub const STURDY: usize = 8;

/// `kernel_end` of [`Image::hvt`]: the aligned end of .data (.bss has no file contents, so it is
/// not a processed segment: docs/hvt-abi.md, Loading).
pub const HVT_KERNEL_END: u64 = 0x10_3000;
pub const MIB: u64 = 1 << 20;

/// Offset of program header `i` in a built image.
pub fn phdr_off(i: usize) -> usize {
    64 + 56 * i
}

/// Offsets of the fields of a program header.
pub const P_TYPE: usize = 0;
pub const P_FLAGS: usize = 4;
pub const P_OFFSET: usize = 8;
pub const P_VADDR: usize = 16;
pub const P_FILESZ: usize = 32;
pub const P_MEMSZ: usize = 40;
pub const P_ALIGN: usize = 48;

impl Image {
    /// A minimal valid hvt executable laid out like Solo5's: text (R X), rodata (R), data (RW),
    /// .bss (no file contents), the empty TLS PT_LOAD at 0, then the ABI1 and MFT1 notes.
    pub fn hvt() -> Image {
        let load = |vaddr, memsz, flags, data: Vec<u8>| Part::Load {
            vaddr,
            memsz,
            flags,
            align: 0x1000,
            data,
        };
        Image {
            parts: vec![
                Part::Other {
                    p_type: PT_INTERP,
                    data: b"/nonexistent/solo5/\0".to_vec(),
                },
                load(0x10_0000, 0x40, PF_R | PF_X, vec![0xf4; 0x40]),
                load(
                    0x10_1000,
                    0x20,
                    PF_R,
                    b"rodata rodata rodata rodata ro\0\0".to_vec(),
                ),
                load(0x10_2000, 0x800, PF_R | PF_W, vec![0xd5; 0x10]),
                load(0x10_3000, 0x1000, PF_R | PF_W, vec![]),
                load(0, 0, PF_R, vec![]),
                Part::Note(abi1_note(ABI_TARGET_HVT, HVT_ABI_VERSION)),
                Part::Note(mft1_note(&mft(&[entry(b"", MFT_RESERVED_FIRST)]))),
            ],
            entry: 0x10_0020,
        }
    }

    /// Appends sturdy's note (at [`STURDY`] when called on [`Image::hvt`]).
    pub fn with_sturdy(mut self, version: u32, flags: u32) -> Image {
        self.parts.push(Part::Note(sturdy_note(version, flags)));
        self
    }

    /// Replaces the manifest with one declaring `devices` after entry 0.
    pub fn with_devices(mut self, devices: &[(&str, u32)]) -> Image {
        let mut e = vec![entry(b"", MFT_RESERVED_FIRST)];
        e.extend(devices.iter().map(|(name, t)| entry(name.as_bytes(), *t)));
        self.parts[MFT1] = Part::Note(mft1_note(&mft(&e)));
        self
    }

    /// The file: header, program header table, then each segment at a 16-byte boundary.
    pub fn build(&self) -> Vec<u8> {
        let mut f = vec![0u8; phdr_off(self.parts.len())];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // ELFDATA2LSB
        f[6] = 1; // EI_VERSION
        put_u16(&mut f, 16, 2); // ET_EXEC
        put_u16(&mut f, 18, 62); // EM_X86_64
        put_u32(&mut f, 20, 1);
        put_u64(&mut f, 24, self.entry);
        put_u64(&mut f, 32, 64);
        put_u16(&mut f, 52, 64);
        put_u16(&mut f, 54, 56);
        put_u16(&mut f, 56, self.parts.len() as u16);
        for (i, part) in self.parts.iter().enumerate() {
            f.resize(f.len().next_multiple_of(16), 0);
            let offset = f.len() as u64;
            let (p_type, flags, vaddr, memsz, align, data) = match part {
                Part::Note(d) => (PT_NOTE, PF_R, 0, d.len() as u64, 8, d),
                Part::Load {
                    vaddr,
                    memsz,
                    flags,
                    align,
                    data,
                } => (PT_LOAD, *flags, *vaddr, *memsz, *align, data),
                Part::Other { p_type, data } => (*p_type, PF_R, 0, data.len() as u64, 1, data),
            };
            f.extend_from_slice(data);
            let p = phdr_off(i);
            put_u32(&mut f, p + P_TYPE, p_type);
            put_u32(&mut f, p + P_FLAGS, flags);
            put_u64(&mut f, p + P_OFFSET, offset);
            put_u64(&mut f, p + P_VADDR, vaddr);
            put_u64(&mut f, p + 24, vaddr); // p_paddr
            put_u64(&mut f, p + P_FILESZ, data.len() as u64);
            put_u64(&mut f, p + P_MEMSZ, memsz);
            put_u64(&mut f, p + P_ALIGN, align);
        }
        f
    }
}

/// A note: header, name padded to 4 bytes, then `desc` at `align` (the padding counted in
/// `n_descsz`, as Solo5's notes do).
pub fn note(name: &[u8], n_type: u32, align: usize, desc: &[u8]) -> Vec<u8> {
    let mut n = vec![0u8; 12];
    n.extend_from_slice(name);
    n.resize(n.len().next_multiple_of(4), 0);
    let pad = n.len().next_multiple_of(align) - n.len();
    put_u32(&mut n, 0, name.len() as u32);
    put_u32(&mut n, 4, (pad + desc.len()) as u32);
    put_u32(&mut n, 8, n_type);
    n.resize(n.len() + pad, 0);
    n.extend_from_slice(desc);
    n
}

pub fn abi1_note(target: u32, version: u32) -> Vec<u8> {
    let mut d = [0u8; 16];
    put_u32(&mut d, 0, target);
    put_u32(&mut d, 4, version);
    note(b"Solo5\0", ABI1_TYPE, 4, &d)
}

/// The MFT1 note carrying `mft` (a whole `struct mft`).
pub fn mft1_note(mft: &[u8]) -> Vec<u8> {
    note(b"Solo5\0", MFT1_TYPE, 8, mft)
}

pub fn sturdy_note(version: u32, flags: u32) -> Vec<u8> {
    let mut d = [0u8; 8];
    put_u32(&mut d, 0, version);
    put_u32(&mut d, 4, flags);
    note(b"sturdy\0", STURDY_NOTE_TYPE, 4, &d)
}

/// A valid sturdy note asking for deprivileged mode.
pub fn sturdy_deprivileged() -> Vec<u8> {
    sturdy_note(
        STURDY_NOTE_VERSION,
        sturdy_abi::sturdy_note::FLAG_DEPRIVILEGED,
    )
}

#[test]
fn note_layouts_match_the_abi_crate() {
    // The hand-written notes have the layout of the ones a guest embeds (sturdy_abi::note).
    let abi1 = abi1_note(ABI_TARGET_HVT, HVT_ABI_VERSION);
    assert_eq!(
        abi1.len(),
        std::mem::size_of::<sturdy_abi::note::Note4<sturdy_abi::note::Abi1Info>>()
    );
    let m = mft(&[entry(b"", MFT_RESERVED_FIRST), entry(b"disk", 1)]);
    assert_eq!(
        mft1_note(&m).len(),
        std::mem::size_of::<sturdy_abi::note::MftNote<2>>()
    );
    assert_eq!(&mft1_note(&m)[4..8], &(4 + m.len() as u32).to_le_bytes());
    assert_eq!(sturdy_deprivileged().len(), 28);
    assert_eq!(MftEntry::SIZE, 104);
}
