//! Floods its console, as fast as PUTS goes, with `abc...z` repeated: 64 KiB at a time with no
//! newline at all, or in lines of `--line=N` bytes of text (each line starting at `a`), as many
//! whole lines per PUTS as fit in 64 KiB. `--write=N` makes each PUTS at most N bytes
//! (`--line=80 --write=81`: a line per PUTS, as `println!` writes). Writes `--limit=N` bytes in
//! all (newlines included), then exits 0 without another word; without `--limit`, forever.
//! Run it with `--solo5:quiet` to have exactly those bytes on the console.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;

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
    let positive = |name| {
        env.option(name).map(|v| match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => test_guests::fail(format_args!("--{name}={v}: not a positive number")),
        })
    };
    let line = positive("line");
    let write = positive("write").unwrap_or(CHUNK);
    let chunk: Vec<u8> = match line {
        Some(n) if n < CHUNK => {
            let mut lines = Vec::with_capacity(CHUNK);
            for _ in 0..CHUNK / (n + 1) {
                lines.extend_from_slice(&TEXT[..n]);
                lines.push(b'\n');
            }
            lines
        }
        _ => TEXT.to_vec(),
    };
    let mut written = 0u64;
    // Bytes of the current line so far, for lines longer than a chunk.
    let mut in_line = 0;
    while written < limit {
        let mut n = chunk
            .len()
            .min(write)
            .min((limit - written).try_into().unwrap_or(usize::MAX));
        if let Some(long) = line.filter(|&l| l >= CHUNK) {
            if in_line == long {
                console::write(b"\n");
                written += 1;
                in_line = 0;
                continue;
            }
            n = n.min(long - in_line);
            in_line += n;
        }
        console::write(&chunk[..n]);
        written += n as u64;
    }
    0
}
