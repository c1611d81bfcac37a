#!/usr/bin/env bash
# berth vs CNCF Distribution, side by side on this machine, in one run (issue 5).
#
#   benches/compare.sh [--smoke] [--rounds N] [--out FILE] [--berth BIN] [--skip-build]
#                      [--only LIST] [--keep-tmp]
#
# Builds berth in release mode (unless --skip-build), starts `berth serve` and
# Distribution (Debian's docker-registry) on free loopback ports with their data on the
# same filesystem, plus nginx serving a copy of a test blob, then runs the same
# scenarios alternately against each server (`berth bench`, several rounds; medians),
# samples each server's RSS and CPU from /proc, measures the machine's ceilings
# (SHA-256 with `openssl speed -evp sha256`, a static-file GET from nginx) and writes a
# markdown report with absolute figures, ratios and the goals met or not.
#
#   --smoke        tiny sizes, 1 s durations, 1 round: proves the harness works (CI)
#   --rounds N     rounds of every scenario (default 3; smoke 1)
#   --out FILE     report path (default benches/results/<UTC date>-<git sha>.md plus a
#                  copy in benches/results/latest.md; smoke: a new temp directory).
#                  Raw JSON of every run goes to <FILE without .md>/raw/.
#   --berth BIN    the berth binary (default target/release/berth)
#   --skip-build   do not run `cargo build --release -p berth-cli`
#   --only LIST    comma-separated subset of: ceilings,push,chunked,pull,curl,manifest,
#                  tags,bigpush,startup (default: all)
#   --keep-tmp     keep the temporary directory (servers are still stopped)
#
# It is a benchmark, not a test: the exit status never depends on timings or goals.
# It is non-zero only when the harness breaks: a server or nginx does not start, the
# load generator fails to set a scenario up (exit 2) or reports failed requests against
# berth (a correctness problem), a server dies, or the report is not written.
# Failed requests against Distribution are recorded in the report and tolerated
# (Distribution deviates from the spec in documented ways).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=$ROOT/benches/lib

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'compare.sh: warning: %s\n' "$*" >&2; }
die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 2; }

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# ---- arguments ---------------------------------------------------------------------
SMOKE=0
ROUNDS=""
OUT=""
BERTH=""
SKIP_BUILD=0
ONLY=""
KEEP_TMP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --rounds) [ $# -ge 2 ] || die "--rounds needs a value"; ROUNDS=$2; shift ;;
    --rounds=*) ROUNDS=${1#*=} ;;
    --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift ;;
    --out=*) OUT=${1#*=} ;;
    --berth) [ $# -ge 2 ] || die "--berth needs a value"; BERTH=$2; shift ;;
    --berth=*) BERTH=${1#*=} ;;
    --skip-build) SKIP_BUILD=1 ;;
    --only) [ $# -ge 2 ] || die "--only needs a value"; ONLY=$2; shift ;;
    --only=*) ONLY=${1#*=} ;;
    --keep-tmp) KEEP_TMP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
if [ -n "$ROUNDS" ] && ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  die "--rounds must be a positive integer, not '$ROUNDS'"
fi
ALL_PARTS="ceilings push chunked pull curl manifest tags bigpush startup"
if [ -n "$ONLY" ]; then
  for p in ${ONLY//,/ }; do
    case " $ALL_PARTS " in *" $p "*) ;; *) die "--only: unknown part '$p' (known: $ALL_PARTS)" ;; esac
  done
fi
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# ---- parameters --------------------------------------------------------------------
# Sizes are passed to `berth bench` as written (it parses KiB/MiB/GiB); *_BYTES are
# the same in bytes for our own files.
if [ "$SMOKE" = 1 ]; then
  MODE=smoke
  ROUNDS=${ROUNDS:-1}
  PUSH_SIZE=4MiB;   PUSH_BYTES=$((4 << 20))
  CHUNK_SIZE=1MiB
  PUSH_ITERS=1;     PUSH_WARMUP=1
  PULL_ITERS=3
  PULL_VERIFY=1           # hash every pulled body (correctness is what a smoke run is for)
  CURL_FETCHES=1
  MANIFEST_SECS=1;  MANIFEST_CONC=50
  TAGS_COUNT=2000;  TAGS_PAGE=1000; TAGS_SECS=1
  STARTUP_REPOS=100; STARTUP_TAGS=10; STARTUP_RUNS=5
  BIG_SIZE=64MiB
  SHA_SECS=1
  BENCH_TIMEOUT=90        # seconds allowed for one `berth bench` call
  SEED_TIMEOUT=90
else
  MODE=full
  ROUNDS=${ROUNDS:-3}
  PUSH_SIZE=200MiB; PUSH_BYTES=$((200 << 20))
  CHUNK_SIZE=16MiB
  PUSH_ITERS=5;     PUSH_WARMUP=1
  PULL_ITERS=10
  PULL_VERIFY=10          # hash every 10th body: hashing each would make the client the limit
  CURL_FETCHES=3
  MANIFEST_SECS=10; MANIFEST_CONC=50
  TAGS_COUNT=100000; TAGS_PAGE=1000; TAGS_SECS=5
  STARTUP_REPOS=10000; STARTUP_TAGS=10; STARTUP_RUNS=5
  BIG_SIZE=1GiB
  SHA_SECS=3
  BENCH_TIMEOUT=600
  SEED_TIMEOUT=1800
