#!/usr/bin/env bash
# The main job of README.md (until `sturdy up` lands): builds sturdy-hvt and the guest images,
# then runs the bundled `hello` unikernel on KVM, deprivileged, under seccomp.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --workspace
exec target/release/sturdy-hvt --mem=32 "$(cargo run -q --release -p guests --bin guest-path -- hello)" "${@:-Hello from sturdy}"
