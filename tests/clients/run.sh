#!/usr/bin/env bash
# Real-client integration tests: skopeo, podman, the docker engine and umoci against a
# registry that this script starts on a free loopback port. All state lives in one
# temporary directory, removed on exit together with every daemon started here.
#
# Environment:
#   REGISTRY_UNDER_TEST  berth (default) | distribution (Debian's docker-registry, the
#                        CNCF Distribution 2.8 reference, used as a stand-in)
#   BERTH_BIN            berth binary (default: the newer of target/release/berth and
#                        target/debug/berth, relative to the repository root); both the
#                        registry under test and the client under test (cases/40-, 50-)
#   ONLY                 extended regex; run only the tests whose names match
#   KEEP_TMP=1           keep the temporary directory (daemons are still stopped)
#   DISTRIBUTION_LOG_LEVEL   Distribution's log level (default warn; debug/info also turn
#                        on its access log, handy to see the clients' request sequences)
#   CMD_TIMEOUT          per-client-command timeout in seconds (default 180)
#   (the berth-dist-* tests also start a second registry, Debian's docker-registry, on its
#   own free port, whatever REGISTRY_UNDER_TEST is)
#   TRACE_HTTP=FILE      put trace-proxy.py (needs python3) between the clients and the
#                        registry and write every request/response head to FILE (JSON lines)
#   AUTH_TLS_IP          address the auth-tls-* tests' own HTTPS berth listens on (default:
#                        this host's first non-loopback IPv4, else 127.0.0.1; see
#                        cases/60-auth-tls.sh for why)
#
# Output: "ok - NAME" / "not ok - NAME: reason" per test ("ok - NAME # skip reason" for
# a test that does not apply), then exactly one line "N passed, M failed" (skipped tests
# count as neither). Exit status 0 only if nothing failed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REGISTRY_UNDER_TEST=${REGISTRY_UNDER_TEST:-berth}
ONLY=${ONLY:-}
KEEP_TMP=${KEEP_TMP:-0}
DISTRIBUTION_LOG_LEVEL=${DISTRIBUTION_LOG_LEVEL:-warn}

# shellcheck source=lib.sh
. "$HERE/lib.sh"

say() { echo "# $*"; }
err() { echo "run.sh: $*" >&2; }

# ---- preflight ---------------------------------------------------------------------
missing=()
for t in skopeo umoci jq curl sha256sum timeout pgrep; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[ -x /bin/busybox ] || missing+=("/bin/busybox (busybox-static)")
if [ "$REGISTRY_UNDER_TEST" = distribution ] && ! command -v docker-registry >/dev/null 2>&1; then
  missing+=("docker-registry")
fi
if [ ${#missing[@]} -gt 0 ]; then
  err "missing: ${missing[*]} -- run tests/clients/install-deps.sh first"
  exit 2
fi
if ldd /bin/busybox >/dev/null 2>&1; then
  err "warning: /bin/busybox is dynamically linked; install busybox-static, test images will not run"
fi
case "$REGISTRY_UNDER_TEST" in
  berth | distribution) ;;
  *) err "REGISTRY_UNDER_TEST must be 'berth' or 'distribution', not '$REGISTRY_UNDER_TEST'"; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  err "warning: not root; podman/docker/umoci tests expect to run as root"
fi

# Docker CLI: prefer Debian's (same version as dockerd) over any other on PATH.
if [ -x /usr/bin/docker ]; then DOCKER_CLI=/usr/bin/docker; else DOCKER_CLI=$(command -v docker || echo docker); fi

# ---- temp dir and cleanup ------------------------------------------------------------
# Keep the path short: dockerd/containerd put unix sockets under it (108-byte limit).
TMP=$(mktemp -d /tmp/berth-clients.XXXXXX) || { err "mktemp failed"; exit 2; }
LOGS=$TMP/logs
mkdir -p "$LOGS" "$TMP/conf" "$TMP/work" "$TMP/images"
SERVER_PID=""
DIST2_PID=""
PROXY_PID=""
DOCKERD_PID=""
DOCKERD_CHILDREN=""
# More daemons started by setup functions (before_tests) in this shell: stopped on exit;
# their logs, whose tails are shown when a test failed.
EXTRA_PIDS=()
EXTRA_LOGS=()
# Paths outside the temp dir that tests create (e.g. /etc/docker/certs.d/HOST:PORT),
# listed by remove_on_exit (lib.sh), one per line: removed on exit.
REMOVE_ON_EXIT=$TMP/remove-on-exit

