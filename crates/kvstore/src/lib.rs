//! The storage and protocol core of sturdy's `kv` unikernel: a Redis-compatible key-value engine
//! whose writes are acknowledged only once they are in a crash-safe log on a block device and
//! the device has flushed them.
//!
//! `no_std` with `alloc`, without unsafe code or dependencies, so the guest links exactly the
//! code the host tests exercise. The pieces, bottom up:
//! - [`resp`]: the incremental RESP2 request parser and the reply encoder;
//! - [`log`]: the append-only log on a [`BlockDevice`]: record format, group commit, two
//!   regions for compaction, recovery;
//! - [`store`]: the in-memory map the log is replayed into;
//! - [`Db`]: the store and its log together; executes commands (see `commands.rs` for the command
//!   set and what each replies), commits their writes in batches, limits the live data and
//!   decides when to compact.
//!
//! A server's loop, one connection shown; with many, execute for all ready connections, then
//! commit once, then send:
//! ```
//! use sturdy_kvstore::{resp::Parser, BlockDevice, Db, Flow};
//! # struct Disk(Vec<u8>);
//! # impl BlockDevice for Disk {
//! #     type Error = core::convert::Infallible;
//! #     fn block_size(&self) -> usize { 512 }
//! #     fn blocks(&self) -> u64 { (self.0.len() / 512) as u64 }
//! #     fn read(&mut self, b: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
//! #         buf.copy_from_slice(&self.0[b as usize * 512..][..512]); Ok(())
//! #     }
//! #     fn write(&mut self, b: u64, buf: &[u8]) -> Result<(), Self::Error> {
//! #         self.0[b as usize * 512..][..512].copy_from_slice(buf); Ok(())
//! #     }
//! #     fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) } // fsync, for a file
//! #     fn durable_flush(&self) -> bool { true }
//! # }
//! let seed = 7; // different at each start: a clock, for instance
//! let (mut db, recovery) = Db::open(Disk(vec![0; 64 << 10]), seed).expect("reading the log");
//! if let Some(torn) = &recovery.torn {
//!     println!("kv: {torn}"); // "skipping a torn record at offset N: bad checksum"
//! }
//! let mut parser = Parser::default();
//! let mut out = Vec::new();
//! let mut close = false;
//! // Bytes from the socket, in whatever pieces they come:
//! parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\n").unwrap();
//! loop {
//!     match parser.next_command() {
//!         Ok(Some(command)) => {
//!             if db.execute(command, &mut out) == Flow::Close {
//!                 close = true;
//!                 break;
//!             }
//!         }
//!         Ok(None) => break,
//!         Err(e) => {
//!             e.write_reply(&mut out);
//!             close = true;
//!             break;
//!         }
//!     }
//! }
//! // Make the writes durable, then (and only then) send the replies.
//! db.commit().expect("log write failed: exit, recovery restores the acknowledged state");
//! assert_eq!(out, b"+OK\r\n$1\r\nv\r\n");
//! # assert!(!close);
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod commands;
mod db;
mod glob;
pub mod log;
mod num;
pub mod resp;
pub mod store;
#[cfg(test)]
mod testdev;

pub use db::{Db, Flow};
pub use log::{BlockDevice, LogError, Recovery};
