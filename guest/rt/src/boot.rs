//! Boot: from the monitor's jump to `_start` to the application's `main` (docs/hvt-abi.md, Memory
//! and CPU, Boot information).
//!
//! The monitor enters `_start` with RDI = address of `hvt_boot_info` and RSP just below the top
//! of guest memory. `_start` aligns the stack and calls [`entry`], which starts the clock, reads
//! the command line and manifest copy, prints the banner and runs `main`.

use core::arch::naked_asm;
use core::fmt::Write;

use sturdy_abi::{BootInfo, CMDLINE_SIZE};

use crate::console::{self, Buffered, Level};
use crate::{exit, manifest, println, ring, time, Env};

unsafe extern "Rust" {
    /// The application's `main`, defined by [`main!`](crate::main).
    fn __sturdy_rt_main(env: &Env) -> i32;
}

/// The ELF entry point, first in the image's text (see sturdy-rt.ld).
#[unsafe(naked)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
unsafe extern "C" fn _start() -> ! {
    // The System V ABI wants RSP + 8 to be 16-byte aligned at function entry, as after a call
    // from an aligned stack. RBP = 0 ends the frame chain for debuggers.
    naked_asm!(
        "and rsp, -16",
        "xor ebp, ebp",
        "call {entry}",
        "ud2",
        entry = sym entry,
    )
}

extern "C" fn entry(boot_info: *const BootInfo) -> ! {
    // SAFETY: the monitor passes the address of `hvt_boot_info` (docs/hvt-abi.md, Memory and CPU),
    // an aligned, read-only struct that stays valid and unchanged for the whole run.
    let boot_info = unsafe { &*boot_info };
    if boot_info.cpu_cycle_freq == 0 {
        fatal("the monitor reports a TSC frequency of 0");
    }
    time::init(boot_info.cpu_cycle_freq);

    let raw_cmdline = cmdline(boot_info).unwrap_or_else(|e| fatal(e));
    let cmdline = strip_level_options(raw_cmdline);
    if let Err(e) = manifest::init(boot_info) {
        fatal(e);
    }
    ring::init(boot_info);
    crate::block::init(boot_info);
    if console::enabled(Level::Info) {
        banner(boot_info);
    }

    let env = Env {
        boot_info,
        raw_cmdline,
        cmdline,
    };
    // SAFETY: `main!` defines `__sturdy_rt_main` with exactly this signature.
    let status = unsafe { __sturdy_rt_main(&env) };
    exit(status)
}

/// The command line: NUL-terminated at `boot_info.cmdline`, at most [`CMDLINE_SIZE`] bytes with
/// the NUL (docs/hvt-abi.md, Boot information). It is the host's argv, so it may not be UTF-8: then
/// only the part before the first invalid byte is used.
fn cmdline(boot_info: &BootInfo) -> Result<&'static str, &'static str> {
    let start = boot_info.cmdline;
    let limit = boot_info
        .mem_size
        .saturating_sub(start)
        .min(CMDLINE_SIZE as u64);
    if start == 0 || limit == 0 {
        return Err("command line outside guest memory");
    }
    let ptr = start as *const u8;
    let len = (0..limit as usize)
        // SAFETY: i < limit, so the byte is inside guest memory.
        .find(|&i| unsafe { ptr.add(i).read() } == 0)
        .ok_or("command line not NUL-terminated")?;
    // SAFETY: the `len` bytes before the NUL are inside guest memory, and the monitor never
    // changes the command line.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    Ok(match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // SAFETY: `valid_up_to` is the length of the longest valid UTF-8 prefix.
            unsafe { core::str::from_utf8_unchecked(valid) }
        }
    })
}

/// Consumes leading `--solo5:quiet|error|warn|info|debug` options and sets the log level, as
/// Solo5 guests do; what follows is the application's command line.
fn strip_level_options(cmdline: &'static str) -> &'static str {
    let mut rest = cmdline.trim_start();
    loop {
        let (token, after) = rest
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((rest, ""));
        match console::level_option(token) {
            Some(level) => console::set_level(level),
            None => return rest,
        }
        rest = after.trim_start();
    }
}

/// Prints `sturdy-rt VERSION: mem N MiB, kernel_end 0xN, tsc N MHz`. Numbers are written without
/// `core::fmt` so that privileged guests can boot at CPL 0 on PVM hosts, where SSE faults.
fn banner(boot_info: &BootInfo) {
    let mut line = Buffered::new();
    _ = line.write_str(concat!("sturdy-rt ", env!("CARGO_PKG_VERSION"), ": mem "));
    line.write_u64(boot_info.mem_size >> 20, 10);
    _ = line.write_str(" MiB, kernel_end 0x");
    line.write_u64(boot_info.kernel_end, 16);
    _ = line.write_str(", tsc ");
    line.write_u64(boot_info.cpu_cycle_freq / 1_000_000, 10);
    _ = line.write_str(" MHz\n");
}

/// Reports a broken boot environment and aborts.
fn fatal(why: &str) -> ! {
    println!("sturdy-rt: cannot boot: {why}");
    crate::abort()
}
