//! The database: a Redis-protocol key-value server (our `kv` unikernel, or any Redis) reached
//! through the capability `db`.
//!
//! Requests share a small pool of connections: at most [`Db::new`]'s `max` are open at once;
//! a request that finds them all busy waits its turn (first come, first served). A connection
//! goes back to the pool after a clean exchange and is dropped after any failure, so the next
//! request reconnects. Every exchange, waiting for a connection included, is bounded by a
//! timeout: a database that is down or stuck costs a request an error, never a hang.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use sturdy_rt::caps::TcpCap;
use sturdy_rt::{timeout, NetError, TcpStream};

use crate::resp::{self, ProtocolError, Value};

/// Commands written before their replies are read. The replies are read only after a whole
/// batch is written, so a batch must fit in the connection's send buffer (16 KiB): a `GET` of a
/// guestbook key is about 45 bytes.
const BATCH: usize = 64;

/// The read buffer a connection starts with, and keeps between exchanges.
const READ_BUFFER: usize = 4096;

/// Commands sent together (pipelined); their replies come back in order.
#[derive(Debug, Default)]
pub struct Pipeline {
    bytes: Vec<u8>,
    /// Where each command ends in `bytes`.
    ends: Vec<usize>,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pipeline of one command.
    pub fn one(args: &[&[u8]]) -> Self {
        let mut pipeline = Self::new();
        pipeline.push(args);
        pipeline
    }

    /// Adds the command `args` (`[b"GET", key]`).
    pub fn push(&mut self, args: &[&[u8]]) {
        resp::encode(&mut self.bytes, args);
        self.ends.push(self.bytes.len());
    }

    /// How many commands.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Commands `range` as bytes.
    fn commands(&self, start: usize, end: usize) -> &[u8] {
        let from = if start == 0 { 0 } else { self.ends[start - 1] };
        &self.bytes[from..self.ends[end - 1]]
    }
}

/// Why the database could not answer.
#[derive(Clone, Debug)]
pub enum DbError {
    /// No connection could be opened (refused, no answer, no route).
    Connect(NetError),
    /// An open connection failed (reset, or closed by the server).
    Connection(NetError),
    /// No answer within the timeout.
    TimedOut,
    /// The server's reply broke the protocol.
    Protocol(ProtocolError),
    /// The server refused a command (`-ERR ...`), or answered with a reply of the wrong kind.
    Reply(String),
}

impl DbError {
    /// Whether the database is unreachable (rather than reachable but answering wrongly).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            DbError::Connect(_) | DbError::Connection(_) | DbError::TimedOut
        )
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DbError::Connect(e) => write!(f, "cannot connect: {e}"),
            DbError::Connection(e) => write!(f, "connection failed: {e}"),
            DbError::TimedOut => f.write_str("no answer in time"),
            DbError::Protocol(e) => e.fmt(f),
            DbError::Reply(e) => write!(f, "unexpected reply: {e}"),
        }
    }
}

impl From<ProtocolError> for DbError {
    fn from(e: ProtocolError) -> Self {
        DbError::Protocol(e)
    }
}

/// A handle on the database and its pool of connections; clones share the capability and
/// the pool.
#[derive(Clone)]
pub struct Db {
    cap: Rc<TcpCap>,
    pool: Rc<RefCell<Pool>>,
    timeout: Duration,
}

impl Db {
    /// The database behind `cap`, with at most `max` connections open at once and `timeout`
    /// for each exchange.
    pub fn new(cap: TcpCap, max: usize, timeout: Duration) -> Db {
        Db {
            cap: Rc::new(cap),
            pool: Rc::new(RefCell::new(Pool {
                idle: Vec::new(),
                in_use: 0,
                max: max.max(1),
                waiters: VecDeque::new(),
                granted: Vec::new(),
                next_waiter: 0,
            })),
            timeout,
        }
    }

    /// Sends the commands of `pipeline` and returns their replies, in order. Replies that are
    /// errors (`-ERR`) are returned as [`Value::Error`]: the exchange itself went fine.
    pub async fn run(&self, pipeline: &Pipeline) -> Result<Vec<Value>, DbError> {
        match timeout(self.timeout, self.exchange(pipeline)).await {
            Ok(result) => result,
            // The connection in use, if any, was dropped with the future: it may be anywhere
            // in an exchange.
            Err(_) => Err(DbError::TimedOut),
        }
    }

