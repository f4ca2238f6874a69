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
# --no-fail-fast: a failing test binary must not hide the results of the ones after it.
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=2 2>&1 | tee "$log" || status=$?
# One closing line over all test binaries (cargo prints one per binary), after the names of
# the tests that failed, wherever they ran.
grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^/failed: /' || true
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
