//! The manifest, `struct mft` (docs/hvt-abi.md, Manifest): the devices a unikernel declares,
//! carried in the MFT1 note. The monitor validates the note, fills in its own copy and places it in
//! guest memory.

/// `struct mft` version.
pub const MFT_VERSION: u32 = 1;
/// Most entries a manifest may have, including entry 0.
pub const MFT_MAX_ENTRIES: u32 = 64;
/// Size of the manifest header (version, entries).
pub const MFT_HEADER_SIZE: usize = 8;
/// Longest device name, excluding the NUL.
pub const MFT_NAME_MAX: usize = 67;

/// Device types (`mft_entry.type`).
pub const MFT_DEV_BLOCK_BASIC: u32 = 1;
pub const MFT_DEV_NET_BASIC: u32 = 2;
/// Type of entry 0, which must have an empty name.
pub const MFT_RESERVED_FIRST: u32 = 1 << 30;

/// Size of the manifest for `entries` entries.
pub const fn mft_size(entries: usize) -> usize {
    MFT_HEADER_SIZE + MftEntry::SIZE * entries
}

/// `struct mft_entry`, 104 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MftEntry {
    /// NUL-terminated `[A-Za-z0-9]{1,67}`.
    pub name: [u8; 68],
    pub type_: u32,
    /// `block_basic { u64 capacity; u16 block_size; }` or `net_basic { u8 mac[6]; u16 mtu; }`.
    pub u: [u8; 16],
    /// Monitor-private.
    pub b: u64,
    pub attached: bool,
    pub _pad: [u8; 7],
}

impl MftEntry {
    pub const SIZE: usize = 104;
    pub const OFF_NAME: usize = 0;
    pub const OFF_TYPE: usize = 68;
    pub const OFF_U: usize = 72;
    pub const OFF_B: usize = 88;
    pub const OFF_ATTACHED: usize = 96;
    /// Within `u`: block_basic.capacity, block_basic.block_size, net_basic.mac, net_basic.mtu.
    pub const U_OFF_CAPACITY: usize = 0;
    pub const U_OFF_BLOCK_SIZE: usize = 8;
    pub const U_OFF_MAC: usize = 0;
    pub const U_OFF_MTU: usize = 6;

    /// Entry 0 of every manifest.
    pub const fn reserved_first() -> Self {
        Self::new("", MFT_RESERVED_FIRST)
    }

    /// A block device declaration named `name`.
    pub const fn block(name: &str) -> Self {
        Self::new(name, MFT_DEV_BLOCK_BASIC)
    }

    /// A network device declaration named `name`.
    pub const fn net(name: &str) -> Self {
        Self::new(name, MFT_DEV_NET_BASIC)
    }

    /// An entry of `type_` named `name`. Panics (at compile time when used in a const) if the
    /// name is longer than [`MFT_NAME_MAX`] or not alphanumeric.
    pub const fn new(name: &str, type_: u32) -> Self {
        let bytes = name.as_bytes();
        assert!(
            bytes.len() <= MFT_NAME_MAX,
            "manifest device name longer than 67 bytes"
        );
        let mut n = [0u8; 68];
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                bytes[i].is_ascii_alphanumeric(),
                "manifest device names are [A-Za-z0-9]+"
            );
            n[i] = bytes[i];
            i += 1;
        }
        MftEntry {
            name: n,
            type_,
            u: [0; 16],
            b: 0,
            attached: false,
            _pad: [0; 7],
        }
    }

    /// The name up to its NUL (empty if the name is not valid UTF-8).
    pub fn name_str(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.name.len());
        core::str::from_utf8(&self.name[..len]).unwrap_or("")
    }

    pub fn capacity(&self) -> u64 {
        crate::get_u64(&self.u, Self::U_OFF_CAPACITY)
    }

    pub fn block_size(&self) -> u16 {
        crate::get_u16(&self.u, Self::U_OFF_BLOCK_SIZE)
    }

    pub fn mac(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.u[Self::U_OFF_MAC..Self::U_OFF_MAC + 6]);
        m
    }

    pub fn mtu(&self) -> u16 {
        crate::get_u16(&self.u, Self::U_OFF_MTU)
    }
}

/// `struct mft` with `N` entries (entry 0 included), as a guest declares it in its MFT1 note.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Mft<const N: usize> {
    pub version: u32,
    pub entries: u32,
    pub e: [MftEntry; N],
}

impl<const N: usize> Mft<N> {
    /// A manifest whose entry 0 is `RESERVED_FIRST`, followed by `devices`.
    /// `devices` must have `N - 1` elements (checked at compile time in a const).
    pub const fn new(devices: &[MftEntry]) -> Self {
        assert!(devices.len() + 1 == N, "Mft<N> needs exactly N-1 devices");
        assert!(
            N as u32 <= MFT_MAX_ENTRIES,
            "a manifest has at most 63 devices"
        );
        let mut e = [MftEntry::reserved_first(); N];
        let mut i = 0;
        while i < devices.len() {
            e[i + 1] = devices[i];
            i += 1;
        }
        Mft {
            version: MFT_VERSION,
            entries: N as u32,
            e,
        }
    }
}

const _: () = assert!(core::mem::size_of::<MftEntry>() == MftEntry::SIZE);
const _: () = assert!(core::mem::offset_of!(MftEntry, u) == MftEntry::OFF_U);
const _: () = assert!(core::mem::offset_of!(MftEntry, b) == MftEntry::OFF_B);
const _: () = assert!(core::mem::offset_of!(MftEntry, attached) == MftEntry::OFF_ATTACHED);
const _: () = assert!(core::mem::size_of::<Mft<3>>() == mft_size(3));
