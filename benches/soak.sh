#!/usr/bin/env bash
# Soak of the guestbook under mixed load (issue 11, item 20): does memory stay bounded?
#   ./benches/soak.sh [MINUTES]        (default 30; run as root)
# Starts examples/guestbook (image paths made absolute, published on a free port of 127.0.0.1)
# with `sturdy up -d --wait` against a daemon of its own (STURDY_HOME in a fresh
# /tmp/sturdy-soak-XXXX, stopped and deleted on exit), then for MINUTES minutes runs
#   - `wrk -t 2 -c 100` on the list page through the published port (keep-alive connections),
#   - a loop of `curl -d name=..&message=..` POSTs to /entries, one new connection each (the
#     host client closes first, as a browser's or a script's short connection does),
# and samples every minute (VmRSS from /proc/PID/status) the daemon and each monitor
# (sturdy-hvt; pids from `sturdy ps --json`, read again at each sample), plus the daemon's
# RssAnon, its largest anonymous mapping (from /proc/PID/smaps: a glibc arena is one) and its
# threads.
# After the load it samples the idle application for IDLE minutes (SOAK_IDLE_MIN, default 3).
# Prints a table and the verdict against the targets, per process:
#   flat: max/min of the samples from minute 5 to the end of the load <= 1.10;
#   back near idle: the last idle sample <= 1.10 x the idle figure before the load (the median
#   of the samples taken over the first IDLE minute after `up`).
# The whole output is also saved in benches/results/DATE-soak-MINUTESm[-LABEL].txt
# (SOAK_LABEL=before names a run apart). SOAK_BIN=DIR runs the `sturdy` and `sturdy-hvt` in DIR
# instead of building them (e.g. an older build kept aside, for a before/after comparison in
# the same session). SOAK_SAMPLE_S changes the sampling period (default 60 s; for trying the
# script out: the verdict speaks of minutes of 60 s samples).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
idle_min=${SOAK_IDLE_MIN:-3}
every=${SOAK_SAMPLE_S:-60}
for n in "$minutes" "$idle_min" "$every"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [MINUTES] (positive integers, also SOAK_IDLE_MIN, SOAK_SAMPLE_S)" >&2; exit 2; }
done
die() { echo "soak.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): the daemon runs unikernels in KVM and publishes a host port"
[ -c /dev/kvm ] || die "no /dev/kvm: services run in KVM virtual machines"
./scripts/install-deps.sh
for tool in wrk curl python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh installs wrk and curl)"
done

mkdir -p benches/results
out=benches/results/$(date -u +%F)-soak-${minutes}m${SOAK_LABEL:+-$SOAK_LABEL}.txt
exec > >(tee "$out") 2>&1

if [ -n "${SOAK_BIN:-}" ]; then
  bin=$(cd "$SOAK_BIN" && pwd)
  cargo build -q --release -p guests
else
  cargo build -q --release -p sturdy-cli -p sturdy-hvt -p guests
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
sturdy=$bin/sturdy
[ -x "$sturdy" ] && [ -x "$bin/sturdy-hvt" ] || die "no sturdy and sturdy-hvt in $bin"
img() { cargo run -q --release -p guests --bin guest-path -- "$1" || die "no guest image $1"; }
web=$(img web); kv=$(img kv)

