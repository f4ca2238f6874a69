//! The manifest, `struct mft` (docs/hvt-abi.md, Manifest): the devices a unikernel declares in its
//! MFT1 note, the capability list the monitor attaches host resources against, and the copy the
//! guest receives.
//!
//! The note is untrusted: [`Manifest::parse`] applies every rule of docs/hvt-abi.md, Manifest (plus
//! the device-name and uniqueness rules the command line relies on) before anything is used.
//! Entries are kept as the 104 bytes the executable declared; [`Manifest::encode`] fills in what
//! the monitor attached and nothing else.

use sturdy_abi::mft::{
    mft_size, MftEntry, MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC, MFT_HEADER_SIZE, MFT_MAX_ENTRIES,
    MFT_NAME_MAX, MFT_RESERVED_FIRST, MFT_VERSION,
};
use sturdy_abi::{get_u32, put_u16, put_u64};

type RawEntry = [u8; MftEntry::SIZE];

/// The type of a user device (`mft_entry.type < RESERVED_FIRST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Block,
    Net,
    /// A user type sturdy does not support: declared, so it must be attached, but it never can be.
    Other(u32),
}

/// A device the unikernel declares; the monitor must attach every one of them (docs/hvt-abi.md,
/// Manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Index in `e[]`, what the guest passes in hypercalls; the first user device is 1.
    pub handle: u64,
    /// `[A-Za-z0-9]{1,67}`, unique in the manifest.
    pub name: String,
    pub kind: DeviceKind,
}

/// A validated manifest and what the monitor has attached to it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Every entry, entry 0 included, as the executable declared it.
    entries: Vec<RawEntry>,
    /// The user devices (type < RESERVED_FIRST), in handle order.
    devices: Vec<Device>,
    /// By handle: the `u` union the monitor filled when it attached the device.
    attached: Vec<Option<[u8; 16]>>,
}

/// Why the MFT1 note was refused; printed after "Solo5 manifest is invalid: ".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("{size} bytes is smaller than the {MFT_HEADER_SIZE}-byte header")]
    TooSmall { size: usize },
    #[error("version {0}, expected {MFT_VERSION}")]
    Version(u32),
    #[error("{0} entries, at most {MFT_MAX_ENTRIES}")]
    TooManyEntries(u32),
    #[error("{entries} entries need {expected} bytes, note has {size}")]
    Size {
        entries: u32,
        expected: usize,
        size: usize,
    },
    #[error("no entries (entry 0 is required)")]
    NoEntries,
    #[error("entry 0 must have type RESERVED_FIRST ({MFT_RESERVED_FIRST:#x}), has {0:#x}")]
    FirstEntryType(u32),
    #[error("entry 0 must have an empty name")]
    FirstEntryName,
    #[error("entry {0}: name is not NUL-terminated within 68 bytes")]
    NameNotTerminated(usize),
    #[error("entry {0}: attached is already set in the executable")]
    Attached(usize),
    #[error("entry {0}: empty device name")]
    EmptyName(usize),
    #[error("entry {index}: device name \"{name}\" is not [A-Za-z0-9]{{1,67}}")]
    BadName { index: usize, name: String },
    #[error("duplicate device name \"{name}\" (entries {first} and {second})")]
    DuplicateName {
        name: String,
        first: usize,
        second: usize,
    },
}