# stop_pid PID [GRACE_SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

# descendants PID: every process below PID (children first-level, then theirs, ...).
descendants() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}

CURRENT_TEST_PID=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$CURRENT_TEST_PID" ]; then
    # interrupted in the middle of a test: stop it and every client it started
    local tree
    mapfile -t tree < <(echo "$CURRENT_TEST_PID"; descendants "$CURRENT_TEST_PID")
    kill -TERM "${tree[@]}" 2>/dev/null
    sleep 1
    kill -KILL "${tree[@]}" 2>/dev/null
  fi
  if [ -n "$DOCKERD_PID" ]; then
    stop_pid "$DOCKERD_PID" 20
    local c
    for c in $DOCKERD_CHILDREN; do stop_pid "$c" 5; done
  fi
  stop_pid "$SERVER_PID" 10
  stop_pid "$DIST2_PID" 10
  stop_pid "$PROXY_PID" 5
  local x
  for x in "${EXTRA_PIDS[@]}"; do stop_pid "$x" 10; done
  # Paths outside the temp dir, newest first: "rm PATH" (recursive) or "rmdir PATH"
  # (only if empty, for parent directories a test had to create).
  if [ -f "$REMOVE_ON_EXIT" ]; then
    local op path
    tac "$REMOVE_ON_EXIT" | while read -r op path; do
      if [ -z "$path" ] || [ "$path" = / ]; then continue; fi
      case "$op" in
        rm) rm -rf -- "$path" ;;
        rmdir) rmdir -- "$path" 2>/dev/null ;;
      esac
    done
  fi
  # Anything else still running from our temp dir (containerd shims, conmon, ...):
  # only processes whose command line names this run's unique directory.
  local p
  for p in $(pgrep -f -- "$TMP" 2>/dev/null); do
    [ "$p" = "$$" ] && continue
    stop_pid "$p" 3
  done
  # Mounts left under the temp dir (podman/docker runtime dirs), deepest first.
  awk -v t="$TMP" 'index($2, t) == 1 {print $2}' /proc/mounts 2>/dev/null | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  if [ "$KEEP_TMP" = 1 ]; then
    echo "# kept $TMP" >&2
  else
    rm -rf "$TMP" 2>/dev/null || { chattr -R -i "$TMP" 2>/dev/null; rm -rf "$TMP"; }
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- configuration for the container tools -----------------------------------------
cat >"$TMP/conf/policy.json" <<'EOF'
{"default": [{"type": "insecureAcceptAnything"}]}
EOF
# No search registries, no mirrors, no short-name aliases: only what the tests name.
cat >"$TMP/conf/registries.conf" <<'EOF'
unqualified-search-registries = []
short-name-mode = "permissive"
EOF
echo '{}' >"$TMP/conf/auth.json"
mkdir -p "$TMP/podman/root" "$TMP/podman/run" "$TMP/podman/tmp" "$TMP/podman/net"
cat >"$TMP/conf/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$TMP/podman/root"
runroot = "$TMP/podman/run"
EOF
cat >"$TMP/conf/containers.conf" <<EOF
[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$TMP/podman/events.log"
tmp_dir = "$TMP/podman/tmp"
image_copy_tmp_dir = "$TMP/podman/tmp"

[network]
network_config_dir = "$TMP/podman/net"
EOF
export CONTAINERS_CONF=$TMP/conf/containers.conf
export CONTAINERS_STORAGE_CONF=$TMP/conf/storage.conf
export CONTAINERS_REGISTRIES_CONF=$TMP/conf/registries.conf
export REGISTRY_AUTH_FILE=$TMP/conf/auth.json
export DOCKER_CONFIG=$TMP/docker/cli
# berth's client: its own credentials file (it also reads DOCKER_CONFIG and REGISTRY_AUTH_FILE).
export BERTH_AUTH_FILE=$TMP/conf/berth-auth.json
echo '{}' >"$BERTH_AUTH_FILE"
export TMPDIR=$TMP/tmp
mkdir -p "$TMPDIR" "$DOCKER_CONFIG"
# shellcheck disable=SC2034  # used by cases/20-podman.sh
PODMAN_ARGS=(--root "$TMP/podman/root" --runroot "$TMP/podman/run" --storage-driver vfs
             --cgroup-manager cgroupfs --events-backend file)

# ---- the registry under test ---------------------------------------------------------
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' && return
  fi
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  return 1
}

