#!/usr/bin/env bash
# The main job of README.md: builds sturdy and the guest images, starts the guestbook
# (examples/guestbook/sturdy.yaml: web + kv, web published on port 8080) with
# `sturdy up -d --wait`, posts an entry and reads the guestbook back with curl, and shows
# `sturdy ps`. The application keeps running: open http://localhost:8080, then
#   target/release/sturdy logs -f        follow both consoles
#   target/release/sturdy down           stop it (--volumes also deletes its data)
# `./scripts/guestbook.sh --attach` runs it attached instead (`sturdy up`: logs until Ctrl-C).
# Run as root (KVM). State (database, volumes) in $STURDY_HOME, else /var/lib/sturdy.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build -q --release --workspace
sturdy=target/release/sturdy
if [[ "${1:-}" == --attach ]]; then
    exec "$sturdy" up examples/guestbook
fi
"$sturdy" up -d --wait examples/guestbook
echo
echo "\$ curl -d 'name=sturdy&message=hello from a unikernel' localhost:8080/entries"
curl -sS -o /dev/null -w '%{http_code}\n' -d 'name=sturdy&message=hello from a unikernel' \
    localhost:8080/entries
echo "\$ curl localhost:8080/entries"
curl -sS localhost:8080/entries
echo
echo
echo "\$ sturdy ps"
"$sturdy" ps
echo
echo "The guestbook runs: open http://localhost:8080; '$sturdy logs -f' follows it,"
echo "'$sturdy down' stops it."
