//! sturdy-rt: write Solo5 hvt unikernels in Rust.
//!
//! A guest is a `no_std`, `no_main` binary. It names its entry point and the devices it uses;
//! sturdy-rt boots it, parses the command line, and gives it a console, clocks, block devices
//! and network interfaces:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//!
//! use sturdy_rt::{println, Block, Env};
//!
//! sturdy_rt::main!(main);
//! sturdy_rt::manifest!(block "storage");
//!
//! fn main(env: &Env) -> i32 {
//!     let disk = Block::open("storage").expect("storage is in the manifest");
//!     println!("hello {:?}: {} bytes", env.cmdline(), disk.capacity());
//!     0
//! }
//! ```
//!
//! The same image runs on sturdy-hvt and on upstream solo5-hvt. It follows the hvt ABI
//! (`docs/hvt-abi.md` in the repository, whose sections are cited by name below).
//!
//! # Network applications
//!
//! A guest has a heap (`alloc` works: `Box`, `Vec`, `String`), a TCP/IP stack (smoltcp: ARP,
//! IPv4, ICMP echo replies, TCP, UDP) and a single-threaded async executor with timers
//! ([`task`]), so one unikernel serves hundreds of connections at once. It reaches the network
//! only through [`caps`]: `main` takes each capability by name from its [`Env`], once, and
//! hands it to the code that needs it, which can connect to it; or serves an endpoint it
//! provides. There is no way to connect to an arbitrary address, and no code can look a
//! capability up by itself. Addresses and
//! capabilities come from the boot configuration on the command line (`docs/bootcfg.md`,
//! [`bootcfg`]), which the plan writes.
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//!
//! use alloc::rc::Rc;
//! use sturdy_rt::{caps::TcpCap, spawn, Env, OrExit, TcpStream};
//!
//! sturdy_rt::main_async!(main);
//! sturdy_rt::manifest!(net "service");
//!
//! async fn main(env: &Env) {
//!     // Taken once, here, and handed to the code that needs it: nothing else can get it.
//!     let db = Rc::new(env.tcp("db").or_exit()); // exits 1, naming 'db', if not given
//!     let http = env.listen("http").or_exit();
//!     loop {
//!         let client = http.accept().await;
//!         spawn(serve(client, db.clone()));
//!     }
//! }
//!
//! async fn serve(mut client: TcpStream, db: Rc<TcpCap>) {
//!     let Ok(mut conn) = db.connect().await else { return };
//!     // ... read a request from `client`, ask `conn`, answer ...
//! }
//! ```
//!
//! # Deprivileged by default
//!
//! [`main!`] also emits sturdy's note declaring that the guest executes no privileged
//! instruction, so sturdy-hvt runs it at CPL 3 behind monitor-owned page tables (read-only text,
//! non-executable data, no zero page). Nothing in sturdy-rt needs more than that: hypercalls are
//! `out` instructions the monitor allows, time comes from `rdtsc`, and CPU exceptions are caught
//! by the monitor.
//!
//! `sturdy_rt::main!(main, privileged)` leaves the note out, for a guest that runs at CPL 0 as
//! upstream guests do. On PVM hosts CPL 0 code is emulated and SSE instructions fail
//! (docs/hvt-abi.md, PVM hosts); sturdy-rt's boot path avoids them, but `core`'s number formatting
//! uses them, so such a guest should print with [`console::write`] rather than formatting numbers.
//!
//! # Building a guest
//!
//! Guests are built with the stable toolchain for `x86_64-unknown-linux-gnu`, as freestanding
//! static executables. The guest workspace's `.cargo/config.toml` sets the target, code model and
//! link flags, its release profile sets `panic = "abort"`, and each binary is linked with the
//! linker script this crate provides: `-Tsturdy-rt.ld`, or `-Tsturdy-rt-privileged.ld` for
//! `main!(main, privileged)` (a program header cannot be optional, so the choice of note is also
//! a choice of script; the link fails with a message naming the right script if they disagree).
//! A package passes it from its build script:
//!
//! ```ignore
//! println!("cargo:rustc-link-arg-bins=-Tsturdy-rt.ld");
//! ```
//!
//! sturdy-rt provides `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`, and the panic handler:
//! a panic prints `panic: <message> at <file>:<line>` and halts with status 255.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

mod block;
mod boot;
pub mod caps;
mod config;
pub mod console;
mod env;
mod error;
mod exit;
mod global;
mod heap;
pub mod hypercall;
mod manifest;
mod mem;
mod net;
mod poll;
mod ring;
mod start;
pub mod task;
mod tcpip;
mod termination;
pub mod time;

