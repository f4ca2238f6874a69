//! sturdy's own ELF note (see `docs/sturdy-note.md`): how a guest tells the monitor that it may be
//! run deprivileged (at CPL 3 under monitor-owned page tables, GDT, IDT and TSS).
//!
//! Layout, in its own PT_NOTE segment, alignment 4:
//! ```text
//!  0 u32 n_namesz = 7          "sturdy\0"
//!  4 u32 n_descsz = 8
//!  8 u32 n_type   = 0x31445453 ("STD1")
//! 12 u8  name[8]  = "sturdy\0\0"
//! 20 u32 version  = 1
//! 24 u32 flags    (bit 0: DEPRIVILEGED; other bits must be 0)
//! ```
//! Upstream monitors ignore notes whose name is not "Solo5", so a guest carrying this note still
//! runs on upstream solo5-hvt (at CPL 0, where it must then not depend on the monitor's IDT).

use crate::note::Note4;

pub const STURDY_NOTE_NAME: &[u8; 7] = b"sturdy\0";
pub const STURDY_NOTE_TYPE: u32 = 0x3144_5453;
pub const STURDY_NOTE_VERSION: u32 = 1;
pub const STURDY_NOTE_DESCSZ: usize = 8;

/// The guest executes no privileged instruction: run it at CPL 3.
pub const FLAG_DEPRIVILEGED: u32 = 1 << 0;
/// Flags this version of the ABI defines.
pub const KNOWN_FLAGS: u32 = FLAG_DEPRIVILEGED;

/// Descriptor of the sturdy note.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SturdyInfo {
    pub version: u32,
    pub flags: u32,
}

/// The note a guest embeds (in section `.note.sturdy`) to declare `flags`.
pub const fn sturdy_note(flags: u32) -> Note4<SturdyInfo> {
    Note4 {
        namesz: 7,
        descsz: STURDY_NOTE_DESCSZ as u32,
        type_: STURDY_NOTE_TYPE,
        name: *b"sturdy\0\0",
        desc: SturdyInfo {
            version: STURDY_NOTE_VERSION,
            flags,
        },
    }
}

const _: () = assert!(core::mem::size_of::<SturdyInfo>() == STURDY_NOTE_DESCSZ);