fi
SAMPLE_INTERVAL=0.1
SEED_CONC=8           # connections used to seed tags and repositories (not measured)

# ---- preflight ---------------------------------------------------------------------
missing=()
for t in docker-registry nginx openssl jq curl python3 getconf timeout sha256sum; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (Debian: docker-registry nginx-light openssl jq curl python3 coreutils; tests/clients/install-deps.sh installs them)"
CLK_TCK=$(getconf CLK_TCK)

if [ -z "$BERTH" ]; then
  BERTH=$ROOT/target/release/berth
elif [ "${BERTH#/}" = "$BERTH" ]; then
  if [ -e "$ROOT/$BERTH" ]; then BERTH=$ROOT/$BERTH; else BERTH=$PWD/$BERTH; fi
fi

if [ "$SKIP_BUILD" = 0 ]; then
  step "building berth (cargo build --release -p berth-cli)"
  (cd "$ROOT" && cargo build --release -p berth-cli) || die "cargo build --release -p berth-cli failed"
fi
[ -x "$BERTH" ] || die "berth binary not found or not executable: $BERTH (build it, or pass --berth BIN)"
if ! "$BERTH" bench --help >/dev/null 2>&1; then
  die "$BERTH has no 'bench' subcommand (the load generator, crates/berth-bench); rebuild it"
fi

# ---- temp dir, processes, cleanup --------------------------------------------------
# Both servers' data, nginx's file and everything else on one filesystem: under the
# cargo target dir when it is writable (the disk the repository is on), else /tmp.
TMP_PARENT=${BENCH_TMPDIR:-$ROOT/target}
mkdir -p "$TMP_PARENT" 2>/dev/null || TMP_PARENT=${TMPDIR:-/tmp}
TMP=$(mktemp -d "$TMP_PARENT/bench-compare.XXXXXX") || die "mktemp -d in $TMP_PARENT failed"
LOGS=$TMP/logs
mkdir -p "$LOGS"

BERTH_PID=""      # berth serve (the compared instance)
DIST_PID=""       # docker-registry
NGINX_PID=""      # nginx master (daemon off)
AUX_PID=""        # the start-up test's berth serve
WATCH_PID=""      # procwatch.py sampler
FG_PID=""         # the load generator (or another long command) being waited for
SMOKE_RESULTS_DIR=""
HARNESS_FAILURES=()
fail() { HARNESS_FAILURES+=("$*"); printf 'compare.sh: FAILURE: %s\n' "$*" >&2; }

# stop_pid PID [GRACE_SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_pid "$FG_PID" 5
  stop_pid "$WATCH_PID" 2
  stop_pid "$AUX_PID" 10
  stop_pid "$BERTH_PID" 10
  stop_pid "$DIST_PID" 10
  stop_pid "$NGINX_PID" 5
  # a smoke run's own results directory, when it never got its report (interrupted)
  if [ -n "$SMOKE_RESULTS_DIR" ] && [ ! -s "$SMOKE_RESULTS_DIR/report.md" ]; then
    rm -rf "$SMOKE_RESULTS_DIR"
  fi
  if [ "$KEEP_TMP" = 1 ]; then
    echo "compare.sh: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_fg OUT ERR SECONDS CMD...: run CMD under `timeout`, stdout to OUT, stderr to ERR,
