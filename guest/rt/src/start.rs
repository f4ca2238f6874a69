//! From [`main!`](crate::main) to the application: sturdy-rt keeps what the boot code found
//! (the monitor's boot information, the command line) for the parts that start on first use
//! (the heap, the boot configuration, the network), then runs `main` and turns its result into
//! the exit status.
//!
//! Nothing here allocates or formats: a guest that never uses the heap or the network runs
//! exactly the instructions it did before, which matters for privileged guests on PVM hosts,
//! where SSE instructions fault at CPL 0 (docs/hvt-abi.md, PVM hosts).

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use sturdy_abi::BootInfo;

use crate::{Env, Termination};

static BOOT_INFO: AtomicPtr<BootInfo> = AtomicPtr::new(ptr::null_mut());
static CMDLINE: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
static CMDLINE_LEN: AtomicUsize = AtomicUsize::new(0);

/// Runs the application's `main` (called by the code [`main!`](crate::main) generates).
#[doc(hidden)]
pub fn __run<R: Termination>(env: &Env, main: impl FnOnce(&Env) -> R) -> i32 {
    BOOT_INFO.store(ptr::from_ref(env.boot_info).cast_mut(), Ordering::Relaxed);
    CMDLINE.store(env.cmdline.as_ptr().cast_mut(), Ordering::Relaxed);
    CMDLINE_LEN.store(env.cmdline.len(), Ordering::Relaxed);
    main(env).report()
}

/// The monitor's boot information, once `main!` has started the application.
pub(crate) fn boot_info() -> Option<&'static BootInfo> {
    let info = BOOT_INFO.load(Ordering::Relaxed);
    // SAFETY: set from `Env::boot_info`, a `&'static BootInfo`, or still null.
    unsafe { info.as_ref() }
}

/// The application's command line (without `--solo5:` options), once `main!` has started it.
pub(crate) fn cmdline() -> &'static str {
    let start = CMDLINE.load(Ordering::Relaxed);
    if start.is_null() {
        return "";
    }
    let len = CMDLINE_LEN.load(Ordering::Relaxed);
    // SAFETY: `start` and `len` were taken together from `Env::cmdline`, a `&'static str`.
    unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(start, len)) }
}
