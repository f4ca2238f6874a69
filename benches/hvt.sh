#!/usr/bin/env bash
# Benchmarks of sturdy-hvt (issue: the monitor). Prints medians, min/max and ratios against a
# baseline measured in the same run. Run as root on the machine to measure:
#   sudo ./benches/hvt.sh [RUNS]
# 1. boot: `sturdy-hvt hello` from exec to exit, beside /bin/true in the same hyperfine run
# 2. hypercall round trip (WALLTIME) from a deprivileged guest, in ns (measured by the guest)
# 3. host RSS of a monitor running an idle --mem=512 guest that touched 2 MiB
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
./scripts/install-deps.sh
command -v hyperfine >/dev/null || { echo "hyperfine missing" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 1; }
cargo build -q --release -p sturdy-hvt -p guests
hvt=target/release/sturdy-hvt
img() { cargo run -q --release -p guests --bin guest-path -- "$1"; }
hello=$(img hello); hcbench=$(img hcbench); idle=$(img idle)
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

boot() {
  hyperfine -N --style none --warmup 10 --runs "$runs" --export-json "$out/boot.json" \
    "/bin/true" "$hvt $hello" >/dev/null 2>&1
  python3 - "$out/boot.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ms = lambda v: v * 1000
base, hvt = r[0], r[1]
for name, x in (("/bin/true", base), ("sturdy-hvt hello", hvt)):
    print(f"  {name:18s} median {ms(x['median']):.3f} ms  min {ms(x['min']):.3f}  max {ms(x['max']):.3f}")
print(f"  sturdy-hvt hello / true: {hvt['median']/base['median']:.2f}x   target median <= 1.5 ms: "
      f"{'met' if ms(hvt['median']) <= 1.5 else 'NOT met'}")
PY
}
echo "== boot: exec to exit, $runs runs each (hyperfine -N), no other VM on the host =="
boot
# The first VM on a host flips KVM's global static keys (text patching with IPIs) when it is
# created and again when it is destroyed; with any other VM alive (the normal case under the
# supervisor) that cost is gone.
echo "== boot: the same, with one other guest running =="
"$hvt" --mem=32 "$idle" >/dev/null 2>&1 & other=$!
sleep 0.5
boot
kill $other; wait $other 2>/dev/null || true

echo "== hypercall round trip (WALLTIME, deprivileged guest) =="
for i in 1 2 3 4 5; do "$hvt" --mem=32 "$hcbench" --solo5:quiet 200000 | sed -n 's/^walltime_hypercall_ns=//p'; done > "$out/hc"
python3 - "$out/hc" <<'PY'
import statistics, sys
v = [float(x) for x in open(sys.argv[1]).read().split()]
print(f"  ns per WALLTIME hypercall over 5 runs of 200000: median {statistics.median(v):.0f}  min {min(v):.0f}  max {max(v):.0f}")
PY

echo "== memory: host RSS, idle guest, --mem=512, 2 MiB touched =="
for i in 1 2 3 4 5; do
  fifo="$out/idle.$i"; mkfifo "$fifo"
  "$hvt" --mem=512 "$idle" >"$fifo" 2>/dev/null & pid=$!
  grep -q -m1 ready <"$fifo"
  grep VmRSS /proc/$pid/status | awk '{print $2}' >> "$out/rss"
  kill $pid; wait $pid 2>/dev/null || true
done
sleep 60 & spid=$!; sleep 0.2; base=$(grep VmRSS /proc/$spid/status | awk '{print $2}'); kill $spid
python3 - "$out/rss" "$base" <<'PY'
import statistics, sys
v = [int(x) for x in open(sys.argv[1]).read().split()]
base = int(sys.argv[2])
m = statistics.median(v)
print(f"  sturdy-hvt RSS median {m/1024:.2f} MiB  min {min(v)/1024:.2f}  max {max(v)/1024:.2f}  "
      f"(baseline `sleep`: {base/1024:.2f} MiB, {m/base:.1f}x)   target <= 6 MiB: {'met' if m <= 6*1024 else 'NOT met'}")
PY