# and wait for it. It runs in the background so that a signal to this script reaches
# the cleanup at once (which stops it) instead of after CMD ends. Returns CMD's status
# (124 or 137 when it timed out).
run_fg() {
  local out=$1 err=$2 secs=$3 rc=0
  shift 3
  timeout -k 10 "$secs" "$@" >"$out" 2>"$err" </dev/null &
  FG_PID=$!
  wait "$FG_PID" || rc=$?
  FG_PID=""
  return "$rc"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http PID URL NAME: wait (15 s) until URL answers 200 while PID lives.
wait_http() {
  local pid=$1 url=$2 name=$3 i code=""
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      warn "$name exited during start-up"
      return 1
    fi
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
    [ "$code" = 200 ] && return 0
    sleep 0.05
  done
  warn "$name did not answer 200 on $url within 15 s (last status: ${code:-none})"
  return 1
}

show_log() { # show_log FILE: its last lines, indented, on stderr
  [ -s "$1" ] || return 0
  echo "---- last lines of $1 ----" >&2
  tail -n 15 "$1" | cut -c 1-300 | sed 's/^/    /' >&2
}

# berth serve runs with log level warn and without any BERTH_* variables of ours
# (berth reads BERTH_<SECTION>_<KEY> as configuration overrides). It is started with
# `env ... &` directly (not through a shell function, which would run in a subshell
# whose pid is not berth's).
BERTH_ENV=()
mapfile -t BERTH_ENV < <(env | awk -F= '/^BERTH_/ {print "-u"; print $1}')
BERTH_ENV+=(RUST_LOG=warn BERTH_LOG=warn)

# start_berth DATA_DIR LOGNAME: berth serve on a free port; sets STARTED_PID and
# STARTED_URL.
start_berth() {
  local data=$1 name=$2 attempt port
  mkdir -p "$data"
  for attempt in 1 2 3; do
    port=$(free_port)
    env "${BERTH_ENV[@]}" "$BERTH" serve --listen "127.0.0.1:$port" --data-dir "$data" \
      >"$LOGS/$name.stdout" 2>"$LOGS/$name.stderr" </dev/null &
    STARTED_PID=$!
    STARTED_URL=http://127.0.0.1:$port
    if wait_http "$STARTED_PID" "$STARTED_URL/v2/" "berth serve ($name, attempt $attempt)"; then
      return 0
    fi
    stop_pid "$STARTED_PID" 5
    show_log "$LOGS/$name.stderr"
  done
  return 1
}

# start_dist: docker-registry with its own config; sets DIST_PID and DIST_URL.
start_dist() {
  local attempt port
  mkdir -p "$TMP/dist-data"
  for attempt in 1 2 3; do
    port=$(free_port)
    cat >"$TMP/distribution.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/dist-data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: berth-bench-$RANDOM$RANDOM
EOF
    # Distribution reads REGISTRY_* variables as configuration overrides: none are passed.
    local unset_args=()
    mapfile -t unset_args < <(env | awk -F= '/^REGISTRY_/ {print "-u"; print $1}')
    env "${unset_args[@]}" docker-registry serve "$TMP/distribution.yml" \
      >"$LOGS/dist.stdout" 2>"$LOGS/dist.stderr" </dev/null &
    DIST_PID=$!
    DIST_URL=http://127.0.0.1:$port
    if wait_http "$DIST_PID" "$DIST_URL/v2/" "docker-registry (attempt $attempt)"; then
      return 0
    fi
    stop_pid "$DIST_PID" 5
    DIST_PID=""
    show_log "$LOGS/dist.stderr"
  done
  return 1
}

# start_nginx: nginx (daemon off, own prefix and config, current user) serving
# $TMP/nginx/www; sets NGINX_PID and NGINX_URL.
start_nginx() {
  local n=$TMP/nginx attempt port user_line=""
  mkdir -p "$n/www" "$n/logs" "$n/tmp"
  # As root, workers would switch to nobody, who cannot enter the 0700 temp dir.
  [ "$(id -u)" -ne 0 ] || user_line="user $(id -un);"
  for attempt in 1 2 3; do
    port=$(free_port)
    cat >"$n/nginx.conf" <<EOF
$user_line
daemon off;
master_process on;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path $n/tmp/body;
  proxy_temp_path $n/tmp/proxy;
  fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    root $n/www;
  }
}
EOF
    echo ok >"$n/www/ping"
    nginx -p "$n/" -c "$n/nginx.conf" -e "$n/logs/error.log" \
      >"$LOGS/nginx.stdout" 2>"$LOGS/nginx.stderr" </dev/null &
    NGINX_PID=$!
    NGINX_URL=http://127.0.0.1:$port
    if wait_http "$NGINX_PID" "$NGINX_URL/ping" "nginx (attempt $attempt)"; then
      return 0
    fi
    stop_pid "$NGINX_PID" 5
    NGINX_PID=""
    show_log "$n/logs/error.log"
    show_log "$LOGS/nginx.stderr"
  done
  return 1
}

# ---- sampling /proc ----------------------------------------------------------------
# watch_start PID OUT: start procwatch.py on PID (VmRSS every SAMPLE_INTERVAL s, CPU
# at start and stop, VmHWM reset); returns once its start readings are taken.
watch_start() {
  local i
  rm -f "$2" "$2.started"
  python3 "$LIB/procwatch.py" "$1" "$2" --interval "$SAMPLE_INTERVAL" --reset-hwm &
  WATCH_PID=$!
  for ((i = 0; i < 100; i++)); do
    [ -e "$2.started" ] && return 0
    kill -0 "$WATCH_PID" 2>/dev/null || break
    sleep 0.02
  done
  warn "procwatch did not start for pid $1"
  return 1
}
watch_stop() {
  local pid=$WATCH_PID
  WATCH_PID=""
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$1.started"
}

# proc_status PID OUT: VmRSS/VmHWM now, as JSON.
proc_status() {
  awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {printf "{\"vmrss_kb\": %d, \"vmhwm_kb\": %d}\n", r, h}' \
    "/proc/$1/status" >"$2"
}

# ---- running the load generator ----------------------------------------------------
server_pid() { if [ "$1" = berth ]; then echo "$BERTH_PID"; else echo "$DIST_PID"; fi; }
server_url() { if [ "$1" = berth ]; then echo "$BERTH_URL"; else echo "$DIST_URL"; fi; }

# ensure_alive SERVER: a server that died is a harness failure; it is restarted on
# its data directory so that the other scenarios still run.
ensure_alive() {
  local s=$1 pid
  pid=$(server_pid "$s")
  kill -0 "$pid" 2>/dev/null && return 0
  wait "$pid" 2>/dev/null || true
  if [ "$s" = berth ]; then
    show_log "$LOGS/berth.stderr"
    fail "berth serve died (see its log above); restarting it"
    start_berth "$TMP/berth-data" berth || die "berth serve does not start again"
    BERTH_PID=$STARTED_PID BERTH_URL=$STARTED_URL
  else
    show_log "$LOGS/dist.stderr"
    fail "docker-registry died (see its log above); restarting it"
    start_dist || die "docker-registry does not start again"
  fi
}

