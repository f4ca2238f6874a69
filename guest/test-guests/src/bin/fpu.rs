//! Floating point and SSE (docs/hvt-abi.md, Conformance): f32 and f64 arithmetic, packed SSE2
//! operations and float formatting, checked exactly or within an epsilon. Inputs go through
//! `black_box` so the arithmetic happens at run time, not in the compiler.
#![no_std]
#![no_main]

use core::arch::x86_64::{_mm_cvtsd_f64, _mm_div_pd, _mm_set_pd, _mm_sqrt_pd, _mm_unpackhi_pd};
use core::hint::black_box;

use sturdy_rt::Env;
use test_guests::{check, FmtBuf};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(_env: &Env) -> i32 {
    // Square root by Newton's method, against the SSE2 instruction.
    let two = black_box(2.0f64);
    let newton = sqrt_newton(two);
    check!(
        (newton * newton - 2.0).abs() < 1e-15,
        "Newton sqrt(2) = {newton}"
    );
    let [low, high] = sqrt_sse2([two, black_box(9.0)]);
    check!(high == 3.0, "sqrtpd(9) = {high}");
    check!(
        (low - newton).abs() < 1e-15,
        "sqrtpd(2) = {low}, Newton gives {newton}"
    );

    // Dot product in f32; every partial sum is exact.
    let a = black_box([1.5f32, 2.5, 3.5, 4.5]);
    let b = black_box([2.0f32, 4.0, 6.0, 8.0]);
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    check!(dot == 70.0, "dot product = {dot}, want 70");

    // Division, scalar and packed.
    let third = black_box(1.0f64) / black_box(3.0);
    check!(third * 3.0 == 1.0, "(1/3)*3 = {}", third * 3.0);
    let [eighth, seventh] = div_sse2([1.0, black_box(1.0)], [8.0, black_box(7.0)]);
    check!(eighth == 0.125, "divpd 1/8 = {eighth}");
    check!(seventh * 7.0 == 1.0, "divpd 1/7 = {seventh}");

    // Formatting: fixed precision and shortest round-trip representations.
    let pi = black_box(22.0f64) / black_box(7.0);
    expect_format(format_args!("{pi:.5}"), "3.14286");
    expect_format(
        format_args!("{}", black_box(0.1f64) + black_box(0.2)),
        "0.30000000000000004",
    );
    expect_format(
        format_args!("{}", black_box(0.1f32) + black_box(0.2)),
        "0.3",
    );
    expect_format(
        format_args!("{:e}", black_box(6.02214076e23f64)),
        "6.02214076e23",
    );
    expect_format(
        format_args!("{}", black_box(-1.5f64) * black_box(4.0)),
        "-6",
    );
    test_guests::success()
}

fn sqrt_newton(x: f64) -> f64 {
    let mut guess = x / 2.0;
    for _ in 0..8 {
        guess = 0.5 * (guess + x / guess);
    }
    guess
}

/// Both square roots with one `sqrtpd`.
fn sqrt_sse2([a, b]: [f64; 2]) -> [f64; 2] {
    // SAFETY: SSE2 is part of the x86_64 baseline; these intrinsics only compute on registers.
    unsafe {
        let r = _mm_sqrt_pd(_mm_set_pd(b, a));
        [_mm_cvtsd_f64(r), _mm_cvtsd_f64(_mm_unpackhi_pd(r, r))]
    }
}

/// Both quotients with one `divpd`.
fn div_sse2([a, b]: [f64; 2], [c, d]: [f64; 2]) -> [f64; 2] {
    // SAFETY: as in `sqrt_sse2`.
    unsafe {
        let r = _mm_div_pd(_mm_set_pd(b, a), _mm_set_pd(d, c));
        [_mm_cvtsd_f64(r), _mm_cvtsd_f64(_mm_unpackhi_pd(r, r))]
    }
}

fn expect_format(args: core::fmt::Arguments, want: &str) {
    let got = FmtBuf::<64>::format(args);
    check!(
        got.as_str() == want,
        "formatted {:?}, want {want:?}",
        got.as_str()
    );
}
