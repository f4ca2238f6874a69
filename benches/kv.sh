#!/usr/bin/env bash
# Benchmarks of the kv unikernel (issue: the guest SDK). Run as root:  sudo ./benches/kv.sh [N]
# 1. redis-benchmark -t get,set -c 50 -n N against kv through a TAP, beside two Debian
#    redis-servers in their own network namespace reached through a veth, from the same client
#    namespace: one with `appendonly yes appendfsync always` (fsync before each reply, as kv
#    does under sturdy-hvt: its SET is compared with this one) and one without persistence (its
#    GET is compared with kv's). All three keep their files in the same directory (same disk).
#    With perf, also each persisting server's fdatasync calls during its SET run: per second,
#    and requests covered by each (both group the writes of a round of their loop).
# 2. boot to first answered request: process start to the first PONG, median of 20.
# 3. web: `wrk -c 100 -d 10s` on the guestbook list page (web and kv on a Linux bridge).
# Everything runs in network namespaces this script creates and deletes.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
./scripts/install-deps.sh
cargo build -q --release -p sturdy-hvt -p guests
hvt=$PWD/target/release/sturdy-hvt
kv=$(cargo run -q --release -p guests --bin guest-path -- kv)
web=$(cargo run -q --release -p guests --bin guest-path -- web)
work=$(mktemp -d)
client=sturdy-bench-client-$$
server=sturdy-bench-redis-$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$client" 2>/dev/null || true
  ip netns del "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Client namespace: TAP to kv (10.0.0.2) and a veth to the redis-server namespace (10.1.0.2).
ip netns add "$client"; ip netns add "$server"
ip -n "$client" link set lo up; ip -n "$server" link set lo up
ip -n "$client" tuntap add tap0 mode tap
ip -n "$client" addr add 10.0.0.1/24 dev tap0; ip -n "$client" link set tap0 up
ip link add vb0 netns "$client" type veth peer name vb1 netns "$server"
ip -n "$client" addr add 10.1.0.1/24 dev vb0; ip -n "$client" link set vb0 up
ip -n "$server" addr add 10.1.0.2/24 dev vb1; ip -n "$server" link set vb1 up

truncate -s 256M "$work/kv.img"
ip netns exec "$client" "$hvt" --mem=256 --net:service=tap0 --block:storage="$work/kv.img" "$kv" \
  --sturdy.v1.net=service:10.0.0.2/24 --sturdy.v1.provide=kv:6379/tcp >"$work/kv.log" 2>&1 &
pids+=($!)
mkdir -p "$work/aof"
ip netns exec "$server" redis-server --bind 10.1.0.2 --port 6379 --save '' --appendonly no \
  --protected-mode no --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
ip netns exec "$server" redis-server --bind 10.1.0.2 --port 6380 --save '' --appendonly yes \
  --appendfsync always --dir "$work/aof" --protected-mode no --daemonize no >"$work/redis-aof.log" 2>&1 &