# bench NAME SERVER [bench args...]: one `berth bench` run against SERVER (berth|dist)
# with the server's CPU/RSS sampled; JSON to $RAW/NAME.json, samples to
# $RAW/NAME.proc.json. Returns 0 when the run produced a result (even with errors
# against Distribution).
bench() {
  local name=$1 server=$2 pid url rc=0 out err errors
  shift 2
  pid=$(server_pid "$server")
  url=$(server_url "$server")
  out=$RAW/$name.json
  err=$LOGS/$name.stderr
  info "$name: berth bench $url $*"
  watch_start "$pid" "$RAW/$name.proc.json" || true
  run_fg "$out" "$err" "$BENCH_TIMEOUT" "$BERTH" bench "$url" "$@" --output json || rc=$?
  watch_stop "$RAW/$name.proc.json"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "$name: berth bench did not finish within $BENCH_TIMEOUT s"
    show_log "$err"
    rm -f "$out"
    ensure_alive "$server"
    return 1
  fi
  if [ "$rc" -ge 2 ] || ! jq -e 'type == "object"' "$out" >/dev/null 2>&1; then
    fail "$name: berth bench failed (exit $rc) against $server: $(tail -n 3 "$err" | tr '\n' ' ' | cut -c 1-400)"
    rm -f "$out"
    ensure_alive "$server"
    return 1
  fi
  errors=$(jq -r '.errors // 0' "$out")
  if [ "$rc" -ne 0 ] || [ "$errors" != 0 ]; then
    if [ "$server" = berth ]; then
      fail "$name: $errors failed request(s) against berth: $(jq -c '.error_samples // [] | .[:3]' "$out")"
    else
      warn "$name: $errors failed request(s) against Distribution (kept in the report): $(jq -c '.error_samples // [] | .[:3]' "$out" | cut -c 1-300)"
    fi
  fi
  ensure_alive "$server"
  info "$name: $(jq -r '[
      (if .throughput_bytes_per_sec then "\(.throughput_bytes_per_sec / 1048576 | floor) MiB/s" else empty end),
      (if .requests_per_sec then "\(.requests_per_sec | floor) req/s" else empty end),
      (if .latency_ms.p99 then "p99 \(.latency_ms.p99 * 100 | round / 100) ms" else empty end),
      "errors \(.errors // 0)"] | join(", ")' "$out" 2>/dev/null || echo '?')"
  return 0
}

# curl_fetch NAME URL EXPECTED_BYTES N: one warm-up GET and N measured GETs with curl,
# speeds (bytes/s) to $RAW/NAME.json.
curl_fetch() {
  local name=$1 url=$2 size=$3 n=$4 i res code bytes speed speeds=()
  for ((i = 0; i <= n; i++)); do
    res=$(curl -s -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' "$url" || true)
    read -r code bytes speed <<<"$res"
    if [ "$code" != 200 ] || [ "$bytes" != "$size" ]; then
      fail "$name: GET $url gave status ${code:-none}, $bytes bytes (expected 200, $size bytes)"
      return 1
    fi
    [ "$i" -eq 0 ] || speeds+=("$speed")
  done
  printf '%s\n' "${speeds[@]}" | jq -s --arg url "$url" '{url: $url, speeds_bytes_per_sec: .}' >"$RAW/$name.json"
  info "$name: $(printf '%s\n' "${speeds[@]}" | awk '{printf "%d MiB/s ", $1 / 1048576}')"
}

# push_blob_curl URL REPO FILE DIGEST: POST + monolithic PUT (both registries support it).
push_blob_curl() {
  local url=$1 repo=$2 file=$3 digest=$4 loc code
  loc=$(curl -s -D - -o /dev/null -X POST "$url/v2/$repo/blobs/uploads/" |
    awk 'tolower($1) == "location:" {sub(/\r$/, "", $2); print $2}')
  [ -n "$loc" ] || return 1
  case "$loc" in http*) ;; *) loc=$url$loc ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$file" "$loc")
  [ "$code" = 201 ]
}

# ---- machine, versions -------------------------------------------------------------
step "machine and versions ($MODE mode, $ROUNDS round(s))"
GIT_SHA=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=""
# (only berth's own sources count: the harness's files do not change the binary)
if [ -n "$(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | head -1)" ]; then
  GIT_DIRTY=" (with uncommitted changes to crates/)"
