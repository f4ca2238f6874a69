//! An in-memory block device for tests that can be made to crash in the middle of a write, and
//! to lose, at the crash, any of the writes made since its last flush.
//!
//! Clones share the same bytes, so a test keeps a handle on the device while the code under
//! test owns another, "crashes" it, and reopens the surviving bytes with a fresh handle.

use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::log::BlockDevice;

#[derive(Clone)]
pub(crate) struct MemDevice {
    block_size: usize,
    state: Rc<RefCell<State>>,
}

struct State {
    bytes: Vec<u8>,
    /// The bytes as of the last flush: what a power loss cannot take back.
    flushed: Vec<u8>,
    /// Blocks written since the last flush.
    dirty: BTreeSet<usize>,
    writes: usize,
    flushes: usize,
    /// What [`BlockDevice::durable_flush`] says.
    durable_flush: bool,
    /// `(n, tear)`: write number `n` (counted by `writes`) lands only its first `tear` bytes, and
    /// it and every later write and flush fail, as if the machine had died during it.
    crash: Option<(usize, usize)>,
}

impl MemDevice {
    pub(crate) fn new(block_size: usize, blocks: usize) -> MemDevice {
        let state = State {
            bytes: vec![0; block_size * blocks],
            flushed: vec![0; block_size * blocks],
            dirty: BTreeSet::new(),
            writes: 0,
            flushes: 0,
            durable_flush: true,
            crash: None,
        };
        MemDevice {
            block_size,
            state: Rc::new(RefCell::new(state)),
        }
    }

    /// Arms a crash during the write `after` writes from now, landing `tear` of its bytes.
    pub(crate) fn crash_in(&self, after: usize, tear: usize) {
        let mut state = self.state.borrow_mut();
        state.crash = Some((state.writes + after, tear));
    }

    /// Restarts the machine: the bytes stay, as if every write had reached the medium in
    /// order; the crash is disarmed.
    pub(crate) fn reboot(&self) {
        self.state.borrow_mut().crash = None;
    }

    /// Restarts the machine after a power loss: each block written since the last flush keeps
    /// its new bytes or goes back to its flushed ones, as `seed` picks (any combination can
    /// happen with a page cache); the crash is disarmed.
    pub(crate) fn power_loss(&self, seed: u64) {
        let mut state = self.state.borrow_mut();
        let mut x = seed | 1;
        let size = self.block_size;
        for block in core::mem::take(&mut state.dirty) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 1 == 0 {
                let at = block * size;
                let old = state.flushed[at..at + size].to_vec();
                state.bytes[at..at + size].copy_from_slice(&old);
            }
        }
        state.flushed = state.bytes.clone();
        state.crash = None;
    }

    /// Makes the device say its flush does not reach stable storage.
    pub(crate) fn without_durable_flush(self) -> MemDevice {
        self.state.borrow_mut().durable_flush = false;
        self
    }

    pub(crate) fn writes(&self) -> usize {
        self.state.borrow().writes
    }

    pub(crate) fn flushes(&self) -> usize {
        self.state.borrow().flushes
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.state.borrow().bytes.clone()
    }

    /// Changes bytes behind the log's back (damage, garbage), durably.
    pub(crate) fn set_bytes(&self, at: usize, bytes: &[u8]) {
        let mut state = self.state.borrow_mut();
        state.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        state.flushed[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

impl BlockDevice for MemDevice {
    type Error = &'static str;

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn blocks(&self) -> u64 {
        self.state
            .borrow()
            .bytes
            .len()
            .checked_div(self.block_size)
            .unwrap_or(0) as u64
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        assert_eq!(buf.len(), self.block_size, "reads are of whole blocks");
        let at = block as usize * self.block_size;
        buf.copy_from_slice(&self.state.borrow().bytes[at..at + self.block_size]);
        Ok(())
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), &'static str> {
        assert_eq!(buf.len(), self.block_size, "writes are of whole blocks");
        let at = block as usize * self.block_size;
        let mut state = self.state.borrow_mut();
        let n = state.writes;
        state.writes += 1;
        match state.crash {
            Some((crash, _)) if n > crash => return Err("crashed"),
            Some((crash, tear)) if n == crash => {
                state.bytes[at..at + tear].copy_from_slice(&buf[..tear]);
                state.dirty.insert(block as usize);
                return Err("crashed");
            }
            _ => state.bytes[at..at + self.block_size].copy_from_slice(buf),
        }
        state.dirty.insert(block as usize);
        Ok(())
    }

    fn durable_flush(&self) -> bool {
        self.state.borrow().durable_flush
    }

    fn flush(&mut self) -> Result<(), &'static str> {
        let mut state = self.state.borrow_mut();
        if state.crash.is_some_and(|(crash, _)| state.writes > crash) {
            return Err("crashed");
        }
        state.flushes += 1;
        state.flushed = state.bytes.clone();
        state.dirty.clear();
        Ok(())
    }
}