resolve_berth_bin() {
  local b=${BERTH_BIN:-}
  if [ -z "$b" ]; then
    # the newer of the two builds (a stale release build would lack newer commands)
    local rel=$ROOT/target/release/berth dbg=$ROOT/target/debug/berth
    if [ -x "$rel" ] && { [ ! -x "$dbg" ] || [ ! "$dbg" -nt "$rel" ]; }; then b=$rel
    else b=$dbg; fi
  elif [ "${b#/}" = "$b" ] && [ ! -e "$b" ] && [ -e "$ROOT/$b" ]; then
    b=$ROOT/$b
  fi
  echo "$b"
}

SERVER_LOG=$LOGS/registry.log       # stderr (and, for distribution, everything)
SERVER_STDOUT=$LOGS/registry.stdout

# write_distribution_config FILE DATA_DIR ADDR: a Distribution (docker-registry) config:
# filesystem storage in DATA_DIR, deletes enabled, plain HTTP on ADDR (host:port).
write_distribution_config() {
  local access=true
  [ "$DISTRIBUTION_LOG_LEVEL" = warn ] || [ "$DISTRIBUTION_LOG_LEVEL" = error ] || access=false
  cat >"$1" <<EOF
version: 0.1
log:
  level: $DISTRIBUTION_LOG_LEVEL
  accesslog:
    disabled: $access
storage:
  filesystem:
    rootdirectory: $2
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $3
  secret: berth-client-tests-$RANDOM$RANDOM
EOF
}

# spawn_distribution CONFIG STDOUT STDERR: start docker-registry in the background;
# its pid in SPAWNED_PID.
spawn_distribution() {
  # Distribution reads REGISTRY_* variables as configuration overrides
  # (REGISTRY_AUTH_FILE would become auth.file): run it without any.
  local unset_args=()
  mapfile -t unset_args < <(env | awk -F= '/^REGISTRY_/ {print "-u"; print $1}')
  env "${unset_args[@]}" \
    docker-registry serve "$1" >"$2" 2>"$3" </dev/null &
  SPAWNED_PID=$!
}

# wait_registry PID ADDR NAME: wait (10 s) until GET http://ADDR/v2/ answers 200 while
# PID lives; on failure say why on stderr and return 1 (PID is then stopped).
wait_registry() {
  local pid=$1 addr=$2 name=$3 i code
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      err "$name exited during startup (status $?)"
      return 1
    fi
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$addr/v2/" 2>/dev/null)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  err "$name did not answer 200 on http://$addr/v2/ within 10 s (last status: ${code:-none})"
  stop_pid "$pid" 5
  return 1
}

start_server_once() {
  PORT=$(free_port) || { err "no free port"; return 1; }
  REGISTRY=127.0.0.1:$PORT
  rm -rf "$TMP/data"
  mkdir -p "$TMP/data"
  : >"$SERVER_LOG"
  : >"$SERVER_STDOUT"
  if [ "$REGISTRY_UNDER_TEST" = berth ]; then
    # berth reads BERTH_<SECTION>_<KEY> as configuration overrides: keep BERTH_BIN (and
    # the client's BERTH_AUTH_FILE) out.
    env -u BERTH_BIN -u BERTH_AUTH_FILE "$BERTH" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" \
      >"$SERVER_STDOUT" 2>"$SERVER_LOG" </dev/null &
    SERVER_PID=$!
  else
    write_distribution_config "$TMP/conf/distribution.yml" "$TMP/data" "127.0.0.1:$PORT"
    spawn_distribution "$TMP/conf/distribution.yml" "$SERVER_STDOUT" "$SERVER_LOG"
    SERVER_PID=$SPAWNED_PID
  fi
  wait_registry "$SERVER_PID" "$REGISTRY" "$REGISTRY_UNDER_TEST" && return 0
  SERVER_PID=""
  return 1
}

