//! A UDP client of the capability `peer`, an echo server: sends 20 numbered datagrams, each
//! resent (up to 5 times, 200 ms apart) until its echo comes back intact; prints SUCCESS if
//! every one did. UDP may lose datagrams; a lost one is resent, a wrong one fails.
#![no_std]
#![no_main]

use core::time::Duration;

use sturdy_rt::{println, timeout, Env, OrExit};
use test_guests::{check, fail};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(net "service");

const DATAGRAMS: u32 = 20;
const TRIES: u32 = 5;

async fn main(env: &Env) -> i32 {
    let peer = env.udp("peer").or_exit();
    println!("sending {DATAGRAMS} datagrams to {peer}");
    let socket = peer.connect();
    let mut buf = [0u8; 64];
    for i in 0..DATAGRAMS {
        let sent = [b"sturdy udp ".as_slice(), &i.to_be_bytes()].concat();
        let mut echoed = false;
        for _ in 0..TRIES {
            if let Err(e) = socket.send(&sent).await {
                fail(format_args!("send {i} to {peer}: {e}"));
            }
            match timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    check!(buf[..n] == sent[..], "datagram {i}: another echo came back");
                    echoed = true;
                    break;
                }
                Ok(Err(e)) => fail(format_args!("receive {i} from {peer}: {e}")),
                Err(_) => continue,
            }
        }
        check!(echoed, "no echo of datagram {i} after {TRIES} tries");
    }
    test_guests::success()
}
