//! TCP benchmark between two unikernels, measured inside the client guest.
//!
//! - `tcpbench server`: provides `bench`; every connection is answered by echoing what it sends.
//! - `tcpbench bulk MIB`: connects to capability `peer`, sends MIB MiB while the server echoes
//!   it back, and prints `bulk_mbit_s=<goodput>` (bytes echoed back per second * 8; every byte
//!   crosses the network twice).
//! - `tcpbench rr N`: N request/response round trips of 64 bytes on one connection; prints
//!   `rr_p50_us=.. rr_p99_us=..`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use sturdy_rt::caps::TcpCap;
use sturdy_rt::{println, spawn, Env, Instant, NetError, OrExit, TcpStream};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(net "service");

async fn main(env: &Env) -> i32 {
    let mut args = env.args();
    let mode = args.next().unwrap_or("");
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    match mode {
        "server" => {
            let listener = env.listen("bench").or_exit();
            println!("tcpbench: serving on port {}", listener.port());
            loop {
                let conn = listener.accept().await;
                spawn(echo(conn));
            }
        }
        "bulk" if n > 0 => report(bulk(&env.tcp("peer").or_exit(), n).await),
        "rr" if n > 0 => report(rr(&env.tcp("peer").or_exit(), n).await),
        _ => {
            println!("usage: tcpbench server | bulk MIB | rr COUNT");
            1
        }
    }
}

fn report(r: Result<(), NetError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("tcpbench: {e}");
            1
        }
    }
}

async fn echo(mut conn: TcpStream) {
    let mut buf = vec![0u8; 32 << 10];
    while let Ok(n) = conn.read(&mut buf).await {
        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = conn.close().await;
}

/// Sends `mib` MiB and reads the echo back, keeping up to `IN_FLIGHT` bytes unanswered so
/// the pipe stays full.
async fn bulk(peer: &TcpCap, mib: usize) -> Result<(), NetError> {
    const IN_FLIGHT: usize = 64 << 10;
    let mut conn = peer.connect().await?;
    let total = mib << 20;
    let chunk = vec![0x5au8; 16 << 10];
    let mut buf = vec![0u8; 32 << 10];
    let (mut sent, mut got) = (0, 0);
    let start = Instant::now();
    while got < total {
        if sent < total && sent - got < IN_FLIGHT {
            let n = chunk.len().min(total - sent);
            conn.write_all(&chunk[..n]).await?;
            sent += n;
            continue;
        }
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(NetError::ConnectionReset);
        }
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bulk_mbit_s={:.0} bytes={got}",
        got as f64 * 8.0 / secs / 1e6
    );
    Ok(())
}

/// `count` round trips of 64 bytes; prints the median and 99th percentile in microseconds.
async fn rr(peer: &TcpCap, count: usize) -> Result<(), NetError> {
    let mut conn = peer.connect().await?;
    let msg = [0x42u8; 64];
    let mut buf = [0u8; 64];
    let mut times: Vec<u64> = Vec::with_capacity(count);
    for _ in 0..count {
        let t0 = Instant::now();
        conn.write_all(&msg).await?;
        let mut got = 0;
        while got < msg.len() {
            let n = conn.read(&mut buf[got..]).await?;
            if n == 0 {
                return Err(NetError::ConnectionReset);
            }
            got += n;
        }
        times.push(t0.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!("rr_p50_us={} rr_p99_us={}", at(0.5), at(0.99));
    Ok(())
}
