#!/usr/bin/env bash
# Benchmarks of the fabric (issue 4). Prints medians, min/max and ratios against the targets.
#   ./benches/fabric.sh [RUNS]
# 1. switch capacity without guests or I/O: frames pushed through Fabric::process by a driver,
#    100 services and 1000 capabilities, 80% frames of 10000 established TCP connections and
#    20% of new connections (SYN, SYN-ACK, ACK, RST); target >= 1 M frames/s on one core.
# 2. TCP between two unikernels (tcpbench: bulk echo goodput, 64-byte request/response latency)
#    through the fabric (crates/fabric/examples/bench_pair.rs), beside the same two guests on a
#    Linux bridge with TAP devices in a network namespace this script creates; alternating runs.
#    Targets: fabric throughput >= 1.0x the bridge, p99 latency <= 1.2x.
# Still to come: ingress through a published port vs directly to the guest's TAP.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
echo "== fabric: switch capacity (crates/fabric/benches/fabric_switch.rs) =="
cargo bench -q -p sturdy-fabric --bench fabric_switch -- "$runs"

echo "== two guests: fabric vs Linux bridge (tcpbench, $runs alternating runs) =="
./scripts/install-deps.sh
cargo build -q --release -p sturdy-hvt -p guests
cargo build -q --release -p sturdy-fabric --example bench_pair
hvt=$PWD/target/release/sturdy-hvt
pair=$PWD/target/release/examples/bench_pair
tcpbench=$(cargo run -q --release -p guests --bin guest-path -- tcpbench)
ns=sturdy-bench-bridge-$$
out=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; ip netns del "$ns" 2>/dev/null || true; rm -rf "$out"; }
trap cleanup EXIT
ip netns add "$ns"; ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge; ip -n "$ns" link set br0 up
for t in tapa tapb; do
  ip -n "$ns" tuntap add $t mode tap; ip -n "$ns" link set $t master br0; ip -n "$ns" link set $t up
done
ip netns exec "$ns" "$hvt" --mem=64 --net:service=tapa "$tcpbench" --solo5:quiet \
  --sturdy.v1.net=service:10.3.0.3/24 --sturdy.v1.provide=bench:5001/tcp server >/dev/null 2>&1 &
server=$!
sleep 0.5
bridge() {
  ip netns exec "$ns" "$hvt" --mem=64 --net:service=tapb "$tcpbench" --solo5:quiet \
    --sturdy.v1.net=service:10.3.0.2/24 --sturdy.v1.use=peer:10.3.0.3:5001/tcp "$@"
}
for i in $(seq "$runs"); do
  bridge bulk 64 >>"$out/bridge"; "$pair" "$hvt" bulk 64 >>"$out/fabric"
  bridge rr 2000 >>"$out/bridge"; "$pair" "$hvt" rr 2000 >>"$out/fabric"
done
python3 - "$out/bridge" "$out/fabric" <<'PY'
import re, statistics, sys
def load(path):
    text = open(path).read()
    get = lambda key: [float(v) for v in re.findall(key + r"=(\d+)", text)]
    return {k: statistics.median(get(k)) for k in ("bulk_mbit_s", "rr_p50_us", "rr_p99_us")}
b, f = load(sys.argv[1]), load(sys.argv[2])
t = f["bulk_mbit_s"] / b["bulk_mbit_s"]
print(f"  bulk echo goodput: fabric {f['bulk_mbit_s']:.0f} Mbit/s, bridge {b['bulk_mbit_s']:.0f} Mbit/s: {t:.2f}x (target >= 1.0x: {'met' if t >= 1.0 else 'NOT met'})")
print(f"  64-byte request/response p50: fabric {f['rr_p50_us']:.0f} us, bridge {b['rr_p50_us']:.0f} us")
l = f["rr_p99_us"] / b["rr_p99_us"]
print(f"  64-byte request/response p99: fabric {f['rr_p99_us']:.0f} us, bridge {b['rr_p99_us']:.0f} us: {l:.2f}x (target <= 1.2x: {'met' if l <= 1.2 else 'NOT met'})")
PY
