//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`, which the compiler calls on its own and
//! which no libc provides here.
//!
//! Copies and fills are `rep movsb`/`rep stosb`: fast on current CPUs, and written in assembly so
//! the optimiser cannot turn them back into calls to themselves. The direction flag is clear on
//! entry to any function (System V ABI) and these leave it clear.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest`, which must not overlap.
///
/// # Safety
///
/// As C's `memcpy`: `src` valid for reads and `dest` for writes of `n` bytes, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; rep movsb copies exactly n bytes forwards.
    unsafe {
        asm!("rep movsb",
            inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags))
    };
    dest
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
///
/// As C's `memmove`: `src` valid for reads and `dest` for writes of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is below `src` or past its end: copying forwards never overwrites a byte
        // before it is read.
        // SAFETY: as for memcpy; the ranges are valid and forward order is safe here.
        unsafe { memcpy(dest, src, n) };
    } else {
        // `dest` overlaps the end of `src`: copy backwards, from the last byte down.
        // SAFETY: the caller guarantees both ranges, so their last bytes (n > 0 here, since
        // dest - src < n) are valid; std/cld leave the direction flag clear as the ABI requires.
        unsafe {
            asm!("std", "rep movsb", "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack))
        };
    }
    dest
}

/// Fills `n` bytes at `dest` with the byte `c`.
///
/// # Safety
///
/// As C's `memset`: `dest` valid for writes of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; rep stosb stores al (the low byte of c) n times.
    unsafe {
        asm!("rep stosb",
            inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
            options(nostack, preserves_flags))
    };
    dest
}

/// Compares `n` bytes: negative, zero or positive as `a` sorts before, equal to or after `b`.
///
/// # Safety
///
/// As C's `memcmp`: `a` and `b` valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, and the caller guarantees n readable bytes at both.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Compares `n` bytes for equality only: zero if equal.
///
/// # Safety
///
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}