# A second registry, CNCF Distribution whatever REGISTRY_UNDER_TEST is, for the tests
# named berth-dist-* (berth's client against a reference registry, and registry-to-registry
# copies). Started before the first such test; its address in DIST2 (host:port).
DIST2=""
DIST2_ERR=""
start_dist2() {
  if ! command -v docker-registry >/dev/null 2>&1; then
    DIST2_ERR="docker-registry not installed (run tests/clients/install-deps.sh)"
    return 1
  fi
  local _attempt port
  for _attempt in 1 2 3; do
    port=$(free_port) || { DIST2_ERR="no free port"; return 1; }
    rm -rf "$TMP/dist2"
    mkdir -p "$TMP/dist2"
    write_distribution_config "$TMP/conf/dist2.yml" "$TMP/dist2" "127.0.0.1:$port"
    spawn_distribution "$TMP/conf/dist2.yml" "$LOGS/dist2.stdout" "$LOGS/dist2.log"
    DIST2_PID=$SPAWNED_PID
    if wait_registry "$DIST2_PID" "127.0.0.1:$port" "second registry (docker-registry)"; then
      DIST2=127.0.0.1:$port
      return 0
    fi
    DIST2_PID=""
  done
  DIST2_ERR="docker-registry did not start; log: $(tail -n 3 "$LOGS/dist2.log" 2>/dev/null | tr '\n' ' ')"
  return 1
}

show_server_logs() {
  say "---- last lines of $REGISTRY_UNDER_TEST stdout ----"
  tail -n "${1:-20}" "$SERVER_STDOUT" 2>/dev/null | cut -c 1-400 | sed 's/^/#   /'
  say "---- last lines of $REGISTRY_UNDER_TEST stderr (full logs: KEEP_TMP=1) ----"
  tail -n "${1:-20}" "$SERVER_LOG" 2>/dev/null | cut -c 1-400 | sed 's/^/#   /'
}

start_server() {
  local _attempt
  for _attempt in 1 2 3; do
    start_server_once && return 0
    show_server_logs 20 >&2
  done
  return 1
}

# ---- dockerd -------------------------------------------------------------------------
DOCKERD_ERR=""
start_dockerd() {
  local D=$TMP/docker
  mkdir -p "$D/root" "$D/exec"
  echo '{}' >"$D/daemon.json"
  if ! command -v dockerd >/dev/null 2>&1; then
    DOCKERD_ERR="dockerd not installed (docker.io)"
    return 1
  fi
  # 127.0.0.0/8 is an insecure (plain-HTTP) registry for dockerd by default;
  # --insecure-registry keeps that true even if the default ever changes.
  # (dockerd 20.10 still writes its trust key to /etc/docker/key.json and makes an empty
  # /run/docker/plugins; neither can be redirected, both are harmless.)
  dockerd --config-file "$D/daemon.json" \
    --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --storage-driver=vfs --data-root "$D/root" --exec-root "$D/exec" \
    -H "unix://$D/sock" --pidfile "$D/dockerd.pid" \
    --insecure-registry "$REGISTRY" \
    >"$LOGS/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  local i
  export DOCKER_HOST=unix://$D/sock
  for ((i = 0; i < 60; i++)); do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      DOCKERD_ERR="dockerd exited during startup; log: $(tail -n 3 "$LOGS/dockerd.log" | tr '\n' ' ')"
      DOCKERD_PID=""
      return 1
    fi
    if timeout 5 "$DOCKER_CLI" info >/dev/null 2>&1; then
      DOCKERD_CHILDREN=$(pgrep -P "$DOCKERD_PID" | tr '\n' ' ')
      return 0
    fi
    sleep 1
  done
  DOCKERD_ERR="dockerd did not answer 'docker info' within 60 s; log: $(tail -n 3 "$LOGS/dockerd.log" | tr '\n' ' ')"
  return 1
}

# ---- test runner -----------------------------------------------------------------------
PASSED=0
FAILED=0
SKIPPED=0
TEST_NAMES=()
TEST_FNS=()
declare -A KNOWN_BUGS=()
SETUP_PREFIXES=()
SETUP_FNS=()
declare -A SETUP_DONE=()

