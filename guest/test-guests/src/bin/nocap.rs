//! Asks for the capability `db`, which its boot configuration does not give it: must fail at
//! start, naming `db` (`error: capability 'db' was not given to this unikernel (it has: ...)`),
//! with exit status 1.
#![no_std]
#![no_main]

use sturdy_rt::{Env, OrExit};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(env: &Env) -> i32 {
    let db = env.tcp("db").or_exit();
    test_guests::fail(format_args!("got a capability {db} it was not given"))
}
