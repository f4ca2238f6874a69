#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, builds everything (the guest
# images under guest/ are built by the main build), and runs every test. Run as root: the
# tests use /dev/kvm, TAP devices and network namespaces they create and remove.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=2