# register NAME FUNCTION
register() { TEST_NAMES+=("$1"); TEST_FNS+=("$2"); }
# known_bug REGISTRY NAME "explanation": a failure that is a known spec bug of REGISTRY
known_bug() { KNOWN_BUGS["$1/$2"]=$3; }
# before_tests PREFIX FUNCTION: run FUNCTION once, in run.sh's own shell (so it can start
# daemons -- add their pids to EXTRA_PIDS -- and set variables the tests read), before the
# first selected test whose name starts with PREFIX. Its status is ignored: it records
# what went wrong in a variable its tests check.
before_tests() { SETUP_PREFIXES+=("$1"); SETUP_FNS+=("$2"); }
# Tests that need dockerd (started before the first of them): docker-* and *-docker.
needs_dockerd() { [[ $1 == docker-* || $1 == *-docker ]]; }

selected() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }

run_test() {
  local name=$1 fn=$2
  local log=$LOGS/test-$name.log
  REASON_FILE=$TMP/reason-$name
  SKIP_FILE=$TMP/skip-$name
  rm -f "$REASON_FILE" "$SKIP_FILE"
  local t0=$SECONDS
  # In the background + wait, so that a signal to run.sh is handled at once (cleanup
  # then stops the test's whole process tree).
  (
    WORK=$TMP/work/$name
    mkdir -p "$WORK" && cd "$WORK" || exit 1
    "$fn"
  ) >"$log" 2>&1 </dev/null &
  CURRENT_TEST_PID=$!
  wait "$CURRENT_TEST_PID"
  local rc=$?
  CURRENT_TEST_PID=""
  local dt=$((SECONDS - t0))
  if [ "$rc" -eq 0 ] && [ -f "$SKIP_FILE" ]; then
    echo "ok - $name # skip $(head -c 300 "$SKIP_FILE" | tr '\n' ' ' | sed 's/ *$//')"
    SKIPPED=$((SKIPPED + 1))
  elif [ "$rc" -eq 0 ]; then
    echo "ok - $name"
    PASSED=$((PASSED + 1))
  else
    local reason
    reason=$(head -c 400 "$REASON_FILE" 2>/dev/null | tr '\n' ' ')
    [ -n "$reason" ] || reason="exited with status $rc (no reason recorded)"
    local kb=${KNOWN_BUGS["$REGISTRY_UNDER_TEST/$name"]:-}
    [ -n "$kb" ] && reason="$reason [known $REGISTRY_UNDER_TEST bug: $kb]"
    echo "not ok - $name: $reason"
    say "---- last lines of $log ----"
    tail -n 15 "$log" | sed 's/^/#   /'
    FAILED=$((FAILED + 1))
    ANY_FAILED_TESTS+=("$name")
  fi
  say "$name took ${dt}s"
  if [ -n "$DIST2_PID" ] && ! kill -0 "$DIST2_PID" 2>/dev/null; then
    say "!! the second registry (docker-registry, pid $DIST2_PID) has died; log: $(tail -n 5 "$LOGS/dist2.log" 2>/dev/null | tr '\n' ' ')"
    DIST2_PID=""
    DIST2_ERR="the second registry died during an earlier test"
  fi
  if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "!! the registry process ($REGISTRY_UNDER_TEST, pid $SERVER_PID) has died"
    show_server_logs 30
    SERVER_PID=""
  fi
}
ANY_FAILED_TESTS=()