    async fn exchange(&self, pipeline: &Pipeline) -> Result<Vec<Value>, DbError> {
        let lease = Acquire::new(self.pool.clone()).await;
        let idle = self.pool.borrow_mut().idle.pop();
        if let Some(mut conn) = idle {
            match conn.exchange(pipeline).await {
                Ok(replies) => {
                    lease.give_back(conn);
                    return Ok(replies);
                }
                // A pooled connection may have been closed by the server while it was idle
                // (a restart, an idle timeout): that is worth one more try on a new one.
                Err(DbError::Connection(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let stream = self.cap.connect().await.map_err(DbError::Connect)?;
        let mut conn = Conn {
            stream,
            buf: vec![0; READ_BUFFER],
            filled: 0,
        };
        let replies = conn.exchange(pipeline).await?;
        lease.give_back(conn);
        Ok(replies)
    }
}

/// An open connection to the database.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// How much of `buf` holds received bytes not parsed yet.
    filled: usize,
}

impl Conn {
    async fn exchange(&mut self, pipeline: &Pipeline) -> Result<Vec<Value>, DbError> {
        let mut replies = Vec::with_capacity(pipeline.len());
        let mut start = 0;
        while start < pipeline.len() {
            let end = (start + BATCH).min(pipeline.len());
            self.stream
                .write_all(pipeline.commands(start, end))
                .await
                .map_err(DbError::Connection)?;
            for _ in start..end {
                replies.push(self.reply().await?);
            }
            start = end;
        }
        if self.filled != 0 {
            return Err(ProtocolError("more replies than commands").into());
        }
        if self.buf.len() > READ_BUFFER {
            self.buf.truncate(READ_BUFFER);
            self.buf.shrink_to_fit();
        }
        Ok(replies)
    }

    /// Reads the next reply.
    async fn reply(&mut self) -> Result<Value, DbError> {
        loop {
            if let Some((value, used)) = resp::parse(&self.buf[..self.filled])? {
                self.buf.copy_within(used..self.filled, 0);
                self.filled -= used;
                return Ok(value);
            }
            if self.filled == self.buf.len() {
                // parse() bounds lines and bulk strings, so a reply that needs more than this
                // is made of many parts: still one reply too many for us.
                if self.buf.len() > 2 * resp::MAX_BULK {
                    return Err(ProtocolError("a reply too large").into());
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self
                .stream
                .read(&mut self.buf[self.filled..])
                .await
                .map_err(DbError::Connection)?;
            if n == 0 {
                return Err(DbError::Connection(NetError::ConnectionReset));
            }
            self.filled += n;
        }
    }
}

/// The connections, and the requests waiting for one.
struct Pool {
    idle: Vec<Conn>,
    /// Leases held: connections in use, or about to be opened.
    in_use: usize,
    max: usize,
    /// Waiting requests, first come first served: a number each, and its waker.
    waiters: VecDeque<(u64, Waker)>,
    /// Waiters that were given a lease (taken off `waiters`) but have not picked it up yet.
    granted: Vec<u64>,
    next_waiter: u64,
}

impl Pool {
    /// Hands a free lease to the first waiter, if any; returns its waker, to wake once the pool
    /// is no longer borrowed.
    fn pass_on(&mut self) -> Option<Waker> {
        let (id, waker) = self.waiters.pop_front()?;
        self.granted.push(id);
        Some(waker)
    }

    fn free(&self) -> bool {
        self.in_use + self.granted.len() < self.max
    }
}

/// The right to use one connection, until dropped.
struct Lease {
    pool: Rc<RefCell<Pool>>,
}

impl Lease {
    /// Returns a connection in good order to the pool, and ends the lease.
    fn give_back(self, conn: Conn) {
        self.pool.borrow_mut().idle.push(conn);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let waker = {
            let mut pool = self.pool.borrow_mut();
            pool.in_use -= 1;
            pool.pass_on()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Waiting for a [`Lease`].
struct Acquire {
    pool: Rc<RefCell<Pool>>,
    /// Our number, once queued.
    id: Option<u64>,
}

impl Acquire {
    fn new(pool: Rc<RefCell<Pool>>) -> Self {
        Acquire { pool, id: None }
    }
}

impl Future for Acquire {
    type Output = Lease;

    fn poll(self: Pin<&mut Self>, cx: &mut Context) -> Poll<Lease> {
        let this = self.get_mut();
        let mut pool = this.pool.borrow_mut();
        match this.id {
            None if pool.free() && pool.waiters.is_empty() => {}
            None => {
                let id = pool.next_waiter;
                pool.next_waiter += 1;
                pool.waiters.push_back((id, cx.waker().clone()));
                this.id = Some(id);
                return Poll::Pending;
            }
            Some(id) => match pool.granted.iter().position(|&g| g == id) {
                Some(i) => {
                    pool.granted.swap_remove(i);
                    this.id = None;
                }
                None => {
                    if let Some((_, waker)) = pool.waiters.iter_mut().find(|(w, _)| *w == id) {
                        waker.clone_from(cx.waker());
                    }
                    return Poll::Pending;
                }
            },
        }
        pool.in_use += 1;
        drop(pool);
        Poll::Ready(Lease {
            pool: this.pool.clone(),
        })
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        // Given up (a timeout) while queued: leave the queue, and pass on a lease granted to us.
        let Some(id) = self.id else { return };
        let waker = {
            let mut pool = self.pool.borrow_mut();
            if let Some(i) = pool.waiters.iter().position(|&(w, _)| w == id) {
                pool.waiters.remove(i);
                None
            } else if let Some(i) = pool.granted.iter().position(|&g| g == id) {
                pool.granted.swap_remove(i);
                pool.pass_on()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
