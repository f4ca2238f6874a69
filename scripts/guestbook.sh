#!/usr/bin/env bash
# Runs the guestbook application (examples/guestbook/sturdy.yaml: web + kv, web published on
# localhost:8080) with `sturdy up`, attached: logs stream until Ctrl-C stops it. Run as root.
# In another terminal:  curl -d 'name=me&message=hi' localhost:8080/entries; curl localhost:8080
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build -q --release --workspace
exec target/release/sturdy up examples/guestbook "$@"
