#!/usr/bin/env bash
# Benchmarks of the fabric (issue 4). Prints medians, min/max and ratios against the targets.
#   ./benches/fabric.sh [RUNS]
# 1. switch capacity without guests or I/O: frames pushed through Fabric::process by a driver,
#    100 services and 1000 capabilities, 80% frames of 10000 established TCP connections and
#    20% of new connections (SYN, SYN-ACK, ACK, RST); target >= 1 M frames/s on one core.
# Still to come (need the gateway and a bridge baseline): TCP throughput and latency between two
# guests through the fabric beside a Linux bridge, and ingress through a published port.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
echo "== fabric: switch capacity (crates/fabric/benches/fabric_switch.rs) =="
cargo bench -q -p sturdy-fabric --bench fabric_switch -- "$runs"