pids+=($!)
for target in "10.0.0.2 6379" "10.1.0.2 6379" "10.1.0.2 6380"; do
  set -- $target
  for _ in $(seq 100); do ip netns exec "$client" redis-cli -h $1 -p $2 PING >/dev/null 2>&1 && break; sleep 0.1; done
  ip netns exec "$client" redis-cli -h $1 -p $2 PING >/dev/null 2>&1 ||
    { echo "no answer from $1:$2; logs:" >&2; cat "$work"/*.log >&2; exit 1; }
done
echo "kv: $(ip netns exec "$client" redis-cli -h 10.0.0.2 CONFIG GET appendfsync | tr '\n' ' ')" \
  "redis-server (aof): $(ip netns exec "$client" redis-cli -h 10.1.0.2 -p 6380 CONFIG GET appendfsync | tr '\n' ' ')"
grep -q "appendfsync always" "$work/kv.log" || { echo "kv does not flush here:" >&2; cat "$work/kv.log" >&2; exit 1; }

# fdatasync calls of a server during its run (all of them during SET: GET writes nothing), counted
# by perf from the kernel's syscall tracepoint, when perf is there; -1 otherwise.
have_perf=false
perf stat -x, -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1 && have_perf=true
bench() { # ADDR PORT PID -> "set_rps get_rps fdatasyncs"
  local stat=$work/perf.stat sp=
  rm -f "$stat"
  if $have_perf; then
    perf stat -x, -e syscalls:sys_enter_fdatasync -p "$3" -o "$stat" &
    sp=$!; sleep 0.2
  fi
  ip netns exec "$client" redis-benchmark -h "$1" -p "$2" -t set,get -c 50 -n "$n" --csv 2>/dev/null >"$work/csv"
  if [ -n "$sp" ]; then kill -INT "$sp"; wait "$sp" 2>/dev/null || true; fi
  python3 - "$work/csv" "$stat" <<'PY'
import csv, os, sys
r = {row[0]: float(row[1]) for row in csv.reader(open(sys.argv[1])) if row and row[0] in ("SET", "GET")}
f = -1
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        p = line.strip().split(",")
        if len(p) > 2 and "fdatasync" in p[2] and p[0].isdigit():
            f = int(p[0])
print(r["SET"], r["GET"], f)
PY
}
echo "== redis-benchmark -t set,get -c 50 -n $n (5 runs each, interleaved; medians) =="
for i in 1 2 3 4 5; do
  bench 10.0.0.2 6379 "${pids[0]}" >>"$work/kv.rps"
  bench 10.1.0.2 6380 "${pids[2]}" >>"$work/aof.rps"
  bench 10.1.0.2 6379 "${pids[1]}" >>"$work/redis.rps"
done
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/kv.rps" "$work/aof.rps" "$work/redis.rps" "$n" <<'PY'
import statistics, sys
def load(p):
    rows = [list(map(float, l.split())) for l in open(p) if l.strip()]
    return [statistics.median(c) for c in zip(*rows)], [min(c) for c in zip(*rows)], [max(c) for c in zip(*rows)]
kv, aof, redis = (load(p) for p in sys.argv[1:4])
def line(op, i, other, name):
    ratio = kv[0][i] / other[0][i]
    print(f"  {op}: kv {kv[0][i]:7.0f} req/s ({kv[1][i]:.0f}-{kv[2][i]:.0f})   {name} {other[0][i]:7.0f} req/s "
          f"({other[1][i]:.0f}-{other[2][i]:.0f})   ratio {ratio:.2f}x   target >= 1.0x: {'met' if ratio >= 1.0 else 'NOT met'}")
line("SET", 0, aof, "redis-server appendfsync always")
line("GET", 1, redis, "redis-server, no persistence  ")
print(f"  (for reference: SET redis-server, no persistence {redis[0][0]:.0f} req/s; "
      f"GET redis-server appendfsync always {aof[0][1]:.0f} req/s)")
# The disk's fsync latency and the host's load drift between runs: the ratio of each round's
# neighbouring runs, then their median, is steadier than the ratio of medians.
rows = lambda p: [list(map(float, l.split())) for l in open(p) if l.strip()]
k, a, r = (rows(p) for p in sys.argv[1:4])
set_pairs = sorted(x[0] / y[0] for x, y in zip(k, a))
get_pairs = sorted(x[1] / y[1] for x, y in zip(k, r))
print(f"  paired by round: SET kv/appendfsync-always median {statistics.median(set_pairs):.2f}x "
      f"({' '.join(f'{v:.2f}' for v in set_pairs)}); GET kv/no-persistence median "
      f"{statistics.median(get_pairs):.2f}x ({' '.join(f'{v:.2f}' for v in get_pairs)})")
# Each server groups the writes of one round of its loop under one fdatasync: how many requests
# one covered, and how many it did per second of the SET run (fsync latency = the rest).
n = int(sys.argv[4])
for name, runs in (("kv", k), ("redis-server appendfsync always", a)):
    fs = [x[2] for x in runs if x[2] > 0]
    if len(fs) == len(runs):
        per = statistics.median(n / f for f in fs)
        rate = statistics.median(f * x[0] / n for f, x in zip(fs, runs))
        print(f"  SET {name}: fdatasync per second median {rate:.0f}, requests per fdatasync median {per:.1f}")
    else:
        print(f"  SET {name}: fdatasync not counted (needs perf with syscall tracepoints)")
PY
kill -9 "${pids[0]}" 2>/dev/null || true

echo "== boot to first answered PING (20 runs) =="
# A static neighbour entry, so the first SYN needs no ARP round (whose retries are 1 s apart).
ip -n "$client" neigh replace 10.0.0.2 lladdr 02:00:0a:00:00:02 dev tap0 nud permanent
ip netns exec "$client" python3 - "$hvt" "$kv" "$work/boot.img" <<'PY'
import socket, statistics, subprocess, sys, time
hvt, kv, img = sys.argv[1:]
open(img, "wb").truncate(8 << 20)
times = []
for _ in range(20):
    t0 = time.perf_counter()
    p = subprocess.Popen([hvt, "--mem=64", "--net:service=tap0", "--net-mac:service=02:00:0a:00:00:02",
                          f"--block:storage={img}", kv, "--solo5:quiet",
                          "--sturdy.v1.net=service:10.0.0.2/24", "--sturdy.v1.provide=kv:6379/tcp"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.create_connection(("10.0.0.2", 6379), timeout=0.005)
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                break
        except OSError:
            time.sleep(0.0005)
    times.append((time.perf_counter() - t0) * 1000)
    s.close(); p.kill(); p.wait()
print(f"  process start to first PONG: median {statistics.median(times):.1f} ms  min {min(times):.1f}  max {max(times):.1f}")
PY

echo "== web: wrk -c 100 -d 10s on the guestbook list page (10 entries) =="
ip -n "$client" link add br0 type bridge
ip -n "$client" addr add 10.2.0.1/24 dev br0; ip -n "$client" link set br0 up
for t in tapk tapw; do
  ip -n "$client" tuntap add $t mode tap; ip -n "$client" link set $t master br0; ip -n "$client" link set $t up
done
truncate -s 64M "$work/web-kv.img"
ip netns exec "$client" "$hvt" --mem=128 --net:service=tapk --block:storage="$work/web-kv.img" "$kv" --solo5:quiet \
  --sturdy.v1.net=service:10.2.0.3/24 --sturdy.v1.provide=kv:6379/tcp >"$work/webkv.log" 2>&1 &
pids+=($!)
ip netns exec "$client" "$hvt" --mem=128 --net:service=tapw "$web" --solo5:quiet --sturdy.v1.net=service:10.2.0.2/24 \
  --sturdy.v1.use=db:10.2.0.3:6379/tcp --sturdy.v1.provide=http:80/tcp >"$work/web.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ip netns exec "$client" curl -sf --max-time 1 http://10.2.0.2/health >/dev/null && break; sleep 0.1; done
for i in $(seq 10); do
  ip netns exec "$client" curl -sf -o /dev/null --data "name=bench&message=entry+$i" http://10.2.0.2/entries
done
ip netns exec "$client" wrk -t 2 -c 100 -d 10s --latency http://10.2.0.2/ | tee "$work/wrk.txt" | grep -E "Requests/sec|99%|Non-2xx|Socket errors" | sed 's/^/  /'
