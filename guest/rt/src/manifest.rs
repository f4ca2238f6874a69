//! The monitor's copy of the manifest (docs/hvt-abi.md, Manifest), at `hvt_boot_info.mft`: the
//! devices the guest declared, each attached and described (capacity and block size, or MAC address
//! and MTU). A device's handle is its index in the manifest.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use sturdy_abi::mft::{MftEntry, MFT_HEADER_SIZE, MFT_MAX_ENTRIES, MFT_VERSION};
use sturdy_abi::BootInfo;

use crate::Error;

/// The entries of the manifest copy, set once by boot.
static ENTRIES: AtomicPtr<MftEntry> = AtomicPtr::new(core::ptr::null_mut());
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Finds and checks the manifest copy. The monitor is trusted, but a mistake there should stop
/// the guest with a message rather than turn into undefined behaviour here.
pub(crate) fn init(boot_info: &BootInfo) -> Result<(), &'static str> {
    let base = boot_info.mft;
    let header_end = base.checked_add(MFT_HEADER_SIZE as u64);
    if header_end.is_none_or(|end| end > boot_info.mem_size) {
        return Err("manifest copy outside guest memory");
    }
    if !base.is_multiple_of(8) {
        return Err("manifest copy misaligned");
    }
    // SAFETY: the header lies inside guest memory (checked above) and is 8-byte aligned.
    let (version, count) = unsafe { (*(base as *const u32), *((base + 4) as *const u32)) };
    if version != MFT_VERSION || count == 0 || count > MFT_MAX_ENTRIES {
        return Err("malformed manifest copy");
    }
    let entries = base + MFT_HEADER_SIZE as u64;
    let size = u64::from(count) * MftEntry::SIZE as u64;
    if entries + size > boot_info.mem_size {
        return Err("manifest copy outside guest memory");
    }
    for i in 0..u64::from(count) {
        let attached = entries + i * MftEntry::SIZE as u64 + MftEntry::OFF_ATTACHED as u64;
        // SAFETY: inside the manifest copy, checked to lie in guest memory. Read as a byte
        // because a `bool` other than 0 or 1 would be undefined behaviour.
        if unsafe { *(attached as *const u8) } > 1 {
            return Err("malformed manifest copy");
        }
    }
    ENTRIES.store(entries as *mut MftEntry, Ordering::Relaxed);
    COUNT.store(count as usize, Ordering::Relaxed);
    Ok(())
}

fn entries() -> &'static [MftEntry] {
    let ptr = ENTRIES.load(Ordering::Relaxed);
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: `init` checked that `COUNT` entries at `ptr` lie in guest memory, are aligned and
    // hold valid `bool`s; the monitor never changes the copy, and the guest cannot (it is
    // read-only to the guest, docs/hvt-abi.md, Memory and CPU).
    unsafe { core::slice::from_raw_parts(ptr, COUNT.load(Ordering::Relaxed)) }
}

/// The attached device `name` of type `type_`, and its handle.
pub(crate) fn open(name: &str, type_: u32) -> Result<(u64, &'static MftEntry), Error> {
    // Entry 0 is the reserved first entry, whose name is empty (docs/hvt-abi.md, Manifest).
    let (handle, entry) = entries()
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, e)| e.name_str() == name)
        .ok_or(Error::NoSuchDevice)?;
    if entry.type_ != type_ {
        return Err(Error::WrongDeviceType);
    }
    if !entry.attached {
        return Err(Error::NotAttached);
    }
    Ok((handle as u64, entry))
}
