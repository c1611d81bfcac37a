#!/usr/bin/env bash
# ab.sh — compare two berth binaries on one scenario, interleaved, in pairs.
#
#   benches/ab.sh [options] BIN_A BIN_B
#
# Starts `BIN_A serve` and `BIN_B serve` side by side (loopback, free ports, data
# under target/), then for each of --pairs rounds runs the same `berth bench`
# scenario against A and then B (BIN_A's load generator for both, so only the
# server differs) and prints both throughputs and B ÷ A. The summary is the mean
# and median of the pairs' ratios with their standard error: on a 2-core VM
# whose speed drifts from minute to minute, a ratio of one pair means little,
# the mean of ten does. Run it with A = B once to see the noise floor (on the
# machine of docs/performance.md: 1.02 ± 0.015 for 10 pairs of monolithic
# 200 MiB pushes).
#
# For a quick build of each side without LTO (~40 s instead of minutes):
#   CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
#   BERTH_NO_SYMBOL_ORDER=1 cargo build --release -p berth-cli --target-dir /tmp/tgt-a
#
# This is a benchmark, not a test: it never fails on timing. Exit status 1 means
# the harness broke (a server did not start, a bench run failed).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: benches/ab.sh [options] BIN_A BIN_B

  --pairs N         rounds of A-then-B (default 10)
  --scenario S      berth bench scenario: push, push-chunked, pull (default push)
  --size SIZE       blob size (default 200MiB)
  --iterations N    measured operations per run (default 4; 1 warm-up before)
  --env-a VAR=VAL   environment for server A (repeatable)
  --env-b VAR=VAL   environment for server B (repeatable)
  -- ARGS           extra arguments for `berth bench` (e.g. --chunk-size 16MiB)
EOF
}

PAIRS=10
SCENARIO=push
SIZE=200MiB
ITERS=4
ENV_A=()
ENV_B=()
EXTRA=()
POS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --iterations) ITERS=$2; shift 2 ;;
    --env-a) ENV_A+=("$2"); shift 2 ;;
    --env-b) ENV_B+=("$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) echo "ab.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) POS+=("$1"); shift ;;
  esac
done
[ ${#POS[@]} -eq 2 ] || { usage >&2; exit 2; }
BIN_A=$(realpath "${POS[0]}")
BIN_B=$(realpath "${POS[1]}")
for b in "$BIN_A" "$BIN_B"; do
  [ -x "$b" ] || { echo "ab.sh: $b is not an executable" >&2; exit 2; }
done
[[ "$PAIRS" =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: --pairs must be a positive number" >&2; exit 2; }
for t in jq python3 curl; do
  command -v "$t" >/dev/null || { echo "ab.sh: missing tool $t" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$ROOT/target"
TMP=$(mktemp -d "$ROOT/target/bench-ab.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start SIDE BIN ENV...: a server with its own data dir; sets URL_<SIDE>.
start() {
  local side=$1 bin=$2 port i
  shift 2
  port=$(free_port)
  mkdir -p "$TMP/$side"
  env RUST_LOG=warn BERTH_LOG=warn "$@" "$bin" serve --listen "127.0.0.1:$port" \
    --data-dir "$TMP/$side/data" >"$TMP/$side.log" 2>&1 </dev/null &
  PIDS+=($!)
  for ((i = 0; i < 150; i++)); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/v2/"; then
      printf -v "URL_$side" '%s' "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "ab.sh: server $side ($bin) did not start:" >&2
  tail -n 5 "$TMP/$side.log" >&2
  exit 1
}

start a "$BIN_A" "${ENV_A[@]}"
start b "$BIN_B" "${ENV_B[@]}"
echo "A: $BIN_A ${ENV_A[*]}"
echo "B: $BIN_B ${ENV_B[*]}"
echo "$SCENARIO, $SIZE, $ITERS measured + 1 warm-up per run, $PAIRS pairs"

# run SIDE: one bench run against that side; prints MiB/s.
run() {
  local side=$1 url out
  url=$(eval echo "\$URL_$side")
  out=$TMP/$side.json
  sync
  if ! "$BIN_A" bench "$url" --scenario "$SCENARIO" --size "$SIZE" --iterations "$ITERS" \
    --warmup 1 --output json "${EXTRA[@]}" >"$out" 2>"$TMP/$side.bench.err"; then
    echo "ab.sh: berth bench against $side failed:" >&2
    tail -n 3 "$TMP/$side.bench.err" >&2
    exit 1
  fi
  jq -e '.errors == 0' "$out" >/dev/null || { echo "ab.sh: errors in the run against $side" >&2; exit 1; }
  jq '.throughput_bytes_per_sec / 1048576' "$out"
  # Every push run pushes new blobs, which nothing reads again: their files go, so
  # that ten pairs of 200 MiB pushes do not fill the disk (the servers' metadata
  # still lists them; nothing here asks).
  case "$SCENARIO" in
    push*) rm -rf "$TMP/$side/data/blobs"/* ;;
  esac
}

for ((r = 1; r <= PAIRS; r++)); do
  echo "$(run a) $(run b)"
done | python3 -c '
import statistics as st, sys
a, b, r = [], [], []
for line in sys.stdin:
    x, y = map(float, line.split())
    a.append(x); b.append(y); r.append(y / x)
    print(f"pair {len(r):2d}: A {x:7.0f}  B {y:7.0f} MiB/s  B/A {y / x:.3f}", flush=True)
se = st.stdev(r) / len(r) ** 0.5 if len(r) > 1 else float("nan")
print(f"A mean {st.mean(a):.0f} MiB/s, B mean {st.mean(b):.0f} MiB/s; "
      f"B/A mean {st.mean(r):.3f} ± {se:.3f} (standard error), median {st.median(r):.3f}")
'
