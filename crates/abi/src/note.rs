//! ELF notes (docs/hvt-abi.md, Notes): the ABI1 and MFT1 notes of the Solo5 ABI, and the generic
//! layout a guest uses to declare a note from Rust with `#[link_section]`.

use crate::mft::Mft;

/// `n_namesz` + `n_descsz` + `n_type` + 8 name bytes: the smallest note a monitor inspects.
pub const NOTE_HEADER_SIZE: usize = 20;
/// Name of Solo5's notes, NUL included (`n_namesz` == 6).
pub const SOLO5_NOTE_NAME: &[u8; 6] = b"Solo5\0";

/// ABI1 note: `n_type`, alignment and largest `n_descsz`.
pub const ABI1_TYPE: u32 = 0x3149_4241;
pub const ABI1_ALIGN: usize = 4;
pub const ABI1_MAX_DESCSZ: usize = 32;

/// MFT1 note: `n_type`, alignment and largest `n_descsz`.
pub const MFT1_TYPE: u32 = 0x3154_464d;
pub const MFT1_ALIGN: usize = 8;
pub const MFT1_MAX_DESCSZ: usize = 6668;

/// `abi1_info.abi_target` values.
pub const ABI_TARGET_HVT: u32 = 1;
pub const ABI_TARGET_SPT: u32 = 2;
pub const ABI_TARGET_VIRTIO: u32 = 3;
pub const ABI_TARGET_MUEN: u32 = 4;
pub const ABI_TARGET_GENODE: u32 = 5;
pub const ABI_TARGET_XEN: u32 = 6;

/// `struct abi1_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Abi1Info {
    pub abi_target: u32,
    pub abi_version: u32,
    pub reserved0: u32,
    pub reserved1: u32,
}

/// An ELF note as laid out in a guest image: header, name padded to 8 bytes, descriptor.
/// Alignment 4: the descriptor starts at offset 20.
#[repr(C, align(4))]
pub struct Note4<D> {
    pub namesz: u32,
    pub descsz: u32,
    pub type_: u32,
    pub name: [u8; 8],
    pub desc: D,
}

/// The MFT1 note: alignment 8, so 4 bytes of padding before the manifest (counted in descsz).
#[repr(C, align(8))]
pub struct MftNote<const N: usize> {
    pub namesz: u32,
    pub descsz: u32,
    pub type_: u32,
    pub name: [u8; 8],
    pub _pad: u32,
    pub mft: Mft<N>,
}

/// The ABI1 note every hvt guest carries.
pub const fn abi1_note() -> Note4<Abi1Info> {
    Note4 {
        namesz: 6,
        descsz: core::mem::size_of::<Abi1Info>() as u32,
        type_: ABI1_TYPE,
        name: *b"Solo5\0\0\0",
        desc: Abi1Info {
            abi_target: ABI_TARGET_HVT,
            abi_version: crate::HVT_ABI_VERSION,
            reserved0: 0,
            reserved1: 0,
        },
    }
}

/// The MFT1 note for `mft`.
pub const fn mft_note<const N: usize>(mft: Mft<N>) -> MftNote<N> {
    MftNote {
        namesz: 6,
        descsz: (4 + core::mem::size_of::<Mft<N>>()) as u32,
        type_: MFT1_TYPE,
        name: *b"Solo5\0\0\0",
        _pad: 0,
        mft,
    }
}

/// Rounds `v` up to a multiple of `align` (a power of two), or `None` on overflow.
pub const fn align_up(v: u64, align: u64) -> Option<u64> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

const _: () = assert!(core::mem::offset_of!(MftNote<2>, mft) == 24);
const _: () = assert!(core::mem::offset_of!(Note4<Abi1Info>, desc) == NOTE_HEADER_SIZE);