fi
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
if grep -q -m1 -w sha_ni /proc/cpuinfo; then SHA_NI=yes; else SHA_NI=no; fi
case "$BERTH" in */release/*) BUILD=release ;; */debug/*) BUILD=debug ;; *) BUILD="unknown profile" ;; esac
FS_TYPE=$(df -T "$TMP" | awk 'NR == 2 {print $2}')
# How much of the code layout file (scripts/symbol-order.sh) the binary still has:
# names go stale as dependencies change, and idle RSS creeps back up.
ORDER_FILE=$ROOT/crates/berth-cli/symbol-order.txt
if [ -f "$ORDER_FILE" ] && command -v nm >/dev/null; then
  LAYOUT=$(nm "$BERTH" 2>/dev/null | awk 'NR == FNR {want[$1] = 1; n++; next} ($NF in want) && !seen[$NF]++ {found++}
    END {printf "%d of %d functions of crates/berth-cli/symbol-order.txt found in the binary", found, n}' "$ORDER_FILE" -)
else
  LAYOUT="no symbol-order.txt or no nm: not checked"
fi
jq -n \
  --arg mode "$MODE" --argjson rounds "$ROUNDS" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg git_sha "$GIT_SHA$GIT_DIRTY" \
  --arg berth_version "$("$BERTH" --version 2>&1 | head -1)" \
  --arg berth_bin "$BERTH" \
  --arg dist_version "$(docker-registry --version 2>&1 | head -1)" \
  --arg nginx_version "$(nginx -v 2>&1 | head -1)" \
  --arg openssl_version "$(openssl version 2>&1 | head -1)" \
  --arg curl_version "$(curl --version 2>&1 | head -1 | cut -d' ' -f1-2)" \
  --arg rustc_version "$(cd "$ROOT" && rustc -V 2>/dev/null || echo unknown)" \
  --arg nproc "$(nproc)" --arg cpu_model "$CPU_MODEL" --arg sha_ni "$SHA_NI" --arg build "$BUILD" \
  --arg kernel "$(uname -sr)" \
  --arg mem_total "$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)" \
  --arg fs "$FS_TYPE" --arg layout "$LAYOUT" --arg loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg clk_tck "$CLK_TCK" \
  --arg push_size "$PUSH_SIZE" --arg chunk_size "$CHUNK_SIZE" --arg big_size "$BIG_SIZE" \
  --argjson push_iters "$PUSH_ITERS" --argjson push_warmup "$PUSH_WARMUP" \
  --argjson pull_iters "$PULL_ITERS" --argjson pull_verify "$PULL_VERIFY" --argjson curl_fetches "$CURL_FETCHES" \
  --argjson manifest_secs "$MANIFEST_SECS" --argjson manifest_conc "$MANIFEST_CONC" \
  --argjson tags_count "$TAGS_COUNT" --argjson tags_page "$TAGS_PAGE" --argjson tags_secs "$TAGS_SECS" \
  --argjson startup_repos "$STARTUP_REPOS" --argjson startup_tags "$STARTUP_TAGS" \
  --argjson startup_runs "$STARTUP_RUNS" --arg sample_interval "$SAMPLE_INTERVAL" \
  --arg only "$ONLY" \
  '$ARGS.named' >"$TMP/meta.json"
jq -r '"    machine: \(.nproc) cores, \(.cpu_model) (sha_ni: \(.sha_ni)), \(.mem_total), \(.kernel), data on \(.fs); load \(.loadavg_start)",
       "    berth \(.git_sha) (\(.berth_bin)); \(.dist_version); \(.nginx_version); \(.openssl_version)"' "$TMP/meta.json"
if awk '{exit !($1 > 0.7)}' /proc/loadavg; then
  warn "load average is $(cut -d' ' -f1 /proc/loadavg): something else is using the CPUs; figures will be noisy"
fi

# ---- output locations --------------------------------------------------------------
STAMP=$(date -u +%Y-%m-%d)-$GIT_SHA
COPY_LATEST=0
if [ -z "$OUT" ]; then
  if [ "$SMOKE" = 1 ]; then
    SMOKE_RESULTS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-smoke.XXXXXX")
    OUT=$SMOKE_RESULTS_DIR/report.md
    RAW=$SMOKE_RESULTS_DIR/raw
  else
    OUT=$ROOT/benches/results/$STAMP.md
    n=2
    while [ -e "$OUT" ] || [ -e "${OUT%.md}" ]; do OUT=$ROOT/benches/results/$STAMP-$n.md; n=$((n + 1)); done
    RAW=${OUT%.md}/raw
    COPY_LATEST=1
  fi
else
  case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
  RAW=${OUT%.md}/raw
fi
mkdir -p "$RAW" "$(dirname "$OUT")"
info "report: $OUT (raw JSON in $RAW)"

# ---- servers -----------------------------------------------------------------------
step "starting berth serve, docker-registry and nginx (data under $TMP)"
start_berth "$TMP/berth-data" berth || die "berth serve does not start (log: $LOGS/berth.stderr; --keep-tmp keeps it)"
BERTH_PID=$STARTED_PID BERTH_URL=$STARTED_URL
start_dist || die "docker-registry does not start (log: $LOGS/dist.stderr)"
start_nginx || die "nginx does not start (log: $TMP/nginx/logs/error.log)"
info "berth $BERTH_URL (pid $BERTH_PID), Distribution $DIST_URL (pid $DIST_PID), nginx $NGINX_URL (pid $NGINX_PID)"

step "idle RSS (after one GET /v2/, 1 s settle)"
sleep 1
proc_status "$BERTH_PID" "$RAW/idle-berth.json"
proc_status "$DIST_PID" "$RAW/idle-dist.json"
info "berth $(jq -r '"VmRSS \(.vmrss_kb) kB"' "$RAW/idle-berth.json"), Distribution $(jq -r '"VmRSS \(.vmrss_kb) kB"' "$RAW/idle-dist.json")"

# ---- ceilings ----------------------------------------------------------------------
# measure_sha OUT.json: openssl's SHA-256 rate on one core, SHA_SECS long.
measure_sha() {
  local out=$1 sha_block sha_k
  if openssl speed -evp sha256 -bytes 1048576 -seconds "$SHA_SECS" >"$LOGS/openssl.out" 2>&1; then
    sha_block=1048576
  else
    # older openssl without -bytes: the 16384-byte column (the last one)
    openssl speed -evp sha256 -seconds "$SHA_SECS" >"$LOGS/openssl.out" 2>&1 ||
      { cat "$LOGS/openssl.out" >&2; die "openssl speed failed"; }
    sha_block=16384
  fi
  # "sha256  1247443.86k": the last column, in 1000s of bytes per second
  sha_k=$(awk '/^sha256/ {v = $NF} END {sub(/k$/, "", v); print v}' "$LOGS/openssl.out")
  [[ "$sha_k" =~ ^[0-9.]+$ ]] || { cat "$LOGS/openssl.out" >&2; die "cannot parse openssl speed output"; }
  jq -n --argjson k "$sha_k" --argjson block "$sha_block" --arg sha_ni "$SHA_NI" \
    --arg cmd "openssl speed -evp sha256 -bytes $sha_block -seconds $SHA_SECS" \
    '{bytes_per_sec: ($k * 1000), block_bytes: $block, sha_ni: $sha_ni, command: $cmd}' >"$out"
  info "SHA-256: $(jq -r '.bytes_per_sec / 1048576 | floor' "$out") MiB/s (block $sha_block bytes, sha_ni: $SHA_NI)"
}

if want ceilings; then
  step "ceiling: SHA-256 (openssl speed -evp sha256, ${SHA_SECS} s)"
  measure_sha "$RAW/ceiling-sha256.json"
fi

# The disk's write rate, measured like berth writes a pushed blob (the data reaches
# the device before the push is acknowledged): PUSH_SIZE of random bytes with direct
# I/O and an fsync. Measured before the rounds and again before the big push: a
# virtual disk's rate varies from one minute to the next, and a push to berth,
# which fsyncs, cannot be faster than the disk.
disk_ceiling() { # $1: name for the raw JSON
  local src="$TMP/disk-src.bin" dst="$TMP/disk-ceiling.bin" out secs
  [ -s "$src" ] || head -c "$PUSH_BYTES" /dev/urandom >"$src"
  sync
  if out=$(LC_ALL=C dd if="$src" of="$dst" bs=1M oflag=direct conv=fsync 2>&1); then
    # "209715200 bytes (210 MB, 200 MiB) copied, 0.2 s, 1.0 GB/s"
    secs=$(printf '%s\n' "$out" | awk '/ copied, / {for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1)}' | tail -1)
    if [[ "$secs" =~ ^[0-9.e-]+$ ]]; then
      jq -n --argjson b "$PUSH_BYTES" --argjson s "$secs" \
        --arg cmd "dd bs=1M oflag=direct conv=fsync ($PUSH_SIZE of random bytes)" \
        '{bytes_per_sec: ($b / $s), bytes: $b, secs: $s, command: $cmd}' >"$RAW/$1.json"
      info "disk write ($1): $(jq -r '.bytes_per_sec / 1048576 | floor' "$RAW/$1.json") MiB/s"
    else
      warn "cannot parse dd's output: $out"
    fi
  else
    warn "dd failed: $out"
  fi
  rm -f "$dst"
}
if want ceilings; then
  step "ceiling: disk write (direct I/O + fsync, $PUSH_SIZE)"
  disk_ceiling ceiling-disk-before
fi

# The blob for the same-client (curl) comparison: one file, pushed to both registries
# and copied for nginx, all on the same filesystem.
CURL_BLOB_READY=0
if want curl; then
  step "seeding the $PUSH_SIZE blob for the curl GETs (berth, Distribution, nginx)"
  head -c "$PUSH_BYTES" /dev/urandom >"$TMP/curl-blob"
  CURL_DIGEST=sha256:$(sha256sum "$TMP/curl-blob" | cut -d' ' -f1)
  cp "$TMP/curl-blob" "$TMP/nginx/www/blob"
  if push_blob_curl "$BERTH_URL" bench-curl "$TMP/curl-blob" "$CURL_DIGEST" &&
     push_blob_curl "$DIST_URL" bench-curl "$TMP/curl-blob" "$CURL_DIGEST"; then
    CURL_BLOB_READY=1
    info "blob $CURL_DIGEST"
  else
    fail "pushing the curl test blob with curl (POST + PUT) failed"
  fi
  rm -f "$TMP/curl-blob"
fi

# ---- tags for the tags/list scenario ------------------------------------------------
# Seeded once, before the rounds, with several connections; the measured runs (one
# connection) then find the repository full and skip their own set-up. berth gets its
# tags through the API. Distribution takes ~15 ms per tag PUT here (100,000 tags: 25
# minutes), so it gets one tag through the API and the rest as the same link files its
# tag PUT writes (lib/dist_seed_tags.py); the measured runs check the count.
if want tags; then
  step "seeding $TAGS_COUNT tags in bench-tags (not measured)"
  t_seed=$(date +%s%N)
  rc=0
  run_fg "$RAW/seed-tags-berth.json" "$LOGS/seed-tags-berth.stderr" "$SEED_TIMEOUT" \
    "$BERTH" bench "$BERTH_URL" --scenario tags --repo bench-tags --tags "$TAGS_COUNT" \
    --page 1 -c "$SEED_CONC" --duration 0.2 --warmup 0 --output json || rc=$?
  ms_berth=$(( ($(date +%s%N) - t_seed) / 1000000 ))
  if [ "$rc" -ne 0 ]; then
    fail "seeding $TAGS_COUNT tags in berth failed (exit $rc): $(tail -n 3 "$LOGS/seed-tags-berth.stderr" | tr '\n' ' ' | cut -c 1-400)"
  fi
  ensure_alive berth
  info "berth: $TAGS_COUNT tags through the API (-c $SEED_CONC) in $ms_berth ms"
  t_seed=$(date +%s%N)
  rc=0
  run_fg "$RAW/seed-tags-dist.json" "$LOGS/seed-tags-dist.stderr" "$SEED_TIMEOUT" \
    "$BERTH" bench "$DIST_URL" --scenario tags --repo bench-tags --tags 1 \
    --page 1 -c 1 --duration 0.2 --warmup 0 --output json || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "pushing the first tag to Distribution failed (exit $rc): $(tail -n 3 "$LOGS/seed-tags-dist.stderr" | tr '\n' ' ' | cut -c 1-400)"
  elif ! n=$(python3 "$LIB/dist_seed_tags.py" "$TMP/dist-data" bench-tags t000000 "$TAGS_COUNT" 2>"$LOGS/dist-seed-tags.stderr"); then
    fail "writing Distribution's tag links failed: $(tail -n 3 "$LOGS/dist-seed-tags.stderr" | tr '\n' ' ')"
  else
    ms_dist=$(( ($(date +%s%N) - t_seed) / 1000000 ))
    info "Distribution: 1 tag through the API, $n as link files, in $ms_dist ms"
  fi
  ensure_alive dist
  rm -f "$RAW/seed-tags-berth.json" "$RAW/seed-tags-dist.json"
  jq -n --argjson tags "$TAGS_COUNT" --argjson conc "$SEED_CONC" --argjson berth_ms "$ms_berth" \
    --argjson dist_ms "${ms_dist:-null}" \
    '{tags: $tags, berth_api_concurrency: $conc, berth_ms: $berth_ms, dist_ms: $dist_ms,
      dist_method: "1 tag through the API, the rest as link files in its storage"}' >"$RAW/seed-tags.json"
fi

# ---- rounds ------------------------------------------------------------------------
# Every push run starts after a `sync`, so that it does not pay for flushing the dirty
# pages of the run before it (the other server's, or the set-up's).
for ((r = 1; r <= ROUNDS; r++)); do
  step "round $r of $ROUNDS"
  if want push; then
    # This machine's SHA-256 rate drifts by up to ~10% (1,789–1,917 MiB/s across
    # one run's rounds; 1,730 and 1,920 in two runs an hour apart): the push's
    # share of it is taken against a ceiling measured right before it.
    measure_sha "$RAW/ceiling-sha256-r$r.json"
    for s in berth dist; do
      sync
      bench "push-$s-r$r" "$s" --scenario push --repo bench-push --size "$PUSH_SIZE" \
        --iterations "$PUSH_ITERS" --warmup "$PUSH_WARMUP" || true
    done
  fi
  if want chunked; then
    for s in berth dist; do
      sync
      bench "chunked-$s-r$r" "$s" --scenario push-chunked --repo bench-chunked --size "$PUSH_SIZE" \
        --chunk-size "$CHUNK_SIZE" --iterations "$PUSH_ITERS" --warmup "$PUSH_WARMUP" || true
    done
  fi
  if want pull; then
    for s in berth dist; do
      bench "pull-$s-r$r" "$s" --scenario pull --repo bench-pull --size "$PUSH_SIZE" \
        -c 1 --iterations "$PULL_ITERS" --warmup 2 --verify-every "$PULL_VERIFY" || true
    done
  fi
  if want curl && [ "$CURL_BLOB_READY" = 1 ]; then
    curl_fetch "curl-berth-r$r" "$BERTH_URL/v2/bench-curl/blobs/$CURL_DIGEST" "$PUSH_BYTES" "$CURL_FETCHES" || true
    curl_fetch "curl-dist-r$r" "$DIST_URL/v2/bench-curl/blobs/$CURL_DIGEST" "$PUSH_BYTES" "$CURL_FETCHES" || true
    curl_fetch "curl-nginx-r$r" "$NGINX_URL/blob" "$PUSH_BYTES" "$CURL_FETCHES" || true
  fi
  if want manifest; then
    for by in tag digest; do
      for s in berth dist; do
        bench "manifest-$by-$s-r$r" "$s" --scenario manifest --repo bench-manifest --by "$by" \
          --method get -c "$MANIFEST_CONC" --duration "$MANIFEST_SECS" --warmup 1 || true
      done
    done
  fi
  if want tags; then
    for s in berth dist; do
      bench "tags-$s-r$r" "$s" --scenario tags --repo bench-tags --tags "$TAGS_COUNT" \
        --page "$TAGS_PAGE" -c 1 --duration "$TAGS_SECS" --warmup 1 || true
    done
  fi
done

# ---- RSS growth during a big monolithic push ---------------------------------------
if want ceilings; then
  step "ceiling: disk write after the rounds"
  disk_ceiling ceiling-disk-after
fi

if want bigpush; then
  step "RSS growth during one monolithic $BIG_SIZE push"
  for s in berth dist; do
    sync
    bench "bigpush-$s" "$s" --scenario push --repo bench-bigpush --size "$BIG_SIZE" \
      --iterations 1 --warmup 0 || true
    [ -s "$RAW/bigpush-$s.proc.json" ] &&
      info "bigpush-$s: $(jq -r '"VmRSS \(.rss_start_kb) kB before, peak \(.rss_peak_kb) kB"' "$RAW/bigpush-$s.proc.json")"
  done
fi

step "RSS after the run"
proc_status "$BERTH_PID" "$RAW/after-berth.json"
proc_status "$DIST_PID" "$RAW/after-dist.json"
jq -n --arg l "$(cut -d' ' -f1-3 /proc/loadavg)" '{loadavg: $l}' >"$RAW/loadavg-end.json"

# The compared servers are stopped before the start-up test, which wants a quiet machine.
stop_pid "$BERTH_PID" 10
stop_pid "$DIST_PID" 10
stop_pid "$NGINX_PID" 5
BERTH_PID="" DIST_PID="" NGINX_PID=""

# ---- start-up with many repositories and tags (berth only) -------------------------
if want startup; then
  step "start-up time with $STARTUP_REPOS repositories x $STARTUP_TAGS tags (berth only)"
  if start_berth "$TMP/startup-data" startup-seed; then
    AUX_PID=$STARTED_PID
    info "seeding: berth bench $STARTED_URL --scenario seed --repos $STARTUP_REPOS --tags $STARTUP_TAGS -c $SEED_CONC"
    seed_rc=0
    t_seed=$(date +%s%N)
    run_fg "$RAW/startup-seed.json" "$LOGS/startup-seed.stderr" "$SEED_TIMEOUT" \
      "$BERTH" bench "$STARTED_URL" --scenario seed --repo bench-startup -c "$SEED_CONC" \
      --repos "$STARTUP_REPOS" --tags "$STARTUP_TAGS" --output json || seed_rc=$?
    info "seeded in $(( ($(date +%s%N) - t_seed) / 1000000 )) ms"
    stop_pid "$AUX_PID" 30
    AUX_PID=""
    if [ "$seed_rc" -ne 0 ]; then
      fail "seeding the start-up data dir failed (exit $seed_rc): $(tail -n 3 "$LOGS/startup-seed.stderr" | tr '\n' ' ' | cut -c 1-400)"
    else
      for ((k = 1; k <= STARTUP_RUNS; k++)); do
        port=$(free_port)
        t0=$(date +%s%N)
        env "${BERTH_ENV[@]}" "$BERTH" serve --listen "127.0.0.1:$port" --data-dir "$TMP/startup-data" \
          >"$LOGS/startup-$k.stdout" 2>"$LOGS/startup-$k.stderr" </dev/null &
        AUX_PID=$!
        rc=0
        run_fg "$LOGS/startup-$k.json" "$LOGS/startup-$k.bench.stderr" 60 \
          "$BERTH" bench "http://127.0.0.1:$port" --scenario ready --timeout 30 --output json || rc=$?
        if ! kill -0 "$AUX_PID" 2>/dev/null; then
          show_log "$LOGS/startup-$k.stderr"
          fail "start-up run $k: berth serve exited"
        elif [ "$rc" -ne 0 ] || ! jq -e '.ready_unix_ns' "$LOGS/startup-$k.json" >/dev/null 2>&1; then
          fail "start-up run $k: berth bench --scenario ready failed (exit $rc): $(tail -n 3 "$LOGS/startup-$k.bench.stderr" | tr '\n' ' ')"
        else
          # (python, not jq: jq 1.6 rounds 19-digit integers to doubles)
          python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); t0 = int(sys.argv[2])
d["t0_unix_ns"] = t0; d["startup_ms"] = (int(d["ready_unix_ns"]) - t0) / 1e6
json.dump(d, sys.stdout)' "$LOGS/startup-$k.json" "$t0" >"$RAW/startup-$k.json"
          info "run $k: $(jq -r '.startup_ms * 100 | round / 100' "$RAW/startup-$k.json") ms to the first served request"
        fi
        stop_pid "$AUX_PID" 30
        AUX_PID=""
      done
    fi
  else
    fail "berth serve does not start on the start-up data dir"
  fi
fi

# ---- report ------------------------------------------------------------------------
step "writing the report"
cp "$TMP/meta.json" "$RAW/meta.json"
if [ ${#HARNESS_FAILURES[@]} -gt 0 ]; then
  printf '%s\n' "${HARNESS_FAILURES[@]}" | jq -R . | jq -s . >"$RAW/harness-failures.json"
fi
python3 "$LIB/report.py" "$RAW" "$OUT" || fail "report.py failed"
if [ ! -s "$OUT" ] || ! grep -q '^| goal | berth | Distribution | ceiling | ratio | target | met? |' "$OUT"; then
  fail "the report $OUT was not written or lacks the results table"
else
  if [ "$COPY_LATEST" = 1 ]; then
    cp "$OUT" "$ROOT/benches/results/latest.md"
  fi
  echo
  sed -n '/^| goal |/,/^$/p' "$OUT"
  echo "report: $OUT"
  [ "$COPY_LATEST" = 0 ] || echo "        $ROOT/benches/results/latest.md"
  echo "raw:    $RAW"
fi

if [ ${#HARNESS_FAILURES[@]} -gt 0 ]; then
  echo >&2
  echo "compare.sh: the harness had ${#HARNESS_FAILURES[@]} failure(s) (not timing; these are breakages):" >&2
  printf '  - %s\n' "${HARNESS_FAILURES[@]}" >&2
  exit 1
fi
