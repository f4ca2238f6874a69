//! Takes the capability `db` from its environment, then asks for it again, as code that was not
//! handed it would: a capability is taken once, by `main`, and handed on, so the second request
//! must fail (`error: capability 'db.kv' was taken already ...`), with exit status 1.
#![no_std]
#![no_main]

use sturdy_rt::{println, Env, OrExit};

sturdy_rt::main!(main);
sturdy_rt::manifest!(net "service");

fn main(env: &Env) -> i32 {
    let db = env.tcp("db").or_exit();
    println!("took {db}");
    let again = env.tcp("db").or_exit();
    test_guests::fail(format_args!("took {again} a second time"))
}