base=$(mktemp -d /tmp/sturdy-soak-XXXX)
export STURDY_HOME=$base/state
daemon_pid=
load_pids=()
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
cleanup() {
  set +e
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null; done
  if [ -S "$STURDY_HOME/sturdy.sock" ]; then "$sturdy" daemon stop >/dev/null 2>&1; fi
  if [ -n "$daemon_pid" ] && alive "$daemon_pid"; then
    echo "soak.sh: the daemon (pid $daemon_pid) did not stop: killing it" >&2
    kill -9 "$daemon_pid"
  fi
  rm -rf "$base"
}
trap cleanup EXIT
load() { uptime | sed 's/.*load average/load average/'; }
# CPU time stolen by the hypervisor and in all, from /proc/stat.
steal() { awk 'NR==1 { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$base/guestbook"
sed -e "s#^\(    image: \).*/web\$#\1$web#" -e "s#^\(    image: \).*/kv\$#\1$kv#" \
  -e "s/\"8080:80\"/\"127.0.0.1:$port:80\"/" examples/guestbook/sturdy.yaml >"$base/guestbook/sturdy.yaml"
grep -q "image: $web\$" "$base/guestbook/sturdy.yaml" && grep -q "image: $kv\$" "$base/guestbook/sturdy.yaml" &&
  grep -q "\"127.0.0.1:$port:80\"" "$base/guestbook/sturdy.yaml" ||
  die "examples/guestbook/sturdy.yaml changed: cannot rewrite its images and port"

echo "benches/soak.sh $minutes (idle $idle_min min after; a sample every $every s), $(date -u '+%F %T') UTC, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r)"
echo "  sturdy: $sturdy (tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(git status --porcelain 2>/dev/null | grep -c . || true) files changed or new)"
echo "  at start: $(load); compilers running: $(pgrep -c -x rustc || true)"
"$sturdy" up -d --wait "$base/guestbook" >"$base/up.out" 2>&1 || { cat "$base/up.out"; die "sturdy up failed"; }
daemon_pid=$(cat "$STURDY_HOME/daemon.pid")
url=http://127.0.0.1:$port
curl -sf -o /dev/null "$url/health" || die "GET /health through the published port failed"

samples=$base/samples.tsv
echo -e "phase\tminute\tdaemon_kib\tanon_kib\tarena_kib\tthreads\tweb_pid\tweb_kib\tdb_pid\tdb_kib\tposts\tpost_fail" >"$samples"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
anon() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
largest_anon() { # the largest RSS (KiB) of one anonymous mapping of PID
  awk '/^[0-9a-f]+-[0-9a-f]+ / { anon = (NF == 5 || $6 == "[heap]") } /^Rss:/ { if (anon && $2 > m) m = $2 } END { print m + 0 }' "/proc/$1/smaps"
}
sample() { # PHASE MINUTE
  local pids web_pid db_pid
  pids=$("$sturdy" ps --json | python3 -c '
import json, sys
s = {x["name"]: x.get("pid") or 0 for x in json.load(sys.stdin)[0]["services"]}
print(s.get("web", 0), s.get("db", 0))')
  read -r web_pid db_pid <<<"$pids"
  echo -e "$1\t$2\t$(rss "$daemon_pid")\t$(anon "$daemon_pid")\t$(largest_anon "$daemon_pid")\t$(awk '/^Threads:/ {print $2}' "/proc/$daemon_pid/status")\t$web_pid\t$(rss "$web_pid")\t$db_pid\t$(rss "$db_pid")\t$(cat "$base/posts" 2>/dev/null || echo 0)\t$(cat "$base/post_fail" 2>/dev/null || echo 0)" >>"$samples"
}

# Idle before the load: a sample every $every s for a minute (the first after 10 s).
sleep 10
sample idle 0
for _ in $(seq $(( 60 / every ))); do sleep "$every"; sample idle 0; done

echo "== load: wrk -t 2 -c 100 on $url/ and a curl POST loop, $minutes min =="
steal0=$(steal)
wrk -t 2 -c 100 -d "$(( minutes * every ))s" --latency "$url/" >"$base/wrk.out" 2>&1 &
load_pids+=($!)
(
  n=0; fail=0
  while [ ! -e "$base/stop" ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
      -d "name=soak&message=entry+$n" "$url/entries" || true)
    n=$((n + 1))
    [ "$code" = 303 ] || fail=$((fail + 1))
    # Published every 100 POSTs (and at the end), for the samples.
    if [ $((n % 100)) -eq 0 ]; then echo "$n" >"$base/posts"; echo "$fail" >"$base/post_fail"; fi
  done
  echo "$n" >"$base/posts"; echo "$fail" >"$base/post_fail"
) &
post_pid=$!
load_pids+=($post_pid)
start=$(date +%s)
for m in $(seq "$minutes"); do
  while [ $(( $(date +%s) - start )) -lt $(( m * every )) ]; do sleep 1; done
  sample load "$m"
done
touch "$base/stop"
wait "$post_pid"
wait "${load_pids[0]}" || true
steal1=$(steal)
echo "  (CPU time stolen by the hypervisor during the load: $(( 100 * (${steal1% *} - ${steal0% *}) / (${steal1#* } - ${steal0#* }) ))%; at the end: $(load))"

echo "== idle after the load, $idle_min min =="
sleep 15
sample after 0.25
start=$(date +%s)
for m in $(seq "$idle_min"); do
  while [ $(( $(date +%s) - start )) -lt $(( m * every )) ]; do sleep 1; done
  sample after "$m"
done
"$sturdy" ps >"$base/ps.out" 2>&1 || true

python3 - "$samples" "$base/wrk.out" "$minutes" <<'PY'
import csv, re, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
wrk = open(sys.argv[2]).read()
minutes = int(sys.argv[3])
mib = lambda kib: float(kib) / 1024
print(f"  {'phase':6s} {'min':>5s} {'daemon':>9s} {'(anon)':>9s} {'(arena)':>9s} {'thr':>4s} {'web hvt':>9s} {'db hvt':>9s} {'POSTs':>8s} {'failed':>6s}   (RSS in MiB)")
for r in rows:
    print(f"  {r['phase']:6s} {r['minute']:>5s} {mib(r['daemon_kib']):9.1f} {mib(r['anon_kib']):9.1f} {mib(r['arena_kib']):9.1f} {r['threads']:>4s} "
          f"{mib(r['web_kib']):9.1f} {mib(r['db_kib']):9.1f} {r['posts']:>8s} {r['post_fail']:>6s}")
for svc in ("web", "db"):
    pids = [r[f"{svc}_pid"] for r in rows]
    if len(set(pids)) > 1:
        print(f"  NOTE: {svc}'s monitor changed pid during the run (restarted): {sorted(set(pids))}")

m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", wrk)
rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk)
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
errors = re.search(r"Socket errors: (.*)", wrk)
if m and rps:
    print(f"  wrk: {m.group(1)} requests in {m.group(2)} ({float(rps.group(1)):.0f} req/s), "
          f"non-2xx/3xx: {bad.group(1) if bad else 0}, socket errors: {errors.group(1) if errors else 'none'}")
else:
    print("  wrk: no summary (it failed):\n" + wrk)
last_load = [r for r in rows if r["phase"] == "load"][-1]
print(f"  curl POSTs: {last_load['posts']} sent during the load (the last sample's count; "
      f"{rows[-1]['posts']} in all), {rows[-1]['post_fail']} not answered 303")

def verdict(name, col):
    idle = statistics.median(float(r[col]) for r in rows if r["phase"] == "idle")
    steady = [float(r[col]) for r in rows if r["phase"] == "load" and int(r["minute"]) >= 5]
    after = [float(r[col]) for r in rows if r["phase"] == "after"]
    peak = max(float(r[col]) for r in rows)
    line = f"  {name:10s} idle {mib(idle):6.1f} MiB, peak {mib(peak):6.1f}"
    ok = True
    if steady:
        flat = max(steady) / min(steady)
        ok &= flat <= 1.10
        line += (f"; minutes 5-{minutes}: {mib(min(steady)):.1f}-{mib(max(steady)):.1f} MiB, "
                 f"{flat:.2f}x (flat within 10%: {'met' if flat <= 1.10 else 'NOT met'})")
    else:
        line += f"; no sample after minute 5 (a run of {minutes} min): flatness not judged"
    back = after[-1] / idle
    ok &= back <= 1.10
    line += (f"; {len(after) - 1} min after the load: {mib(after[-1]):.1f} MiB, {back:.2f}x idle "
             f"(back near idle, <= 1.10x: {'met' if back <= 1.10 else 'NOT met'})")
    print(line)
    return ok

print("== verdict ==")
results = [verdict("daemon", "daemon_kib"), verdict("web hvt", "web_kib"), verdict("db hvt", "db_kib")]
verdict("(daemon anon)", "anon_kib")
print("  (daemon: VmRSS; anon: its RssAnon, heap and stacks, the rest being file pages (code) and the")
print("  port rings; arena: its largest anonymous mapping. A monitor's RSS is mostly the guest RAM its")
print("  guest has touched, which a guest does not give back, at most its mem: docs/operating.md, Memory)")
print(f"  all targets {'met' if all(results) else 'NOT met'}")
PY
echo "  at the end: $(load); compilers running: $(pgrep -c -x rustc || true)"
echo "  saved in $out"
