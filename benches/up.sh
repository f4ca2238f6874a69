#!/usr/bin/env bash
# Benchmarks of the daemon and CLI (issue: sturdy up/down/ps). Prints medians, min/max, the
# targets (met / NOT met) and ratios against baselines measured in the same run. Run as root:
#   sudo ./benches/up.sh [UP_RUNS] [CYCLES] [PS_RUNS]     (defaults 15, 5, 100)
#   sudo ./benches/up.sh | tee benches/results/$(date +%F)-up.txt
# Everything runs against a daemon of its own (STURDY_HOME in a fresh /tmp/sturdy-bench-XXXX,
# stopped and deleted on exit), so an installed sturdy is left alone.
# 0. baselines: `/bin/true` and `sturdy --version` (exec + CLI start), hyperfine -N.
# 1. `sturdy up -d --wait` of examples/guestbook (image paths made absolute, host port 8080
#    replaced by a free port) until web and db are healthy; the first run starts the daemon
#    (cold, reported apart), then UP_RUNS runs with the daemon running, each checked (GET
#    /health through the published port answers 200 once `up` returned) and followed by a
#    timed `sturdy down`. Times are from the exec of `sturdy` to its exit; the phases (db
#    started/healthy, web started/healthy) are when `up` printed them. Target: median <= 500 ms.
# 2. A generated application of 50 services (tcpecho: a guest with a NIC that serves `echo` and
#    otherwise sleeps in POLL; 32M each; a chain of capabilities: s01 uses s02, s02 uses s03, ..).
#    CYCLES times: `sturdy up -d` until all 50 are started (checked with `sturdy ps --json`: 50
#    running, each with a live pid; target <= 5 s), then once all 50 consoles say "serving
#    echo": the daemon's RSS (VmRSS; target <= 60 MB) and the host RSS per instance (sum of the
#    VmRSS of the 50 sturdy-hvt processes / 50; target <= 6 MiB), then `sturdy down` (target
#    <= 2 s; checked: every monitor is gone when it returns).
# 3. `sturdy ps` and `sturdy ps --json` with the 50 services up (hyperfine -N, PS_RUNS runs,
#    beside /bin/true, `sturdy --version` and `sturdy daemon status --json`, one API round trip):
#    target median <= 100 ms.
# The load average is printed at the start and the end: other work on the host skews the times.
set -euo pipefail
cd "$(dirname "$0")/.."
up_runs=${1:-15}
cycles=${2:-5}
ps_runs=${3:-100}
for n in "$up_runs" "$cycles" "$ps_runs"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [UP_RUNS] [CYCLES] [PS_RUNS] (positive integers)" >&2; exit 2; }
done

die() { echo "up.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): the daemon runs unikernels in KVM and publishes host ports"
[ -c /dev/kvm ] || die "no /dev/kvm: services run in KVM virtual machines (enable KVM or nested virtualisation)"
( exec 3<>/dev/kvm ) 2>/dev/null || die "cannot open /dev/kvm read-write"
./scripts/install-deps.sh
for tool in hyperfine curl python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh installs hyperfine and curl; python3 and cargo are needed too)"
done

cargo build -q --release -p sturdy-cli -p sturdy-hvt -p guests
sturdy=$PWD/target/release/sturdy
[ -x "$sturdy" ] && [ -x target/release/sturdy-hvt ] || die "the build did not produce target/release/sturdy and sturdy-hvt"
img() { cargo run -q --release -p guests --bin guest-path -- "$1" || die "no guest image $1"; }
web=$(img web); kv=$(img kv); tcpecho=$(img tcpecho)

base=$(mktemp -d /tmp/sturdy-bench-XXXX)
export STURDY_HOME=$base/state
daemon_pid=
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
cleanup() {
  set +e
  if [ -S "$STURDY_HOME/sturdy.sock" ]; then "$sturdy" daemon stop >/dev/null 2>&1; fi
  # A daemon that did not stop (its monitors die with it: PR_SET_PDEATHSIG).
  if [ -n "$daemon_pid" ] && alive "$daemon_pid"; then
    echo "up.sh: the daemon (pid $daemon_pid) did not stop: killing it" >&2
    kill -9 "$daemon_pid"
  fi
  rm -rf "$base"
}
trap cleanup EXIT