pub use block::Block;
pub use config::boot_config;
pub use env::Env;
pub use error::Error;
pub use exit::{abort, exit};
pub use net::{MacAddr, Net};
pub use poll::{poll, poll_until, ReadySet};
#[doc(hidden)]
pub use start::__run;
pub use sturdy_abi as abi;
pub use sturdy_bootcfg as bootcfg;
pub use task::{block_on, sleep, sleep_until, spawn, timeout, Elapsed, JoinHandle, Sleep};
pub use tcpip::{NetError, Peer, TcpListener, TcpStream, UdpEndpoint, UdpSocket};
pub use termination::{OrExit, Termination};
pub use time::Instant;

/// Declares the guest's entry point: `sturdy_rt::main!(main)` with `fn main(env: &Env) -> R`,
/// where `R` is an exit status (`i32`), `()`, or a `Result` (see [`Termination`]).
///
/// sturdy-rt calls it once boot is done and halts with the status it returns. The macro also
/// emits the notes every guest needs: Solo5's ABI1 note (docs/hvt-abi.md, Notes) and, unless the
/// guest is declared `privileged`, sturdy's note with `FLAG_DEPRIVILEGED`.
///
/// `sturdy_rt::main!(main, privileged)` omits sturdy's note: the guest runs at CPL 0 like an
/// upstream guest, and must be linked with `-Tsturdy-rt-privileged.ld`.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        $crate::main!($main, privileged);
        const _: () = {
            #[unsafe(link_section = ".note.sturdy")]
            #[used]
            static STURDY_NOTE: $crate::abi::note::Note4<$crate::abi::sturdy_note::SturdyInfo> =
                $crate::abi::sturdy_note::sturdy_note($crate::abi::sturdy_note::FLAG_DEPRIVILEGED);
        };
    };
    ($main:path, privileged) => {
        const _: () = {
            #[unsafe(link_section = ".note.solo5.abi")]
            #[used]
            static ABI1_NOTE: $crate::abi::note::Note4<$crate::abi::note::Abi1Info> =
                $crate::abi::note::abi1_note();

            // Called by sturdy-rt's boot code; a second `main!` is a duplicate symbol.
            #[unsafe(no_mangle)]
            fn __sturdy_rt_main(env: &$crate::Env) -> i32 {
                $crate::__run(env, $main)
            }
        };
    };
}

/// Declares an `async` entry point: `sturdy_rt::main_async!(main)` with
/// `async fn main(env: &Env) -> R`, `R` as for [`main!`].
///
/// `main` runs in [`block_on`]: it can `.await` sockets and timers and [`spawn`] tasks, which
/// run until `main` returns. The guest then halts with the status `main` returned.
#[macro_export]
macro_rules! main_async {
    ($main:path) => {
        const _: () = {
            fn __sturdy_rt_main_async(env: &$crate::Env) -> impl $crate::Termination + use<> {
                $crate::block_on($main(env))
            }
            $crate::main!(__sturdy_rt_main_async);
        };
    };
}

/// Declares the devices the guest uses, as its Solo5 manifest (docs/hvt-abi.md, Manifest):
/// `sturdy_rt::manifest!(block "storage", net "service")`.
///
/// Every guest needs exactly one manifest; one with no devices is `sturdy_rt::manifest!()`.
/// Names are `[A-Za-z0-9]{1,67}` (checked at compile time), at most 63 devices. The monitor
/// refuses to start a guest unless every declared device is attached.
#[macro_export]
macro_rules! manifest {
    ($($kind:ident $name:literal),* $(,)?) => {
        const _: () = {
            const DEVICES: &[$crate::abi::mft::MftEntry] =
                &[$($crate::__manifest_entry!($kind $name)),*];

            // A second `manifest!` is a duplicate symbol at link time.
            #[unsafe(link_section = ".note.solo5.manifest")]
            #[unsafe(no_mangle)]
            #[used]
            static __STURDY_RT_MANIFEST: $crate::abi::note::MftNote<{ DEVICES.len() + 1 }> =
                $crate::abi::note::mft_note($crate::abi::mft::Mft::new(DEVICES));
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __manifest_entry {
    (block $name:literal) => {
        $crate::abi::mft::MftEntry::block($name)
    };
    (net $name:literal) => {
        $crate::abi::mft::MftEntry::net($name)
    };
}
