//! Ending the run: [`exit`], [`abort`] and the panic handler, all through HALT (docs/hvt-abi.md,
//! Hypercalls).

use core::panic::PanicInfo;

use sturdy_abi::hypercall::EXIT_ABORT;

use crate::{hypercall, println};

/// Ends the run; the monitor exits with `status & 0xff`.
pub fn exit(status: i32) -> ! {
    hypercall::halt(status)
}

/// Ends the run with status 255, the status of a guest abort (docs/hvt-abi.md, Monitor command
/// line).
pub fn abort() -> ! {
    exit(i32::from(EXIT_ABORT))
}

/// Prints `panic: <message> at <file>:<line>` (whatever the log level) and aborts.
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    match info.location() {
        Some(at) => println!("panic: {} at {}:{}", info.message(), at.file(), at.line()),
        None => println!("panic: {}", info.message()),
    }
    abort()
}

/// The unwinder's personality routine, which the precompiled `core` names in its unwind tables.
/// Nothing ever unwinds in a guest (panics abort), so this is never called; the tables stay for
/// debuggers.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {
    abort()
}