# Runs a command, timing it from exec to exit; writes OUT (JSON: wall ms, exit status, start
# time, every output line with its ms) and exits with the command's status.
cat >"$base/timed.py" <<'PY'
import json, subprocess, sys, threading, time
out, cmd = sys.argv[1], sys.argv[2:]
lines = []
start = time.time()
t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
def read():
    for line in p.stdout:
        lines.append([round((time.perf_counter() - t0) * 1000, 2), line.rstrip("\n")])
reader = threading.Thread(target=read, daemon=True)
reader.start()
rc = p.wait()
ms = (time.perf_counter() - t0) * 1000
reader.join(2)
json.dump({"ms": ms, "rc": rc, "start": start, "cmd": cmd, "lines": lines}, open(out, "w"))
if rc != 0:
    for t, l in lines:
        print(f"    {t:8.1f} ms  {l}", file=sys.stderr)
sys.exit(rc)
PY
timed() { python3 "$base/timed.py" "$@"; }
# Prints a JSON file's field: json FILE EXPR (EXPR in Python over `d`).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# Median, min and max of the numbers in FILE (one a line), with a unit and a target.
stats() { # FILE LABEL UNIT TARGET(upper bound, same unit)
  python3 - "$@" <<'PY'
import statistics, sys
path, label, unit, target = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
v = [float(x) for x in open(path).read().split()]
m = statistics.median(v)
print(f"  {label:38s} median {m:8.1f} {unit}  min {min(v):.1f}  max {max(v):.1f}  (n={len(v)})   "
      f"target <= {target:g} {unit}: {'met' if m <= target else 'NOT met'}")
PY
}
load() { uptime | sed 's/.*load average/load average/'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'; }
fail() { # MESSAGE: the state of the daemon, then exit
  echo "up.sh: $*" >&2
  "$sturdy" ps >&2 || true
  "$sturdy" logs --tail 5 >&2 || true
  tail -n 20 "$STURDY_HOME/daemon.log" >&2 || true
  exit 1
}

echo "benches/up.sh $up_runs $cycles $ps_runs, $(date -u +%F), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r)"
echo "  at start: $(load); compilers running: $(pgrep -c -x rustc || true); sturdy at $(git rev-parse --short HEAD 2>/dev/null || echo '?') with $(git status --porcelain 2>/dev/null | grep -c . || true) files changed or new"

echo "== baseline: exec to exit (hyperfine -N, no daemon running) =="
hyperfine -N --style none --warmup 10 --runs 200 --export-json "$base/baseline.json" \
  "/bin/true" "$sturdy --version" >/dev/null 2>&1 || die "hyperfine failed on the baseline"
python3 - "$base/baseline.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for name, x in zip(("/bin/true", "sturdy --version"), r):
    print(f"  {name:38s} median {x['median']*1000:8.2f} ms  min {x['min']*1000:.2f}  max {x['max']*1000:.2f}")
print(f"  sturdy --version / true: {r[1]['median']/r[0]['median']:.1f}x")
PY
for i in $(seq 20); do timed "$base/runner.$i.json" /bin/true; json "$base/runner.$i.json" 'd["ms"]'; done >"$base/runner.ms"
echo "  (the timings below run each command from a Python wrapper: /bin/true through it takes a median $(python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in open(sys.argv[1])):.1f}")' "$base/runner.ms") ms)"

# 1. The guestbook.
port=$(free_port)
mkdir -p "$base/guestbook"
sed -e "s#^\(    image: \).*/web\$#\1$web#" -e "s#^\(    image: \).*/kv\$#\1$kv#" -e "s/\"8080:80\"/\"$port:80\"/" \
  examples/guestbook/sturdy.yaml >"$base/guestbook/sturdy.yaml"
