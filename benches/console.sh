#!/usr/bin/env bash
# Benchmark of a guest flooding its console under the daemon (issue 11, item 2). Run as root:
#   sudo ./benches/console.sh [SECONDS] [SCENARIO...]
#   sudo ./benches/console.sh | tee benches/results/$(date +%F)-console.txt
# For each scenario, a daemon of its own (STURDY_HOME in a fresh /tmp/sturdy-bench-XXXX,
# stopped and deleted after) runs one application of one service, the `flood` test guest,
# which writes its console as fast as it can, forever, for SECONDS (default 60):
#   nonl    64 KiB writes with no newline at all (the issue's guest)
#   line80  lines of 80 bytes (ordinary log lines, 81 bytes with the newline), 809 a PUTS
#   puts80  lines of 80 bytes, one a PUTS (as a guest's println! writes them)
#   line1   lines of 1 byte, 32768 a PUTS (the most lines per byte the daemon can be sent)
# (default: all four). Every second it samples, from /proc, the daemon's RSS (VmRSS) and its
# CPU time (utime + stime of /proc/PID/stat), and the monitor's CPU time and the bytes it
# wrote (wchar of /proc/PID/io: what passed the console's limit). It prints the median and
# maximum of the daemon's RSS and CPU (% of one core, per 1 s interval: whole clock ticks, so
# in steps of 1%; and the mean over the run) against the targets (RSS <= 64 MiB, CPU <= 10%,
# met if the maximum is), its peak RSS (VmHWM), and the monitor's figures.
# A scenario whose daemon passes 1 GiB RSS is stopped there (a daemon without the bounds).
# STURDY_BIN=/path/to/sturdy measures another build (its sturdy-hvt next to it), e.g. an
# older commit for a before/after; the flood guest image is always this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [nonl|line80|puts80|line1...]" >&2; exit 2; }
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(nonl line80 puts80 line1)

die() { echo "console.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): the daemon runs unikernels in KVM"
[ -c /dev/kvm ] || die "no /dev/kvm: services run in KVM virtual machines"
command -v python3 >/dev/null || die "python3 missing"

cargo build -q --release -p sturdy-cli -p sturdy-hvt -p guests
sturdy=${STURDY_BIN:-$PWD/target/release/sturdy}
[ -x "$sturdy" ] && [ -x "$(dirname "$sturdy")/sturdy-hvt" ] || die "no $sturdy with sturdy-hvt next to it"
flood=$(cargo run -q --release -p guests --bin guest-path -- flood) || die "no flood guest image"
tck=$(getconf CLK_TCK)

base=$(mktemp -d /tmp/sturdy-bench-XXXX)
export STURDY_HOME
cleanup() {
  set +e
  if [ -n "${STURDY_HOME:-}" ] && [ -S "$STURDY_HOME/sturdy.sock" ]; then "$sturdy" daemon stop >/dev/null 2>&1; fi
  if [ -n "${daemon:-}" ] && [ -e "/proc/$daemon" ]; then kill -9 "$daemon"; fi
  rm -rf "$base"
}
trap cleanup EXIT

field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }
ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }
wchar() { awk '$1 == "wchar:" {print $2}' "/proc/$1/io" 2>/dev/null; }
load() { uptime | sed 's/.*load average/load average/'; }

echo "benches/console.sh $seconds ${scenarios[*]}, $(date -u +%F), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r)"
echo "  sturdy: $sturdy ($(git rev-parse --short HEAD 2>/dev/null || echo '?') with $(git status --porcelain 2>/dev/null | grep -c . || true) files changed or new in this tree)"
echo "  at start: $(load); compilers running: $(pgrep -c -x rustc || true)"

