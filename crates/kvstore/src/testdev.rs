//! An in-memory block device for tests that can be made to crash in the middle of a write.
//!
//! Clones share the same bytes, so a test keeps a handle on the device while the code under
//! test owns another, "crashes" it, and reopens the surviving bytes with a fresh handle.

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
    writes: usize,
    /// `(n, tear)`: write number `n` (counted by `writes`) lands only its first `tear` bytes, and
    /// it and every later write fail, as if the machine had died during it.
    crash: Option<(usize, usize)>,
}

impl MemDevice {
    pub(crate) fn new(block_size: usize, blocks: usize) -> MemDevice {
        let state = State {
            bytes: vec![0; block_size * blocks],
            writes: 0,
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

    /// Restarts the machine: the bytes stay, the crash is disarmed.
    pub(crate) fn reboot(&self) {
        self.state.borrow_mut().crash = None;
    }

    pub(crate) fn writes(&self) -> usize {
        self.state.borrow().writes
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.state.borrow().bytes.clone()
    }

    pub(crate) fn set_bytes(&self, at: usize, bytes: &[u8]) {
        self.state.borrow_mut().bytes[at..at + bytes.len()].copy_from_slice(bytes);
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
            Some((crash, _)) if n > crash => Err("crashed"),
            Some((crash, tear)) if n == crash => {
                state.bytes[at..at + tear].copy_from_slice(&buf[..tear]);
                Err("crashed")
            }
            _ => {
                state.bytes[at..at + self.block_size].copy_from_slice(buf);
                Ok(())
            }
        }
    }
}
