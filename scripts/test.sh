#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, builds everything (the guest
# images under guest/ are built by the main build), checks formatting, lints and docs of both
# workspaces, and runs every test. Run as root: the tests use /dev/kvm, TAP devices and
# network namespaces they create and remove.
#
# A failing check does not stop the others: every check and every test binary runs, the
# failures are listed at the end, and the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --workspace --all-targets

failed_checks=()
check() {
  local name=$1
  shift
  echo "check: $name"
  if ! "$@"; then
    failed_checks+=("$name")
  fi
}
# The guest workspace's lints and docs build in a target directory of their own (the main
# build puts the guest images under target/guest).
guest() { (cd guest && CARGO_TARGET_DIR=../target/guest-checks "$@"); }
check "cargo fmt (host)" cargo fmt --all --check
check "cargo fmt (guest)" guest cargo fmt --all --check
check "cargo clippy (host)" cargo clippy --workspace --all-targets --quiet -- -D warnings
# Guests have no test targets (no_std binaries): their libraries and binaries are linted.
check "cargo clippy (guest)" guest cargo clippy --workspace --quiet -- -D warnings
check "cargo doc (host)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
check "cargo doc (guest)" guest env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --no-fail-fast: a failing test binary must not hide the results of the ones after it.
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=2 2>&1 | tee "$log" || status=$?
# One closing line over all test binaries (cargo prints one per binary), after the names of
# the checks and tests that failed, wherever they ran.
for c in "${failed_checks[@]}"; do
  echo "failed check: $c"
done
grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^/failed: /' || true
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
if [ ${#failed_checks[@]} -gt 0 ]; then
  echo "summary: ${#failed_checks[@]} check(s) failed"
  status=1
fi
exit "$status"