for scenario in "${scenarios[@]}"; do
  case $scenario in
    nonl) args='[]'; what='64 KiB writes, no newline' ;;
    line80) args='["--line=80"]'; what='lines of 80 bytes, 809 a PUTS' ;;
    puts80) args='["--line=80", "--write=81"]'; what='lines of 80 bytes, one a PUTS' ;;
    line1) args='["--line=1"]'; what='lines of 1 byte, 32768 a PUTS' ;;
    *) die "unknown scenario $scenario (nonl, line80, puts80, line1)" ;;
  esac
  STURDY_HOME=$base/$scenario
  mkdir -p "$STURDY_HOME/app"
  printf 'name: flooded\nservices:\n  flood:\n    image: %s\n    mem: 16M\n    command: %s\n' \
    "$flood" "$args" >"$STURDY_HOME/app/sturdy.yaml"
  "$sturdy" up -d "$STURDY_HOME/app" >/dev/null || die "$scenario: sturdy up failed"
  daemon=$(cat "$STURDY_HOME/daemon.pid")
  monitor=$("$sturdy" ps --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["services"][0]["pid"])')
  samples=$base/$scenario.samples
  : >"$samples"
  last_d=$(ticks "$daemon"); last_m=$(ticks "$monitor"); last_w=$(wchar "$monitor"); last_t=$(date +%s.%N)
  stopped=
  for i in $(seq "$seconds"); do
    sleep 1
    now=$(date +%s.%N); d=$(ticks "$daemon"); m=$(ticks "$monitor"); w=$(wchar "$monitor")
    rss=$(field "$daemon" VmRSS)
    [ -n "$d" ] && [ -n "$m" ] && [ -n "$rss" ] || die "$scenario: the daemon or the monitor is gone after $i s"
    echo "$now $last_t $d $last_d $m $last_m $w $last_w $rss" >>"$samples"
    last_d=$d; last_m=$m; last_w=$w; last_t=$now
    if [ "$rss" -gt $((1024 * 1024)) ]; then stopped="stopped after $i s: the daemon's RSS passed 1 GiB"; break; fi
  done
  hwm=$(field "$daemon" VmHWM)
  notices=$("$sturdy" logs flood | grep -c 'sturdy-hvt: console: \.\.\. ' || true)
  longest=$("$sturdy" logs flood --json | python3 -c 'import json,sys; print(max(len(json.loads(l)["text"]) for l in sys.stdin))' 2>/dev/null || echo '?')
  echo "== $scenario: $what, for ${i} s =="
  python3 - "$samples" "$tck" "$hwm" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
tck, hwm = float(sys.argv[2]), float(sys.argv[3])
rss = [r[8] / 1024 for r in rows]
cpu = [100 * (r[2] - r[3]) / tck / (r[0] - r[1]) for r in rows]
mcpu = [100 * (r[4] - r[5]) / tck / (r[0] - r[1]) for r in rows]
rate = [(r[6] - r[7]) / 1024 / (r[0] - r[1]) for r in rows]
def line(label, v, unit, target=None):
    s = f"  {label:34s} median {statistics.median(v):8.1f} {unit}  max {max(v):8.1f}  (n={len(v)})"
    if target is not None:
        s += f"   target <= {target:g} {unit}: {'met' if max(v) <= target else 'NOT met'} (by the max)"
    print(s)
# Over the whole run (a 1 s interval counts whole clock ticks: 1% steps).
span = rows[-1][0] - rows[0][1]
mean = lambda now, then: 100 * (rows[-1][now] - rows[0][then]) / tck / span
line("daemon RSS (VmRSS)", rss, "MiB", 64)
print(f"  {'':34s} peak (VmHWM) {hwm / 1024:.1f} MiB")
line("daemon CPU, % of one core", cpu, "%", 10)
print(f"  {'':34s} mean over the run {mean(2, 3):.2f} %")
line("monitor CPU, % of one core", mcpu, "%")
print(f"  {'':34s} mean over the run {mean(4, 5):.2f} %")
line("monitor output (wchar), KiB/s", rate, "KiB/s")
PY
  echo "  longest line in the console: $longest bytes; drop notices in its last 256 KiB: $notices"
  [ -z "$stopped" ] || echo "  $stopped"
  "$sturdy" daemon stop >/dev/null 2>&1 || kill -9 "$daemon"
  daemon=
done
echo "  at the end: $(load); compilers running: $(pgrep -c -x rustc || true)"
