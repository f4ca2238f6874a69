//! Floods its console, as fast as PUTS goes: 64 KiB at a time (`abc...z` repeated), with no
//! newline at all, or with one after every `--line=N` bytes (lines of N bytes of text). Writes
//! `--limit=N` bytes in all (newlines included), then exits 0 without another word; without
//! `--limit`, forever. Run it with `--solo5:quiet` to have exactly those bytes on the console.
#![no_std]
#![no_main]

use sturdy_rt::{console, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

const CHUNK: usize = 64 * 1024;

/// What it writes: `abc...z` over and over, in the image's read-only data.
static TEXT: [u8; CHUNK] = text();

const fn text() -> [u8; CHUNK] {
    let mut t = [0; CHUNK];
    let mut i = 0;
    while i < CHUNK {
        t[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    t
}

fn main(env: &Env) -> i32 {
    let limit = test_guests::limit_option(env).unwrap_or(u64::MAX);
    let line = env.option("line").map(|v| match v.parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => test_guests::fail(format_args!("--line={v}: not a positive number")),
    });
    let mut written = 0u64;
    // Bytes of the current line so far.
    let mut in_line = 0u64;
    while written < limit {
        if line == Some(in_line) {
            console::write(b"\n");
            written += 1;
            in_line = 0;
            continue;
        }
        let n = (CHUNK as u64)
            .min(limit - written)
            .min(line.map_or(u64::MAX, |l| l - in_line));
        console::write(&TEXT[..n as usize]);
        written += n;
        in_line += n;
    }
    0
}
