#!/usr/bin/env bash
# Regenerate crates/berth-cli/symbol-order.txt: the functions `berth serve` runs while
# it starts and serves a representative workload, which the release link places side
# by side (lld --symbol-ordering-file, passed by crates/berth-cli/build.rs).
#
# Why: the kernel maps a binary's code in 64 KiB "fault-around" windows, so a server
# whose start-up and request code is spread over the whole 14 MB text segment has most
# of it resident (idle RSS ≈ 13 MB, issue 5's goal is 12 MB). Grouping the ~1,500
# functions it actually runs keeps the resident code near their size.
#
# How: callgrind (valgrind) records every function executed by a release `berth serve`
# while `berth bench` pushes (monolithic and chunked), pulls, reads manifests by tag and
# digest, lists tags, and curl reads /metrics, /healthz and the catalog. Names are the
# mangled symbols of that very build; after dependency upgrades some stop matching
# (they are then skipped silently) and this script should be run again:
# `benches/compare.sh` reports how many still match.
#
# Usage: scripts/symbol-order.sh [--skip-build]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=crates/berth-cli/symbol-order.txt

if [[ "${1:-}" != --skip-build ]]; then
  cargo build --release -p berth-cli
fi
bin=$root/target/release/berth
command -v valgrind >/dev/null || { echo "symbol-order: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-symorder.XXXXXX")
server=
cleanup() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
  --compress-pos=no --callgrind-out-file="$tmp/callgrind.out" \
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$tmp/data" >"$tmp/server.log" 2>&1 &
server=$!

"$bin" bench "$url" --scenario ready --timeout 120 >/dev/null
bench() { "$bin" bench "$url" "$@" >/dev/null; }
bench --scenario push --size 4MiB --iterations 2 --warmup 1
bench --scenario push-chunked --size 4MiB --chunk-size 1MiB --iterations 2 --warmup 1
bench --scenario pull --size 4MiB --iterations 2 --warmup 1
bench --scenario manifest --by tag --method get -c 4 --duration 2 --warmup 1
bench --scenario manifest --by digest --method head -c 4 --duration 2 --warmup 1
bench --scenario tags --tags 200 --page 50 --duration 2 --warmup 1
bench --scenario mixed --size 1MiB -c 2 --duration 2 --warmup 1
for path in /metrics /healthz /readyz /v2/_catalog /v2/nope/manifests/latest; do
  curl -s -o /dev/null "$url$path" || true
done

kill -TERM "$server"
wait "$server" || true
server=

# Every function of the berth binary that ran.
python3 - "$tmp/callgrind.out" "$bin" >"$tmp/order" <<'EOF'
import sys
path, binary = sys.argv[1], sys.argv[2]
cost = {}
ob = fn = None
skip = False
for line in open(path, encoding="utf-8", errors="replace"):
    if line.startswith("ob="):
        ob = line[3:].strip()
    elif line.startswith("fn="):
        # callgrind marks recursion levels as NAME'2: the symbol is NAME
        fn = line[3:].strip().split("'")[0] if ob == binary else None
        if fn is not None:
            cost.setdefault(fn, 0)
    elif line.startswith("calls="):
        skip = True  # the next cost line is the call's inclusive cost
    elif line[:1].isdigit() and skip:
        skip = False
    elif fn is not None and line[:1].isdigit():
        parts = line.split()
        if len(parts) >= 2:
            cost[fn] += int(parts[1])
# Sorted by name, not by cost: the point is that they sit together, and a sorted
# list changes little from one run of this script to the next (reviewable diffs).
for name in sorted(cost):
    if name.startswith("_Z") or name.startswith("_R") or name.isidentifier():
        print(name)
EOF
n=$(wc -l <"$tmp/order")
if (( n < 200 )); then
  echo "symbol-order: only $n functions recorded; is the server log ($tmp/server.log) sane?" >&2
  cat "$tmp/server.log" >&2
  exit 1
fi
mv "$tmp/order" "$out"
echo "symbol-order: $n functions written to $out; rebuild with cargo build --release to use them"