grep -q "image: $web\$" "$base/guestbook/sturdy.yaml" && grep -q "image: $kv\$" "$base/guestbook/sturdy.yaml" &&
  grep -q "\"$port:80\"" "$base/guestbook/sturdy.yaml" ||
  die "examples/guestbook/sturdy.yaml changed: cannot rewrite its images and port (see $base/guestbook/sturdy.yaml)"
"$sturdy" config "$base/guestbook" >/dev/null || die "sturdy config rejects the rewritten guestbook"
[ ! -e "$STURDY_HOME" ] || die "$STURDY_HOME exists: the cold run needs a fresh state directory"
check_health() { # RUN: GET /health through the published port must answer 200 right away
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health") || true
  [ "$code" = 200 ] || fail "run $1: up -d --wait returned but GET /health on port $port answered '$code', not 200"
}
echo "== guestbook: sturdy up -d --wait (web + db healthy), then sturdy down; port $port =="
timed "$base/gb.cold.json" "$sturdy" up -d --wait "$base/guestbook" || fail "the cold up -d --wait failed"
check_health cold
daemon_pid=$("$sturdy" daemon status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
timed "$base/gbdown.cold.json" "$sturdy" down || fail "down after the cold up failed"
for i in $(seq "$up_runs"); do
  timed "$base/gb.$i.json" "$sturdy" up -d --wait "$base/guestbook" || fail "run $i: up -d --wait failed"
  check_health "$i"
  timed "$base/gbdown.$i.json" "$sturdy" down || fail "run $i: down failed"
done
python3 - "$base" "$up_runs" <<'PY'
import json, re, statistics, sys
base, n = sys.argv[1], int(sys.argv[2])
def phases(d):
    out = {}
    for t, line in d["lines"]:
        m = re.match(r"(\w+)\s+(started|healthy)\b", line)
        if m and f"{m[1]} {m[2]}" not in out:
            out[f"{m[1]} {m[2]}"] = t
    return out
cold = json.load(open(f"{base}/gb.cold.json"))
warm = [json.load(open(f"{base}/gb.{i}.json")) for i in range(1, n + 1)]
down = [json.load(open(f"{base}/gbdown.{i}.json"))["ms"] for i in range(1, n + 1)]
ms = [d["ms"] for d in warm]
p = phases(cold)
print(f"  cold (starts the daemon)               {cold['ms']:8.1f} ms   "
      + ", ".join(f"{k} at {v:.0f}" for k, v in p.items()))
m = statistics.median(ms)
print(f"  warm up -d --wait                      median {m:8.1f} ms  min {min(ms):.1f}  max {max(ms):.1f}  (n={n})   "
      f"target <= 500 ms: {'met' if m <= 500 else 'NOT met'}")
keys = [k for k in ("db started", "db healthy", "web started", "web healthy") if all(k in phases(d) for d in warm)]
print("  phases, median ms after exec:          " + ", ".join(
    f"{k} {statistics.median(phases(d)[k] for d in warm):.0f}" for k in keys))
print(f"  warm up, each run (ms):                " + " ".join(f"{x:.0f}" for x in ms))
print(f"  down (guestbook)                       median {statistics.median(down):8.1f} ms  min {min(down):.1f}  max {max(down):.1f}")
print(f"  every run: GET /health answered 200 right after up returned")
PY
echo "  daemon RSS after the guestbook runs, no application up: $(( $(rss_kib "$daemon_pid") / 1024 )) MiB"
echo "  $(load)"

# 2. Fifty services.
mkdir -p "$base/fifty"
python3 - "$tcpecho" >"$base/fifty/sturdy.yaml" <<'PY'
import sys
print("# Generated by benches/up.sh: 50 idle echo servers, s01 uses s02, s02 uses s03, ...")
print("name: fifty\nservices:")
for i in range(1, 51):
    print(f"  s{i:02d}:\n    image: {sys.argv[1]}\n    mem: 32M\n    provides: {{ echo: 7/tcp }}")
    if i < 50:
        print(f"    uses: [s{i + 1:02d}]")
PY
"$sturdy" config "$base/fifty" >/dev/null || die "sturdy config rejects the generated application ($base/fifty/sturdy.yaml)"
sleep 60 & sleep_pid=$!; sleep 0.2; sleep_rss=$(rss_kib $sleep_pid); kill $sleep_pid; wait $sleep_pid 2>/dev/null || true
echo "== fifty services (tcpecho, 32M each, a chain of capabilities): up -d, RSS, down; $cycles cycles =="
for c in $(seq "$cycles"); do
  timed "$base/up50.$c.json" "$sturdy" up -d "$base/fifty" || fail "cycle $c: up -d of the 50 services failed"
  "$sturdy" ps -p fifty --json >"$base/ps50.$c.json" || fail "cycle $c: ps --json failed"
  pids=$(python3 - "$base/ps50.$c.json" <<'PY'
import json, os, sys
apps = json.load(open(sys.argv[1]))
s = apps[0]["services"]
bad = [x["name"] for x in s if not x.get("pid") or x["state"] != "running" or not os.path.exists(f"/proc/{x['pid']}")]
if len(s) != 50 or bad:
    sys.exit(f"{len(s)} services, not running or without a live pid: {bad}")
print(" ".join(str(x["pid"]) for x in s))
PY
  ) || fail "cycle $c: after up -d returned, sturdy ps --json does not show 50 running services"
  # Every guest has booted (its console says so) before memory is measured.
  for _ in $(seq 100); do
    n=$("$sturdy" logs -p fifty --json | grep -c '"serving echo on port 7"' || true)
    [ "$n" -ge 50 ] && break
    sleep 0.1
  done
  [ "$n" -ge 50 ] || fail "cycle $c: only $n of the 50 consoles say 'serving echo' after 10 s"
  "$sturdy" logs -p fifty --json >"$base/logs50.$c.json"
  sleep 0.5
  "$sturdy" daemon status --json >"$base/status.$c.json"
  rss_kib "$daemon_pid" >>"$base/daemon.kib"
  awk '/^VmHWM:/ {print $2}' "/proc/$daemon_pid/status" >>"$base/daemon_hwm.kib"
  awk '/^Threads:/ {print $2}' "/proc/$daemon_pid/status" >"$base/daemon.threads"
  json "$base/status.$c.json" 'd["rss_bytes"] / 1024' >>"$base/daemon_api.kib"
  total=0; for p in $pids; do total=$(( total + $(rss_kib "$p") )); done
  echo $(( total / 50 )) >>"$base/hvt.kib"
  if [ "$c" -eq "$cycles" ]; then
    # 3. ps with the 50 services up.
    n=$("$sturdy" ps | grep -c ' running ' || true)
    [ "$n" -eq 50 ] || fail "sturdy ps shows $n running services, not 50"
    hyperfine -N --style none --warmup 10 --runs "$ps_runs" --export-json "$base/ps.json" \
      "/bin/true" "$sturdy --version" "$sturdy daemon status --json" "$sturdy ps" "$sturdy ps --json" \
      >/dev/null 2>"$base/hyperfine.err" || { cat "$base/hyperfine.err" >&2; fail "hyperfine on sturdy ps failed"; }
    ps_load=$(load)
  fi
  timed "$base/down50.$c.json" "$sturdy" down || fail "cycle $c: down failed"
  left=0; for p in $pids; do if alive "$p"; then left=$((left + 1)); fi; done
  [ "$left" -eq 0 ] || fail "cycle $c: $left of the 50 monitors still run after down returned"
done
for c in $(seq "$cycles"); do json "$base/up50.$c.json" 'd["ms"]'; done >"$base/up50.ms"
for c in $(seq "$cycles"); do json "$base/down50.$c.json" 'd["ms"]'; done >"$base/down50.ms"
# When the last of the 50 consoles said "serving echo", from the exec of `up`.
for c in $(seq "$cycles"); do
  python3 - "$base/up50.$c.json" "$base/logs50.$c.json" <<'PY'
import datetime, json, sys
start = json.load(open(sys.argv[1]))["start"]
stamp = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
times = [stamp(json.loads(l)["time"]) for l in open(sys.argv[2]) if '"serving echo on port 7"' in l]
times = [t for t in times if t >= start - 0.002]
if len(times) != 50:
    sys.exit(f"{len(times)} consoles said 'serving echo' after up started, not 50")
print((max(times) - start) * 1000)
PY
done >"$base/serving50.ms"
stats "$base/up50.ms" "up -d, 50 services started" ms 5000
python3 - "$base/serving50.ms" <<'PY'
import statistics, sys
v = [float(x) for x in open(sys.argv[1]).read().split()]
print(f"  {'(all 50 consoles say serving echo)':38s} median {statistics.median(v):8.1f} ms  min {min(v):.1f}  max {max(v):.1f}")
PY
python3 - "$base/daemon.kib" "$base/daemon_api.kib" "$base/daemon_hwm.kib" "$(cat "$base/daemon.threads")" <<'PY'
import statistics, sys
load = lambda p: [float(x) for x in open(p).read().split()]
v, api, hwm = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
m = statistics.median(v) * 1024 / 1e6
print(f"  {'daemon RSS, 50 services up (VmRSS)':38s} median {m:8.1f} MB  min {min(v)*1024/1e6:.1f}  max {max(v)*1024/1e6:.1f}   "
      f"target <= 60 MB: {'met' if m <= 60 else 'NOT met'}")
print(f"  {'':38s} ({statistics.median(v)/1024:.1f} MiB; `daemon status` says {statistics.median(api)/1024:.1f} MiB; "
      f"peak VmHWM {max(hwm)/1024:.1f} MiB; {sys.argv[4]} threads)")
PY
python3 - "$base/hvt.kib" "$sleep_rss" <<'PY'
import statistics, sys
v = [float(x) for x in open(sys.argv[1]).read().split()]
base = float(sys.argv[2])
m = statistics.median(v)
print(f"  {'RSS per idle instance (sturdy-hvt)':38s} median {m/1024:8.2f} MiB  min {min(v)/1024:.2f}  max {max(v)/1024:.2f}   "
      f"target <= 6 MiB: {'met' if m <= 6 * 1024 else 'NOT met'}")
print(f"  {'':38s} (50 instances: {m*50/1024:.0f} MiB in all; baseline `sleep`: {base/1024:.2f} MiB, {m/base:.1f}x)")
PY
stats "$base/down50.ms" "down, 50 services" ms 2000
echo "  every cycle: 50 running with live pids after up; no monitor left after down"

echo "== sturdy ps, 50 services up (hyperfine -N, $ps_runs runs; $ps_load) =="
python3 - "$base/ps.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
names = ["/bin/true", "sturdy --version", "sturdy daemon status --json", "sturdy ps", "sturdy ps --json"]
x = dict(zip(names, r))
ms = lambda v: v * 1000
for name in names:
    e = x[name]
    line = f"  {name:38s} median {ms(e['median']):8.2f} ms  min {ms(e['min']):.2f}  max {ms(e['max']):.2f}"
    if name.startswith("sturdy ps"):
        line += f"   target <= 100 ms: {'met' if ms(e['median']) <= 100 else 'NOT met'}"
    print(line)
for name in ("sturdy ps", "sturdy ps --json"):
    print(f"  {name}: {x[name]['median']/x['sturdy --version']['median']:.1f}x sturdy --version, "
          f"{x[name]['median']/x['sturdy daemon status --json']['median']:.1f}x daemon status, "
          f"{x[name]['median']/x['/bin/true']['median']:.0f}x /bin/true")
PY
echo "  at the end: $(load); compilers running: $(pgrep -c -x rustc || true)"
