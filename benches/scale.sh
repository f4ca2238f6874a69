#!/usr/bin/env bash
# How `up`, `ps` and `down` grow with the number of services: chains of N idle tcpecho services
# (16M each; s0001 uses s0002, ...), for each N in SIZES (default 50 200 1000), RUNS times each,
# in a state directory of its own. Prints per N the medians of `up -d` (until every service is
# started), `ps`, `down`, the daemon's RSS with the services up, and the cost per service of
# `up -d` relative to the smallest N.
# Targets (issue 12, item 9): 1,000 services up in <= 5 s, the cost per service within 1.5x from
# 50 to 1,000, down <= 2 s, the daemon's RSS <= 64 MiB, ps <= 100 ms.
#   ./benches/scale.sh [RUNS] [SIZES...]            (as root: KVM)
#   ./benches/scale.sh 3 | tee benches/results/$(date +%F)-scale.txt
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
sizes=("${@:-50 200 1000}")
read -r -a sizes <<<"${sizes[*]}"
[ "$(id -u)" -eq 0 ] || { echo "scale.sh: run as root (KVM)" >&2; exit 1; }
cargo build -q --release --workspace
sturdy=$PWD/target/release/sturdy
image=$PWD/target/guest/x86_64-unknown-linux-gnu/release/tcpecho
base=$(mktemp -d /tmp/sturdy-scale.XXXXXX)
export STURDY_HOME=$base/state
install -d -m 700 "$STURDY_HOME"
# About five descriptors a service: the daemon inherits this limit when the CLI starts it (the
# soft limit raised to the hard one).
ulimit -n "$(ulimit -Hn)"
cleanup() { "$sturdy" daemon stop >/dev/null 2>&1 || true; rm -rf "$base"; }
trap cleanup EXIT

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "benches/scale.sh $runs ${sizes[*]}, $(date -u '+%F %T') UTC, $(nproc) CPUs, commit $(git rev-parse --short HEAD)"
echo "  load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %6s %10s %12s %8s %8s %10s %8s\n' services "up -d ms" "ms/service" "x first" "ps ms" "down ms" "RSS MiB"
first=""
for n in "${sizes[@]}"; do
  app=$base/chain$n
  mkdir -p "$app"
  python3 - "$n" "$image" >"$app/sturdy.yaml" <<'PY'
import sys
n, image = int(sys.argv[1]), sys.argv[2]
print(f"name: chain{n}\nsubnet: 10.80.0.0/20\nservices:")
for i in range(1, n + 1):
    print(f"  s{i:04d}:\n    image: {image}\n    mem: 16M\n    provides: {{ echo: 7/tcp }}")
    if i < n:
        print(f"    uses: [s{i + 1:04d}]")
PY
  : >"$base/up" ; : >"$base/ps" ; : >"$base/down" ; : >"$base/rss"
  for _ in $(seq "$runs"); do
    t0=$(now); "$sturdy" up -d "$app" >/dev/null; t1=$(now)
    ms "$t0" "$t1" >>"$base/up"
    running=$("$sturdy" ps -p "chain$n" --json | python3 -c \
      'import json,sys; print(sum(1 for s in json.load(sys.stdin)[0]["services"] if s["pid"]))')
    [ "$running" -eq "$n" ] || { echo "scale.sh: $running of $n services running after up -d" >&2; exit 1; }
    t0=$(now); "$sturdy" ps >/dev/null; t1=$(now)
    ms "$t0" "$t1" >>"$base/ps"
    awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$(cat "$STURDY_HOME/daemon.pid")/status" >>"$base/rss"
    t0=$(now); "$sturdy" down -p "chain$n" >/dev/null; t1=$(now)
    ms "$t0" "$t1" >>"$base/down"
  done
  up=$(median <"$base/up"); per=$(awk -v u="$up" -v n="$n" 'BEGIN { printf "%.2f", u / n }')
  [ -n "$first" ] || first=$per
  printf '  %6s %10s %12s %8s %8s %10s %8s\n' "$n" "$up" "$per" \
    "$(awk -v p="$per" -v f="$first" 'BEGIN { printf "%.2fx", p / f }')" \
    "$(median <"$base/ps")" "$(median <"$base/down")" "$(median <"$base/rss")"
done
echo "  load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
