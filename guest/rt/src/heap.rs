//! The heap: `alloc` (`Box`, `Vec`, `String`, ...) works in every sturdy-rt guest.
//!
//! The heap is the guest memory between the end of the loaded image and the stack: from
//! `boot_info.kernel_end` up to [`STACK_SIZE`] below `boot_info.mem_size`, where the stack
//! starts (docs/hvt-abi.md, Memory and CPU, Boot information). `kernel_end` is the aligned end of
//! the last loaded segment (docs/hvt-abi.md, Loading); sturdy-rt.ld puts .bss in the same segment
//! as .data, after it, and keeps .data non-empty, so `kernel_end` is past .bss. The memory is
//! claimed on the first allocation, so guests that never allocate never run the allocator.
//!
//! The allocator is [talc](https://docs.rs/talc), behind a lock that only detects re-entrance
//! (there is one vCPU and nothing preempts it). Running out of memory is reported, with the
//! heap's size, and aborts the guest (status 255): `try_reserve` and friends abort too.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use talc::base::binning::Binning;
use talc::base::Talc;
use talc::lock_api::{GuardSend, RawMutex};
use talc::source::Source;
use talc::TalcLock;

use crate::{abort, println, start};

/// The memory left to the stack, below the top of guest memory. Nothing separates the stack
/// from the heap: a deeper stack overwrites heap memory.
pub(crate) const STACK_SIZE: u64 = 1 << 20;

const PAGE: u64 = 4096;

#[global_allocator]
static HEAP: Heap = Heap(TalcLock::new(GuestMemory::Unclaimed));

/// Bytes of heap, once claimed.
static HEAP_SIZE: AtomicUsize = AtomicUsize::new(0);

struct Heap(TalcLock<OneCpu, GuestMemory>);

// SAFETY: every method forwards to talc's allocator with the caller's arguments unchanged; a
// failed allocation never returns.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { self.0.alloc(layout) };
        if ptr.is_null() {
            out_of_memory(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if new.is_null() {
            out_of_memory(new_size);
        }
        new
    }
}

fn out_of_memory(size: usize) -> ! {
    let heap = HEAP_SIZE.load(Ordering::Relaxed);
    println!(
        "sturdy-rt: out of memory: cannot allocate {size} bytes; the heap has {} KiB \
         (guest memory less the image and {} KiB of stack): give the unikernel more with --mem",
        heap >> 10,
        STACK_SIZE >> 10
    );
    abort()
}

/// Where talc gets its memory: all of the heap region, on the first allocation.
#[derive(Debug)]
enum GuestMemory {
    Unclaimed,
    Claimed,
}

// SAFETY: `acquire` claims memory nothing else uses (see `region`) and never allocates.
unsafe impl Source for GuestMemory {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, _layout: Layout) -> Result<(), ()> {
        if let GuestMemory::Claimed = talc.source {
            return Err(());
        }
        talc.source = GuestMemory::Claimed;
        let (base, size) = region().ok_or(())?;
        // SAFETY: [base, base + size) is guest memory above the image and below the stack
        // (see `region`): no Rust object lives there, and only the allocator will touch it.
        unsafe { talc.claim(core::ptr::with_exposed_provenance_mut(base), size) }.ok_or(())?;
        HEAP_SIZE.store(size, Ordering::Relaxed);
        Ok(())
    }
}

/// The heap region: whole pages from `kernel_end` to [`STACK_SIZE`] below the top of memory.
fn region() -> Option<(usize, usize)> {
    let info = start::boot_info()?;
    let base = info.kernel_end.checked_next_multiple_of(PAGE)?;
    let top = info.mem_size.checked_sub(STACK_SIZE)? / PAGE * PAGE;
    let size = top.checked_sub(base).filter(|&s| s > 0)?;
    Some((usize::try_from(base).ok()?, usize::try_from(size).ok()?))
}

/// A lock for a guest with one vCPU and no preemption: it is never contended, so finding it
/// taken means the allocator was re-entered, which is a bug; that aborts with a message.
struct OneCpu(AtomicBool);

// SAFETY: `lock` returns only after taking the flag (it aborts if the flag is already set) and
// `try_lock` reports whether it took it, so at most one guard exists at a time; the flag is
// cleared only by `unlock`, which lock_api calls once per guard.
unsafe impl RawMutex for OneCpu {
    #[allow(clippy::declare_interior_mutable_const)] // lock_api's way of making a const mutex
    const INIT: OneCpu = OneCpu(AtomicBool::new(false));
    type GuardMarker = GuardSend;

    fn lock(&self) {
        if !self.try_lock() {
            println!("sturdy-rt: the heap was used from inside the allocator");
            abort()
        }
    }

    fn try_lock(&self) -> bool {
        !self.0.swap(true, Ordering::Acquire)
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The unwinder's resume routine, which the precompiled `alloc` calls from its cleanup code.
/// Nothing ever unwinds in a guest (panics abort, see `exit.rs`), so this is never called.
#[unsafe(no_mangle)]
#[allow(non_snake_case)] // the C ABI's name
extern "C" fn _Unwind_Resume(_exception: *mut u8) -> ! {
    abort()
}