impl Manifest {
    /// Validates `desc`, the usable MFT1 descriptor (docs/hvt-abi.md, Notes: after its 4 bytes of
    /// padding).
    pub fn parse(desc: &[u8]) -> Result<Manifest, ManifestError> {
        // docs/hvt-abi.md, Manifest: the note's rules, checked in upstream's order.
        let size = desc.len();
        if size < MFT_HEADER_SIZE {
            return Err(ManifestError::TooSmall { size });
        }
        let (version, entries) = (get_u32(desc, 0), get_u32(desc, 4));
        if version != MFT_VERSION {
            return Err(ManifestError::Version(version));
        }
        if entries > MFT_MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries(entries));
        }
        let expected = mft_size(entries as usize);
        if size != expected {
            return Err(ManifestError::Size {
                entries,
                expected,
                size,
            });
        }
        if entries < 1 {
            return Err(ManifestError::NoEntries);
        }

        let raw: Vec<RawEntry> = desc[MFT_HEADER_SIZE..]
            .chunks_exact(MftEntry::SIZE)
            .map(|c| c.try_into().expect("chunks_exact yields whole entries"))
            .collect();
        let first_type = entry_type(&raw[0]);
        if first_type != MFT_RESERVED_FIRST {
            return Err(ManifestError::FirstEntryType(first_type));
        }
        if raw[0][MftEntry::OFF_NAME] != 0 {
            return Err(ManifestError::FirstEntryName);
        }

        let mut devices: Vec<Device> = Vec::new();
        for (index, e) in raw.iter().enumerate() {
            if e[MftEntry::OFF_NAME + MFT_NAME_MAX] != 0 {
                return Err(ManifestError::NameNotTerminated(index));
            }
            if e[MftEntry::OFF_ATTACHED] != 0 {
                return Err(ManifestError::Attached(index));
            }
            let type_ = entry_type(e);
            // Entry 0 and other reserved types are not devices: kept as they are, never attached.
            if index == 0 || type_ >= MFT_RESERVED_FIRST {
                continue;
            }
            let name = device_name(index, e)?;
            if let Some(d) = devices.iter().find(|d| d.name == name) {
                return Err(ManifestError::DuplicateName {
                    name,
                    first: d.handle as usize,
                    second: index,
                });
            }
            let kind = match type_ {
                MFT_DEV_BLOCK_BASIC => DeviceKind::Block,
                MFT_DEV_NET_BASIC => DeviceKind::Net,
                other => DeviceKind::Other(other),
            };
            devices.push(Device {
                handle: index as u64,
                name,
                kind,
            });
        }
        let attached = vec![None; raw.len()];
        Ok(Manifest {
            entries: raw,
            devices,
            attached,
        })
    }

    /// The user devices (handle >= 1), in handle order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The user device called `name`.
    pub fn find(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// Records that block device `handle` is attached, with this geometry.
    ///
    /// # Panics
    /// If `handle` is not a declared block device: the caller looks handles up with [`find`]
    /// and checks the kind, so anything else is a bug in the monitor.
    ///
    /// [`find`]: Manifest::find
    pub fn attach_block(&mut self, handle: u64, capacity: u64, block_size: u16) {
        let mut u = [0u8; 16];
        put_u64(&mut u, MftEntry::U_OFF_CAPACITY, capacity);
        put_u16(&mut u, MftEntry::U_OFF_BLOCK_SIZE, block_size);
        self.attach(handle, DeviceKind::Block, u);
    }

    /// Records that network device `handle` is attached, with this MAC address and MTU.
    ///
    /// # Panics
    /// If `handle` is not a declared network device (see [`Manifest::attach_block`]).
    pub fn attach_net(&mut self, handle: u64, mac: [u8; 6], mtu: u16) {
        let mut u = [0u8; 16];
        u[MftEntry::U_OFF_MAC..MftEntry::U_OFF_MAC + 6].copy_from_slice(&mac);
        put_u16(&mut u, MftEntry::U_OFF_MTU, mtu);
        self.attach(handle, DeviceKind::Net, u);
    }

    fn attach(&mut self, handle: u64, kind: DeviceKind, u: [u8; 16]) {
        let declared = self
            .devices
            .iter()
            .any(|d| d.handle == handle && d.kind == kind);
        assert!(
            declared,
            "attaching handle {handle} as {kind:?}, which the manifest does not declare"
        );
        self.attached[handle as usize] = Some(u);
    }

    /// The first declared device not attached yet: the monitor must refuse to start the guest
    /// ("Device 'NAME' of type TYPE declared but not attached.", docs/hvt-abi.md, Manifest).
    pub fn first_unattached(&self) -> Option<&Device> {
        self.devices.iter().find(|d| !self.is_attached(d.handle))
    }

    /// Whether device `handle` is attached (false for any handle that is not a device).
    pub fn is_attached(&self, handle: u64) -> bool {
        usize::try_from(handle)
            .ok()
            .and_then(|h| self.attached.get(h))
            .is_some_and(Option::is_some)
    }

    /// The whole `struct mft` as the guest must see it (docs/hvt-abi.md, Manifest): the declared
    /// entries, with `attached = 1` and the `u` union filled for attached devices. `b` is
    /// monitor-private and sturdy keeps nothing there: it is 0 in every device entry, so no host
    /// file descriptor ever reaches the guest. Reserved entries are passed on unchanged.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(mft_size(self.entries.len()));
        out.extend_from_slice(&MFT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (handle, raw) in self.entries.iter().enumerate() {
            let mut e = *raw;
            if handle != 0 && entry_type(raw) < MFT_RESERVED_FIRST {
                put_u64(&mut e, MftEntry::OFF_B, 0);
            }
            if let Some(u) = self.attached[handle] {
                e[MftEntry::OFF_U..MftEntry::OFF_U + 16].copy_from_slice(&u);
                e[MftEntry::OFF_ATTACHED] = 1;
            }
            out.extend_from_slice(&e);
        }
        out
    }
}

