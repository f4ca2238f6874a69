//! A TCP echo server on the provided endpoint `echo`: every connection gets back what it sends,
//! until it closes its side. Serves any number of connections at once, one task each. Prints
//! `serving echo on port N` once listening.
#![no_std]
#![no_main]

use sturdy_rt::{println, spawn, Env, OrExit, TcpStream};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(net "service");

async fn main(env: &Env) {
    let listener = env.listen("echo").or_exit();
    println!("serving echo on port {}", listener.port());
    loop {
        let conn = listener.accept().await;
        spawn(echo(conn));
    }
}

async fn echo(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    _ = conn.close().await;
}
