#!/usr/bin/env bash
# The monitors' sandbox (issue 11, item 10): what a monitor costs beyond its guest's memory
# (which sets the memory limit of its cgroup: crates/daemon/src/sandbox/mod.rs), and how much
# of a core a spinning guest gets under `cpus:`. Run as root, on a host with cgroup v1 `cpu`
# and `memory` controllers (this script reads v1 files):
#   ./benches/sandbox.sh [SECONDS]                  (default 10: each CPU measurement)
#   ./benches/sandbox.sh | tee benches/results/$(date +%F)-sandbox.txt
# 1. Memory: the release sturdy-hvt alone, in a memory cgroup of its own under this shell's,
#    with guest memory M of 16, 64, 256, 512 and 1024 MiB: the `idle` guest (touches 2 MiB), and
#    `memhog N` (touches N MiB, N = M less what its heap cannot give: the image, the stack,
#    the monitor's tables). One second after the guest says it is done: the cgroup's
#    memory.max_usage_in_bytes (user and kernel memory: KVM's and the page tables for the
#    guest count too), its kmem part, and the overhead = peak usage - N MiB, the monitor's
#    cost beyond the guest memory it touched (an upper bound of its cost beyond all of it).
# 2. CPU: `sturdy up -d` of one `spin` service (a guest that never leaves its busy loop) with
#    `cpus: 0.5`, then `cpus: 1`, with a daemon of its own; over SECONDS: the monitor's CPU
#    time (utime + stime of /proc/PID/stat) / wall time, and the cgroup's cpu.stat throttling.
#    Target: <= 55% of a core with `cpus: 0.5`.
# The load average is printed at the start and the end: other work on the host shows in 2.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
die() { echo "sandbox.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root: monitors run in KVM and cgroups are made"
[ -c /dev/kvm ] || die "no /dev/kvm"
mem_root=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
[ -n "$mem_root" ] && [ -d "/sys/fs/cgroup/memory$mem_root" ] || die "no cgroup v1 memory controller at /sys/fs/cgroup/memory"

cargo build --release -q -p sturdy-cli -p sturdy-hvt -p guests
hvt=target/release/sturdy-hvt
sturdy=target/release/sturdy
guests=target/guest/x86_64-unknown-linux-gnu/release
echo "# benches/sandbox.sh, $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# sturdy $(git rev-parse --short HEAD)"

work=$(mktemp -d /tmp/sturdy-bench-sandbox-XXXX)
cleanup() {
  [ -n "${STURDY_HOME:-}" ] && "$sturdy" daemon stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Memory.
kib() { echo $(( $1 / 1024 )); }
probe() { # MEM_MIB GUEST [ARGS]: one line
  local mem=$1 guest=$2; shift 2
  local cg=/sys/fs/cgroup/memory$mem_root/sturdy-bench-$$-$mem-$guest
  mkdir "$cg"
  local out=$work/out
  ( echo "$BASHPID" > "$cg/cgroup.procs"; exec "$hvt" --mem="$mem" "$guests/$guest" "$@" ) >"$out" 2>&1 &
  local pid=$! i
  for i in $(seq 1 600); do grep -q -E "touched all|ready" "$out" && break; sleep 0.1; done
  grep -q -E "touched all|ready" "$out" || { cat "$out"; kill "$pid"; die "$guest did not finish"; }
  sleep 1
  local peak kmem touched=${1:-2}
  peak=$(cat "$cg/memory.max_usage_in_bytes")
  kmem=$(cat "$cg/memory.kmem.max_usage_in_bytes")
  printf '%-7s %5s MiB  guest touched %5s MiB  peak %8s KiB  kmem %6s KiB  overhead %6s KiB (%.1f MiB)\n' \
    "$guest" "$mem" "$touched" "$(kib "$peak")" "$(kib "$kmem")" \
    "$(( $(kib "$peak") - touched * 1024 ))" "$(echo "($(kib "$peak") - $touched * 1024) / 1024" | bc -l)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  sleep 0.2; rmdir "$cg"
}
echo
echo "## 1. memory: the monitor alone in a memory cgroup (peak usage beyond the guest memory touched)"
for mem in 16 64 256 512 1024; do probe "$mem" idle; done
# What each heap can give in 1 MiB chunks (measured: the heap is M less the image, 1 MiB of
# stack and the monitor's tables, and its allocator's bookkeeping).
for pair in 16:11 64:59 256:246 512:496 1024:990; do probe "${pair%%:*}" memhog "${pair##*:}"; done

# 2. CPU.
export STURDY_HOME=$work/home
install -d -m 700 "$STURDY_HOME"
echo
echo "## 2. cpu: a spinning guest's monitor over ${secs} s"
for cpus in 0.5 1; do
  mkdir -p "$work/app"
  printf 'name: spinner\nservices:\n  spin:\n    image: %s\n    mem: 16M\n    cpus: %s\n' \
    "$PWD/$guests/spin" "$cpus" > "$work/app/sturdy.yaml"
  "$sturdy" up -d "$work/app" >/dev/null
  for i in $(seq 1 300); do "$sturdy" logs -p spinner | grep -q spinning && break; sleep 0.1; done
  pid=$("$sturdy" ps -p spinner --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["services"][0]["pid"])')
  cg=/sys/fs/cgroup/cpu$(awk -F: '$2=="cpu"{print $3}' "/proc/$pid/cgroup")
  ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat"; }
  thr() { awk '$1=="nr_throttled"{n=$2} $1=="throttled_time"{t=$2} END{print n, t}' "$cg/cpu.stat"; }
  sleep 1
  t0=$(ticks); read -r n0 w0 < <(thr); s0=$(date +%s.%N)
  sleep "$secs"
  t1=$(ticks); read -r n1 w1 < <(thr); s1=$(date +%s.%N)
  hz=$(getconf CLK_TCK)
  share=$(echo "($t1 - $t0) / $hz / ($s1 - $s0) * 100" | bc -l)
  verdict=""
  [ "$cpus" = 0.5 ] && verdict=$(echo "$share <= 55" | bc -l | sed 's/1/(target <= 55%: met)/; s/^0$/(target <= 55%: NOT met)/')
  printf 'cpus %-4s quota %s us / %s us: %5.1f%% of a core %s; throttled %d periods, %d ms\n' \
    "$cpus" "$(cat "$cg/cpu.cfs_quota_us")" "$(cat "$cg/cpu.cfs_period_us")" "$share" "$verdict" \
    "$(( n1 - n0 ))" "$(( (w1 - w0) / 1000000 ))"
  "$sturdy" down -p spinner >/dev/null
done
echo
echo "# load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
