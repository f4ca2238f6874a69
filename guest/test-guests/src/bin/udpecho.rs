//! A UDP echo server on the provided endpoint `echo`: every datagram goes back to its sender.
//! Prints `serving echo` once bound.
#![no_std]
#![no_main]

use sturdy_rt::{println, Env, OrExit};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(net "service");

async fn main(env: &Env) {
    let endpoint = env.bind("echo").or_exit();
    println!("serving echo");
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, from)) = endpoint.recv_from(&mut buf).await else {
            continue;
        };
        _ = endpoint.send_to(&buf[..n], &from).await;
    }
}
