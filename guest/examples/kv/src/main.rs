//! `kv`: a key-value server speaking a subset of the Redis protocol (RESP: PING, GET, SET, DEL,
//! INCR, EXISTS, KEYS, DBSIZE), as a sturdy unikernel.
//!
//! Its data lives in a crash-safe log on the block device `storage` (`sturdy-kvstore`): a write
//! is acknowledged only after its record is written to the device and, under sturdy-hvt, the
//! device has been flushed to the host's storage (fdatasync; `CONFIG GET appendfsync` says
//! `always`). Under a monitor without sturdy's flush (upstream solo5-hvt) it is acknowledged once
//! written to the volume's file, which survives kv and its monitor but not a host crash, and kv
//! says so at start and in `appendfsync no`. On start the log is replayed, skipping a torn last
//! record (reported on the console). The log takes one half of
//! the device at a time and is compacted into the other half; the live data is limited to three
//! eighths of the device (beyond it, writes get `-OOM`). Clients reach it on the provided
//! endpoint `kv` (boot configuration `--sturdy.v1.provide=kv:6379/tcp`).
//!
//! Group commit: every connection executes the commands it has read, then waits for the next
//! commit; one committer task makes all writes of the round durable with as few block writes as
//! possible (each costs an exit to the monitor) and one flush, then every waiting connection
//! sends its replies.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::poll_fn;
use core::task::{Poll, Waker};

use sturdy_kvstore::resp::Parser;
use sturdy_kvstore::{BlockDevice, Db, Flow};
use sturdy_rt::time::{rdtsc, wall_clock};
use sturdy_rt::{exit, println, spawn, Block, Env, OrExit, TcpStream};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(block "storage", net "service");

/// The unikernel's block device as the log's device: whole blocks at block-aligned offsets.
struct Disk(Block);

impl BlockDevice for Disk {
    type Error = sturdy_rt::Error;

    fn block_size(&self) -> usize {
        self.0.block_size()
    }

    fn blocks(&self) -> u64 {
        self.0.blocks()
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(block * self.0.block_size() as u64, buf)
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Self::Error> {
        self.0.write(block * self.0.block_size() as u64, buf)
    }

    /// A commit's blocks in one BLOCK_WRITE: one exit instead of one per block.
    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), (u64, Self::Error)> {
        self.0
            .write_blocks(first * self.0.block_size() as u64, bytes)
            .map_err(|e| (first, e))
    }

    /// sturdy-hvt's BLOCK_FLUSH (fdatasync of the volume). Under a monitor without it (upstream
    /// solo5-hvt), nothing: a write is in the monitor's backing file when it returns, which
    /// survives kv and the monitor but maybe not the host; kv then says `appendfsync no`.
    fn flush(&mut self) -> Result<(), Self::Error> {
        if self.0.can_flush() {
            self.0.flush()
        } else {
            Ok(())
        }
    }

    fn durable_flush(&self) -> bool {
        self.0.can_flush()
    }
}

/// The database and the group commit shared by all connections.
struct Server {
    db: RefCell<Db<Disk>>,
    /// Commits done so far; a connection waits until it passes the value it saw plus one.
    epoch: Cell<u64>,
    /// A connection has staged writes and waits for a commit.
    wanted: Cell<bool>,
    committer: RefCell<Option<Waker>>,
    waiting: RefCell<Vec<Waker>>,
}

impl Server {
    /// Waits until everything executed so far is durable.
    async fn committed(&self) {
        let target = self.epoch.get() + 1;
        self.wanted.set(true);
        if let Some(w) = self.committer.borrow_mut().take() {
            w.wake();
        }
        poll_fn(|cx| {
            if self.epoch.get() >= target {
                Poll::Ready(())
            } else {
                self.waiting.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Commits whenever a connection waits, then releases every waiting connection. Runs after the
/// connections of a round (it is woken by them), so one commit covers all their writes.
async fn committer(server: Rc<Server>) {
    loop {
        poll_fn(|cx| {
            if server.wanted.replace(false) {
                Poll::Ready(())
            } else {
                *server.committer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if let Err(e) = server.db.borrow_mut().commit() {
            // Nothing of this round was acknowledged; recovery restores the acknowledged state.
            println!("kv: log write failed, stopping: {e}");
            exit(1);
        }
        server.epoch.set(server.epoch.get() + 1);
        for w in server.waiting.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

async fn main(env: &Env) {
    let listener = env.listen("kv").or_exit();
    let block = Block::open("storage").or_exit();
    // The nonces of the log's regions: different at every start.
    let seed = rdtsc() ^ wall_clock().as_nanos() as u64;
    let (db, recovery) = Db::open(Disk(block), seed).unwrap_or_else(|e| {
        println!("kv: cannot open the log on 'storage': {e}");
        exit(1)
    });
    if let Some(torn) = &recovery.torn {
        println!("kv: {torn}");
    }
    if db.log().durable_flush() {
        println!(
            "kv: each write is flushed to the host's storage before its reply (appendfsync always)"
        );
    } else {
        println!(
            "kv: the monitor offers no flush: acknowledged writes survive kv and its monitor, not a \
             host crash (appendfsync no)"
        );
    }
    if recovery.migrated > 0 {
        println!(
            "kv: rewrote the log of an older kv ({} records) in the current format",
            recovery.migrated
        );
    }
    println!(
        "kv: recovered {} records ({} bytes at offset {}, generation {}) from 'storage', \
         {} bytes of live data allowed; serving on port {}",
        recovery.records,
        recovery.bytes,
        recovery.region,
        recovery.generation,
        db.live_limit(),
        listener.port()
    );
    let server = Rc::new(Server {
        db: RefCell::new(db),
        epoch: Cell::new(0),
        wanted: Cell::new(false),
        committer: RefCell::new(None),
        waiting: RefCell::new(Vec::new()),
    });
    spawn(committer(server.clone()));
    loop {
        let conn = listener.accept().await;
        spawn(serve(server.clone(), conn));
    }
}

/// One client: read, execute every complete command, wait for durability if anything was
/// written, reply. A protocol error gets its `-ERR` reply and closes the connection.
async fn serve(server: Rc<Server>, mut conn: TcpStream) {
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 16 << 10];
    let mut out = Vec::new();
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let close = execute(&server, &mut parser, &buf[..n], &mut out);
        if server.db.borrow().has_uncommitted() {
            server.committed().await;
        }
        if !out.is_empty() {
            if conn.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if close {
            break;
        }
    }
    let _ = conn.close().await;
}

/// Feeds `bytes` and executes every complete command; returns whether to close afterwards.
fn execute(server: &Server, parser: &mut Parser, bytes: &[u8], out: &mut Vec<u8>) -> bool {
    if let Err(e) = parser.feed(bytes) {
        e.write_reply(out);
        return true;
    }
    let mut db = server.db.borrow_mut();
    loop {
        match parser.next_command() {
            Ok(Some(command)) => {
                if db.execute(command, out) == Flow::Close {
                    return true;
                }
            }
            Ok(None) => return false,
            Err(e) => {
                e.write_reply(out);
                return true;
            }
        }
    }
}