fn entry_type(e: &RawEntry) -> u32 {
    get_u32(e, MftEntry::OFF_TYPE)
}

/// The name of user entry `index`: `[A-Za-z0-9]{1,67}` up to its NUL (docs/hvt-abi.md, Manifest).
fn device_name(index: usize, e: &RawEntry) -> Result<String, ManifestError> {
    let field = &e[MftEntry::OFF_NAME..MftEntry::OFF_NAME + MFT_NAME_MAX];
    let len = field.iter().position(|&c| c == 0).unwrap_or(MFT_NAME_MAX);
    let name = &field[..len];
    if name.is_empty() {
        return Err(ManifestError::EmptyName(index));
    }
    if !name.iter().all(u8::is_ascii_alphanumeric) {
        return Err(ManifestError::BadName {
            index,
            name: name.escape_ascii().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sturdy_abi::mft::{Mft, MFT_DEV_BLOCK_BASIC as BLOCK, MFT_DEV_NET_BASIC as NET};
    use sturdy_abi::{get_u16, get_u64, put_u32};

    /// A declared entry, as a guest's note holds it.
    pub(crate) fn entry(name: &[u8], type_: u32) -> RawEntry {
        let mut e = [0u8; MftEntry::SIZE];
        e[..name.len()].copy_from_slice(name);
        put_u32(&mut e, MftEntry::OFF_TYPE, type_);
        e
    }

    /// A whole `struct mft` with these entries.
    pub(crate) fn mft(entries: &[RawEntry]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&MFT_VERSION.to_le_bytes());
        m.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        entries.iter().for_each(|e| m.extend_from_slice(e));
        m
    }

    fn reserved() -> RawEntry {
        entry(b"", MFT_RESERVED_FIRST)
    }

    /// Entry 0 then `devices`.
    fn with_devices(devices: &[(&str, u32)]) -> Vec<u8> {
        let mut e = vec![reserved()];
        e.extend(devices.iter().map(|(n, t)| entry(n.as_bytes(), *t)));
        mft(&e)
    }

    fn err(desc: &[u8]) -> String {
        Manifest::parse(desc)
            .expect_err("manifest accepted")
            .to_string()
    }

    #[test]
    fn helpers_match_the_abi_crate_layout() {
        // What a guest declares with sturdy_abi::mft::Mft has exactly these bytes.
        let declared = Mft::<3>::new(&[MftEntry::block("disk"), MftEntry::net("service0")]);
        assert_eq!(std::mem::size_of_val(&declared), mft_size(3));
        let ours = with_devices(&[("disk", BLOCK), ("service0", NET)]);
        assert_eq!(ours.len(), mft_size(3));
        assert_eq!(
            get_u32(&ours, 8 + 104 + MftEntry::OFF_TYPE),
            declared.e[1].type_
        );
        assert_eq!(&ours[8 + 208..8 + 208 + 8], &declared.e[2].name[..8]);
    }

    #[test]
    fn parses_devices_in_handle_order() {
        let m = Manifest::parse(&with_devices(&[
            ("disk", BLOCK),
            ("net0", NET),
            ("weird", 7),
        ]))
        .unwrap();
        assert_eq!(
            m.devices(),
            &[
                Device {
                    handle: 1,
                    name: "disk".into(),
                    kind: DeviceKind::Block
                },
                Device {
                    handle: 2,
                    name: "net0".into(),
                    kind: DeviceKind::Net
                },
                Device {
                    handle: 3,
                    name: "weird".into(),
                    kind: DeviceKind::Other(7)
                },
            ]
        );
        assert_eq!(m.find("net0").map(|d| d.handle), Some(2));
        assert_eq!(m.find("net"), None);
        assert_eq!(m.find(""), None);
    }

    #[test]
    fn no_devices() {
        let m = Manifest::parse(&with_devices(&[])).unwrap();
        assert!(m.devices().is_empty());
        assert!(m.first_unattached().is_none());
        assert_eq!(m.encode(), with_devices(&[]));
    }

    #[test]
    fn sixty_three_devices_is_the_maximum() {
        let names: Vec<String> = (0..63).map(|i| format!("blk{i}")).collect();
        let devices: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), BLOCK)).collect();
        let m = Manifest::parse(&with_devices(&devices)).unwrap();
        assert_eq!(m.devices().len(), 63);
        assert_eq!(m.devices()[62].handle, 63);

        let mut too_many = with_devices(&devices);
        too_many.extend_from_slice(&entry(b"one", BLOCK));
        put_u32(&mut too_many, 4, 65);
        assert_eq!(err(&too_many), "65 entries, at most 64");
    }

    #[test]
    fn header_rules() {
        assert_eq!(
            err(&[1, 0, 0, 0]),
            "4 bytes is smaller than the 8-byte header"
        );
        assert_eq!(err(&[]), "0 bytes is smaller than the 8-byte header");

        let mut m = with_devices(&[("disk", BLOCK)]);
        put_u32(&mut m, 0, 2);
        assert_eq!(err(&m), "version 2, expected 1");

        let mut m = with_devices(&[("disk", BLOCK)]);
        put_u32(&mut m, 4, u32::MAX);
        assert_eq!(err(&m), "4294967295 entries, at most 64");

        let m = with_devices(&[("disk", BLOCK)]);
        assert_eq!(
            err(&m[..m.len() - 4]),
            "2 entries need 216 bytes, note has 212"
        );
        let mut longer = m.clone();
        longer.push(0);
        assert_eq!(err(&longer), "2 entries need 216 bytes, note has 217");
        let mut m3 = m.clone();
        put_u32(&mut m3, 4, 3);
        assert_eq!(err(&m3), "3 entries need 320 bytes, note has 216");

        assert_eq!(err(&mft(&[])), "no entries (entry 0 is required)");
    }

    #[test]
    fn entry_zero_must_be_reserved_and_unnamed() {
        assert_eq!(
            err(&mft(&[entry(b"", BLOCK)])),
            "entry 0 must have type RESERVED_FIRST (0x40000000), has 0x1"
        );
        assert_eq!(
            err(&mft(&[entry(b"x", MFT_RESERVED_FIRST)])),
            "entry 0 must have an empty name"
        );
        // A device first, even a valid one, is not entry 0.
        assert!(
            err(&mft(&[entry(b"disk", BLOCK), reserved()])).starts_with("entry 0 must have type")
        );
    }

    #[test]
    fn names_must_be_terminated() {
        let mut e = entry(&[b'a'; 67], BLOCK);
        assert!(
            Manifest::parse(&mft(&[reserved(), e])).is_ok(),
            "67 characters is the longest name"
        );
        e[67] = b'a';
        assert_eq!(
            err(&mft(&[reserved(), e])),
            "entry 1: name is not NUL-terminated within 68 bytes"
        );
        // Entry 0 and reserved entries too (upstream checks every entry).
        let mut r = reserved();
        r[67] = b'x';
        assert_eq!(
            err(&mft(&[reserved(), r])),
            "entry 1: name is not NUL-terminated within 68 bytes"
        );
    }

    #[test]
    fn attached_must_be_clear() {
        let mut e = entry(b"disk", BLOCK);
        e[MftEntry::OFF_ATTACHED] = 1;
        assert_eq!(
            err(&mft(&[reserved(), e])),
            "entry 1: attached is already set in the executable"
        );
        let mut r = reserved();
        r[MftEntry::OFF_ATTACHED] = 0x80;
        assert_eq!(
            err(&mft(&[r])),
            "entry 0: attached is already set in the executable"
        );
    }

    #[test]
    fn device_names_are_alphanumeric_and_unique() {
        assert_eq!(
            err(&with_devices(&[("", BLOCK)])),
            "entry 1: empty device name"
        );
        assert_eq!(
            err(&with_devices(&[("ok", NET), ("my-disk", BLOCK)])),
            "entry 2: device name \"my-disk\" is not [A-Za-z0-9]{1,67}"
        );
        let e = entry(b"d\xffisk\n", BLOCK);
        assert_eq!(
            err(&mft(&[reserved(), e])),
            "entry 1: device name \"d\\xffisk\\n\" is not [A-Za-z0-9]{1,67}"
        );
        assert_eq!(
            err(&with_devices(&[
                ("disk", BLOCK),
                ("net", NET),
                ("disk", NET)
            ])),
            "duplicate device name \"disk\" (entries 1 and 3)"
        );
        // Bytes after the NUL are not part of the name.
        let mut e = entry(b"disk", BLOCK);
        e[10] = b'-';
        let m = Manifest::parse(&mft(&[reserved(), e])).unwrap();
        assert_eq!(m.devices()[0].name, "disk");
    }

    #[test]
    fn reserved_entries_are_not_devices_and_pass_through() {
        let mut r = entry(b"any-name", MFT_RESERVED_FIRST + 5);
        r[MftEntry::OFF_U] = 0x42;
        put_u64(&mut r, MftEntry::OFF_B, 99);
        let desc = mft(&[reserved(), entry(b"disk", BLOCK), r]);
        let mut m = Manifest::parse(&desc).unwrap();
        assert_eq!(m.devices().len(), 1);
        assert!(!m.is_attached(2));
        m.attach_block(1, 4096, 512);
        assert!(
            m.first_unattached().is_none(),
            "reserved entries need not be attached"
        );
        let out = m.encode();
        assert_eq!(&out[8 + 208..], &r[..], "reserved entry unchanged");
    }

    #[test]
    fn attach_and_encode() {
        let mut desc = with_devices(&[("disk", BLOCK), ("service", NET), ("odd", 9)]);
        // A guest-supplied `b` is not passed back.
        put_u64(&mut desc, 8 + 104 + MftEntry::OFF_B, 0xdead);
        let mut m = Manifest::parse(&desc).unwrap();
        assert_eq!(m.first_unattached().map(|d| d.name.as_str()), Some("disk"));

        m.attach_block(1, 1 << 20, 4096);
        assert!(m.is_attached(1));
        assert!(!m.is_attached(2));
        assert!(!m.is_attached(0));
        assert!(!m.is_attached(u64::MAX));
        assert_eq!(
            m.first_unattached().map(|d| d.name.as_str()),
            Some("service")
        );
        m.attach_net(2, [2, 0, 0, 0, 0, 7], 9000);
        assert_eq!(
            m.first_unattached().map(|d| &d.kind),
            Some(&DeviceKind::Other(9))
        );

        let out = m.encode();
        assert_eq!(out.len(), mft_size(4));
        assert_eq!(&out[..8], &desc[..8]);
        assert_eq!(&out[8..8 + 104], &desc[8..8 + 104], "entry 0 unchanged");

        let disk = &out[8 + 104..8 + 208];
        assert_eq!(&disk[..5], b"disk\0");
        assert_eq!(get_u32(disk, MftEntry::OFF_TYPE), BLOCK);
        assert_eq!(
            get_u64(disk, MftEntry::OFF_U + MftEntry::U_OFF_CAPACITY),
            1 << 20
        );
        assert_eq!(
            get_u16(disk, MftEntry::OFF_U + MftEntry::U_OFF_BLOCK_SIZE),
            4096
        );
        assert_eq!(get_u64(disk, MftEntry::OFF_B), 0);
        assert_eq!(disk[MftEntry::OFF_ATTACHED], 1);

        let net = &out[8 + 208..8 + 312];
        assert_eq!(
            &net[MftEntry::OFF_U..MftEntry::OFF_U + 6],
            &[2, 0, 0, 0, 0, 7]
        );
        assert_eq!(get_u16(net, MftEntry::OFF_U + MftEntry::U_OFF_MTU), 9000);
        assert_eq!(net[MftEntry::OFF_ATTACHED], 1);

        let odd = &out[8 + 312..];
        assert_eq!(odd[MftEntry::OFF_ATTACHED], 0);
        assert_eq!(odd, &desc[8 + 312..]);

        // Decoding the guest's copy with the ABI crate's accessors gives back what was attached.
        let e: MftEntry = MftEntry {
            name: disk[..68].try_into().unwrap(),
            type_: BLOCK,
            u: disk[72..88].try_into().unwrap(),
            b: 0,
            attached: true,
            _pad: [0; 7],
        };
        assert_eq!(
            (e.name_str(), e.capacity(), e.block_size()),
            ("disk", 1 << 20, 4096)
        );
    }

    #[test]
    #[should_panic(expected = "does not declare")]
    fn attaching_the_wrong_kind_is_a_monitor_bug() {
        let mut m = Manifest::parse(&with_devices(&[("disk", BLOCK)])).unwrap();
        m.attach_net(1, [0; 6], 1500);
    }

    #[test]
    #[should_panic(expected = "does not declare")]
    fn attaching_entry_zero_is_a_monitor_bug() {
        let mut m = Manifest::parse(&with_devices(&[("disk", BLOCK)])).unwrap();
        m.attach_block(0, 512, 512);
    }
}
