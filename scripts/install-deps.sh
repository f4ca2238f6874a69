#!/usr/bin/env bash
# Installs the Debian packages sturdy's tests and benchmarks use (real clients: ping, ip, ...).
# Idempotent and quiet when everything is present; needs root (apt-get) otherwise.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have ping || need+=(iputils-ping)
have gcc || need+=(gcc)
have readelf || need+=(binutils)
have hyperfine || need+=(hyperfine)
have redis-cli || need+=(redis-tools)
have redis-server || need+=(redis-server)
have wrk || need+=(wrk)
have curl || need+=(curl)
have tshark || need+=(tshark)
have dot || need+=(graphviz)
have strace || need+=(strace)
# The trust tests: a second user (setpriv), a process's fd limit (prlimit), a group of their
# own (groupadd), FIFOs (mkfifo).
have setpriv || need+=(util-linux)
have prlimit || need+=(util-linux)
have groupadd || need+=(passwd)
have mkfifo || need+=(coreutils)

if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -e /dev/kvm ]; then
  echo "install-deps: /dev/kvm is missing: sturdy needs KVM (tests that boot guests will fail)" >&2
fi