# ---- tests -----------------------------------------------------------------------------
for f in "$HERE"/cases/*.sh; do
  # shellcheck disable=SC1090
  . "$f"
done

T_START=$SECONDS
say "registry under test: $REGISTRY_UNDER_TEST; temp dir: $TMP"
# The berth binary: the registry under test, and the tool under test in layout cases.
BERTH=$(resolve_berth_bin)
if [ "$REGISTRY_UNDER_TEST" = berth ]; then
  if [ ! -x "$BERTH" ]; then
    echo "not ok - registry-start: berth binary not found at '$BERTH' (build it, set BERTH_BIN, or use REGISTRY_UNDER_TEST=distribution)"
    echo "0 passed, 1 failed"
    exit 1
  fi
  say "berth binary: $BERTH"
fi

# 1. Test images (offline, from busybox-static, with umoci).
IMAGES=$TMP/images/oci
if ! build_test_images >"$LOGS/build-images.log" 2>&1; then
  echo "not ok - build-test-images: see log below"
  tail -n 30 "$LOGS/build-images.log" | sed 's/^/#   /'
  echo "0 passed, 1 failed"
  exit 1
fi
say "test images built in $((SECONDS - T_START))s: $(jq -r '[.manifests[].annotations["org.opencontainers.image.ref.name"]] | join(", ")' "$IMAGES/index.json")"

# 2. The registry.
if ! start_server; then
  echo "not ok - registry-start: $REGISTRY_UNDER_TEST did not start (see messages above)"
  echo "0 passed, 1 failed"
  exit 1
fi
say "$REGISTRY_UNDER_TEST listening at http://$REGISTRY (pid $SERVER_PID)"
if [ -n "${TRACE_HTTP:-}" ]; then
  : >"$TRACE_HTTP" || { err "cannot write TRACE_HTTP file $TRACE_HTTP"; exit 2; }
  TRACE_HTTP=$(cd "$(dirname "$TRACE_HTTP")" && pwd)/$(basename "$TRACE_HTTP")
  PPORT=$(free_port)
  python3 "$HERE/trace-proxy.py" "$PPORT" "$PORT" "$TRACE_HTTP" >"$LOGS/trace-proxy.log" 2>&1 </dev/null &
  PROXY_PID=$!
  for ((i = 0; i < 50; i++)); do
    [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PPORT/v2/")" = 200 ] && break
    sleep 0.1
  done
  REGISTRY=127.0.0.1:$PPORT
  say "tracing HTTP through http://$REGISTRY into $TRACE_HTTP"
fi
if [ "$REGISTRY_UNDER_TEST" = berth ]; then
  # berth's contract: one stdout line containing "listening on" once ready.
  for ((i = 0; i < 20; i++)); do grep -q 'listening on' "$SERVER_STDOUT" && break; sleep 0.1; done
  if grep -q 'listening on' "$SERVER_STDOUT"; then
    echo "ok - berth-ready-line"
    PASSED=$((PASSED + 1))
  else
    echo "not ok - berth-ready-line: /v2/ answered 200 but no stdout line contains 'listening on'"
    FAILED=$((FAILED + 1))
  fi
fi

# 3. The tests, in registration order; dockerd is started before the first docker test.
for idx in "${!TEST_NAMES[@]}"; do
  name=${TEST_NAMES[$idx]}
  selected "$name" || continue
  for sidx in "${!SETUP_PREFIXES[@]}"; do
    if [[ $name == "${SETUP_PREFIXES[$sidx]}"* ]] && [ -z "${SETUP_DONE[$sidx]:-}" ]; then
      SETUP_DONE[$sidx]=1
      "${SETUP_FNS[$sidx]}"
    fi
  done
  if needs_dockerd "$name" && [ -z "$DOCKERD_PID" ] && [ -z "$DOCKERD_ERR" ]; then
    t0=$SECONDS
    if start_dockerd; then
      say "dockerd started in $((SECONDS - t0))s (pid $DOCKERD_PID, children: $DOCKERD_CHILDREN)"
    else
      say "dockerd failed: $DOCKERD_ERR"
    fi
  fi
  if [[ $name == berth-dist-* ]] && [ -z "$DIST2_PID" ] && [ -z "$DIST2_ERR" ]; then
    if start_dist2; then
      say "second registry (docker-registry) listening at http://$DIST2 (pid $DIST2_PID)"
    else
      say "second registry failed: $DIST2_ERR"
    fi
  fi
  run_test "$name" "${TEST_FNS[$idx]}"
done

if [ "$FAILED" -gt 0 ]; then
  show_server_logs 15
  for x in "${EXTRA_LOGS[@]}"; do
    [ -s "$x" ] || continue
    say "---- last lines of ${x#"$TMP"/} ----"
    tail -n 15 "$x" | cut -c 1-400 | sed 's/^/#   /'
  done
  if [ -n "$DOCKERD_PID$DOCKERD_ERR" ] && printf '%s\n' "${ANY_FAILED_TESTS[@]}" | grep -qE '^docker-|-docker$'; then
    say "---- last lines of dockerd log ----"
    tail -n 20 "$LOGS/dockerd.log" 2>/dev/null | sed 's/^/#   /'
  fi
fi
say "total time $((SECONDS - T_START))s"
[ "$SKIPPED" -eq 0 ] || say "$SKIPPED skipped"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
