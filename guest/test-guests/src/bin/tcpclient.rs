//! A TCP client of the capability `peer`, an echo server: sends 64 KiB in 4 KiB pieces, each
//! read back and checked before the next, then closes; prints SUCCESS if every byte came back.
//! With `--limit=N` it does that over N connections at once.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use sturdy_rt::caps::TcpCap;
use sturdy_rt::{println, spawn, Env, NetError, OrExit};
use test_guests::{check, fail};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(net "service");

const TOTAL: usize = 64 * 1024;
const PIECE: usize = 4096;

async fn main(env: &Env) -> i32 {
    // Shared by the tasks that connect with it (a capability is not Clone).
    let peer = Rc::new(env.tcp("peer").or_exit());
    let connections = test_guests::limit_option(env).unwrap_or(1);
    println!("connecting {connections} time(s) to {peer}");
    let exchanges: Vec<_> = (0..connections)
        .map(|i| spawn(exchange(peer.clone(), i as u8)))
        .collect();
    for (i, exchange) in exchanges.into_iter().enumerate() {
        if let Err(e) = exchange.await {
            fail(format_args!("connection {i} to {peer}: {e}"));
        }
    }
    test_guests::success()
}

/// Sends [`TOTAL`] bytes to the echo server and checks what comes back.
async fn exchange(peer: Rc<TcpCap>, seed: u8) -> Result<(), NetError> {
    let mut conn = peer.connect().await?;
    let mut sent = vec![0u8; PIECE];
    let mut echoed = vec![0u8; PIECE];
    for offset in (0..TOTAL).step_by(PIECE) {
        for (i, byte) in sent.iter_mut().enumerate() {
            *byte = ((offset + i) as u8).wrapping_mul(31).wrapping_add(seed);
        }
        conn.write_all(&sent).await?;
        let mut got = 0;
        while got < PIECE {
            let n = conn.read(&mut echoed[got..]).await?;
            check!(n > 0, "echo ended after {} bytes", offset + got);
            got += n;
        }
        check!(echoed == sent, "echo differs in the piece at {offset}");
    }
    conn.shutdown();
    let mut rest = [0u8; 16];
    let n = conn.read(&mut rest).await?;
    check!(n == 0, "{n} more bytes after the echo");
    conn.close().await
}
