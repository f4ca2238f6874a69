//! WALLTIME (docs/hvt-abi.md, Hypercalls). Monotonic time needs no hypercall: guests read the TSC,
//! whose frequency is in the boot info.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_REALTIME in nanoseconds.
pub fn walltime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
