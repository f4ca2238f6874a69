#!/usr/bin/env bash
# Boots the bundled `hello-world` unikernel with `sturdy run` (no application file): builds
# sturdy and the guest images, then runs it on KVM, deprivileged, under seccomp.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build -q --release --workspace
[[ $# -gt 0 ]] || set -- Hello from sturdy
exec target/release/sturdy run "$(cargo run -q --release -p guests --bin guest-path -- hello-world)" "$@"
