#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, builds everything (the guest
# images under guest/ are built by the main build), and runs every test. Run as root: the
# tests use /dev/kvm, TAP devices and network namespaces they create and remove.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets -- --test-threads=2 2>&1 | tee "$log" || status=$?
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
