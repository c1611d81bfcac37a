# shellcheck shell=bash
# Access control (issue 4: config [tls], [auth] mode = "token", [audit]; 401 Bearer
# challenges, 403 DENIED, /token): real clients with credentials against a SECOND berth serve that
# this file starts for the auth-tls-* tests -- HTTPS with a test CA made here with
# openssl, Docker token auth (mode = "token"), an htpasswd file made with `berth passwd`:
#   alice  group writers: pull, push on secure/**
#   bob    group readers: pull on secure/**
# Every client gets its own credential files (BERTH_AUTH_FILE, DOCKER_CONFIG,
# REGISTRY_AUTH_FILE under the test's $WORK; see with_creds) and trusts the CA per
# invocation (skopeo/podman --cert-dir, berth --ca-cert / BERTH_CA_CERT, curl --cacert);
# only dockerd needs a system path: /etc/docker/certs.d/HOST:PORT/ca.crt, removed at the
# end of the test and, as a safety net, by run.sh's cleanup.
#
# Address: the registry listens on this host's first non-loopback IPv4 address (AUTH_TLS_IP
# overrides). On 127.0.0.0/8 (and any name resolving there, localhost included) dockerd
# treats a registry as insecure: it skips certificate verification and never reads
# certs.d, so the docker test would prove nothing about the CA. 127.0.0.1 is the fallback
# when the host has no other address; the server certificate names 127.0.0.1, localhost
# and the chosen address.
#
# berth-specific: with REGISTRY_UNDER_TEST=distribution every test here is skipped.

AUTH_SKIP=""
AUTH_ERR=""
AUTH_PID=""
AUTH_HOST=""   # host:port the clients use
AUTH_IP=""
AUTH_DIR=""
AUTH_CA=""     # the test CA certificate (PEM)
AUTH_CERTDIR="" # a directory holding only ca.crt (skopeo/podman --cert-dir)
AUTH_LOG=""    # the second berth's stderr (BERTH_LOG=debug)
AUTH_STDOUT=""
AUTH_AUDIT=""  # its audit file
AUTH_SECRETS="" # passwords and every token seen, for the leak check (not a log)
ALICE_PW=""
BOB_PW=""
WRONG_PW=""

# auth_tls_setup: run by run.sh (before_tests) in its own shell before the first
# auth-tls-* test; records why it failed in AUTH_ERR (or AUTH_SKIP).
auth_tls_setup() {
  if [ "$REGISTRY_UNDER_TEST" != berth ]; then
    AUTH_SKIP="berth-specific (berth serve with TLS and token auth); REGISTRY_UNDER_TEST=$REGISTRY_UNDER_TEST"
    return 0
  fi
  AUTH_DIR=$TMP/auth
  mkdir -p "$AUTH_DIR"
  # shellcheck disable=SC2153  # LOGS: run.sh
  if ! auth_tls_start >"$LOGS/auth-setup.log" 2>&1; then
    AUTH_ERR="starting the TLS + token-auth berth failed: $(tail -n 4 "$LOGS/auth-setup.log" | cut -c 1-300 | tr '\n' ' ')"
    echo "# $AUTH_ERR"
    return 1
  fi
  echo "# second berth (TLS, token auth) at https://$AUTH_HOST (pid $AUTH_PID; logs in $AUTH_DIR/logs)"
}

# The first global IPv4 address of this host, else 127.0.0.1.
auth_pick_ip() {
  local ip=""
  if command -v ip >/dev/null 2>&1; then
    ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
  fi
  [ -n "$ip" ] || ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | grep -v '^127\.' | head -n 1)
  echo "${ip:-127.0.0.1}"
}

auth_tls_start() {
  command -v openssl >/dev/null 2>&1 || { echo "openssl not installed (tests/clients/install-deps.sh)"; return 1; }
  [ -x "$BERTH" ] || { echo "berth binary not found at $BERTH"; return 1; }
  local D=$AUTH_DIR
  mkdir -p "$D/tls" "$D/certs" "$D/logs" "$D/data" "$D/secrets" || return 1
  chmod 700 "$D/tls" "$D/secrets"
  AUTH_IP=${AUTH_TLS_IP:-$(auth_pick_ip)}
  AUTH_CA=$D/tls/ca.crt
  AUTH_CERTDIR=$D/certs
  AUTH_LOG=$D/logs/berth.log
  AUTH_STDOUT=$D/logs/berth.stdout
  AUTH_AUDIT=$D/logs/audit.log
  AUTH_SECRETS=$D/secrets
  echo "address: $AUTH_IP"

  # ---- the test CA and the server certificate (EC P-256, 2 days) ----
  ( umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -keyout "$D/tls/ca.key" -out "$D/tls/ca.crt" -subj "/CN=berth client-test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" ) || return 1
  ( umask 077
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$D/tls/server.key" -out "$D/tls/server.csr" -subj "/CN=$AUTH_IP" ) || return 1
  local san="IP:127.0.0.1,DNS:localhost"
  [ "$AUTH_IP" = 127.0.0.1 ] || san="$san,IP:$AUTH_IP"
  cat >"$D/tls/server.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
EOF
  openssl x509 -req -in "$D/tls/server.csr" -CA "$D/tls/ca.crt" -CAkey "$D/tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$D/tls/server.ext" -out "$D/tls/server.crt" || return 1
  chmod 600 "$D/tls/ca.key" "$D/tls/server.key"
  chmod 644 "$D/tls/ca.crt" "$D/tls/server.crt"
  openssl verify -CAfile "$D/tls/ca.crt" "$D/tls/server.crt" || return 1
  cp "$D/tls/ca.crt" "$AUTH_CERTDIR/ca.crt" || return 1

  # ---- users (passwords random per run; kept only in $D/secrets) ----
  ALICE_PW=alice-$(openssl rand -hex 12)
  BOB_PW=bob-$(openssl rand -hex 12)
  WRONG_PW=wrong-$(openssl rand -hex 12)
  printf '%s\n' "$ALICE_PW" "$BOB_PW" "$WRONG_PW" >"$D/secrets/passwords"
  : >"$D/secrets/tokens"
  local u pw
  for u in alice bob; do
    if [ "$u" = alice ]; then pw=$ALICE_PW; else pw=$BOB_PW; fi
    echo "+ berth passwd $D/htpasswd $u  (password on stdin)"
    printf '%s\n' "$pw" | "$BERTH" passwd "$D/htpasswd" "$u" || { echo "berth passwd $u failed"; return 1; }
  done

  # ---- configuration ----
  cat >"$D/berth.toml" <<EOF
[server]
listen = "$AUTH_IP:0"

[storage]
data_dir = "$D/data"

[tls]
cert = "$D/tls/server.crt"
key = "$D/tls/server.key"

[auth]
mode = "token"
htpasswd = "$D/htpasswd"
service = "berth"
issuer = "berth"
token_ttl_secs = 300

[auth.groups]
writers = ["alice"]
readers = ["bob"]

[[auth.rules]]
repositories = ["secure/**"]
groups = ["writers"]
actions = ["pull", "push"]

[[auth.rules]]
repositories = ["secure/**"]
groups = ["readers"]
actions = ["pull"]

[audit]
file = "$AUTH_AUDIT"
EOF
  cat "$D/berth.toml"
  # berth reads BERTH_<SECTION>_<KEY> as configuration overrides: the server gets none of
  # the client-side BERTH_* variables (BERTH_BIN, BERTH_AUTH_FILE, BERTH_CA_CERT, ...).
  local unset_args=() v
  for v in $(env | awk -F= '/^BERTH_/ && $1 != "BERTH_LOG" {print $1}'); do unset_args+=(-u "$v"); done
  echo "+ berth check-config $D/berth.toml"
  env "${unset_args[@]}" "$BERTH" check-config "$D/berth.toml" || { echo "berth check-config rejects the configuration"; return 1; }

  echo "+ BERTH_LOG=debug berth serve --config $D/berth.toml"
  env "${unset_args[@]}" BERTH_LOG=debug "$BERTH" serve --config "$D/berth.toml" \
    >"$AUTH_STDOUT" 2>"$AUTH_LOG" </dev/null &
  AUTH_PID=$!
  EXTRA_PIDS+=("$AUTH_PID")
  EXTRA_LOGS+=("$AUTH_LOG")
  local i url=""
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$AUTH_PID" 2>/dev/null; then
      echo "berth serve exited during startup; stderr:"; tail -n 20 "$AUTH_LOG"
      AUTH_PID=""
      return 1
    fi
    url=$(grep -o 'listening on [a-z]*://[^ ]*' "$AUTH_STDOUT" | head -n 1 | awk '{print $3}')
    [ -n "$url" ] && break
    sleep 0.1
  done
  cat "$AUTH_STDOUT"
  [ -n "$url" ] || { echo "no 'listening on' line on stdout within 30 s"; tail -n 20 "$AUTH_LOG"; return 1; }
  case "$url" in
    https://*) ;;
    *) echo "the ready line names $url: TLS is not on"; return 1 ;;
  esac
  AUTH_HOST=${url#https://}
  AUTH_HOST=${AUTH_HOST%/}
  local code=000
  for ((i = 0; i < 100; i++)); do
    code=$(curl -s -m 5 --cacert "$AUTH_CA" -o /dev/null -w '%{http_code}' "https://$AUTH_HOST/v2/")
    [ "$code" != 000 ] && break
    sleep 0.1
  done
  echo "GET https://$AUTH_HOST/v2/ (anonymous) -> $code"
  [ "$code" != 000 ] || { echo "no HTTPS answer from $AUTH_HOST"; tail -n 20 "$AUTH_LOG"; return 1; }
}
before_tests auth-tls- auth_tls_setup

# ---- helpers -----------------------------------------------------------------------------

# auth_ready: skip (distribution) or die unless the second berth is up.
auth_ready() {
  [ -z "$AUTH_SKIP" ] || skip "$AUTH_SKIP"
  [ -z "$AUTH_ERR" ] || die "$AUTH_ERR"
  [ -n "$AUTH_PID" ] || die "the TLS + token-auth berth was not started"
  kill -0 "$AUTH_PID" 2>/dev/null \
    || die "the TLS + token-auth berth (pid $AUTH_PID) has died; stderr: $(tail -n 5 "$AUTH_LOG" | cut -c 1-200 | tr '\n' ' ')"
}

# with_creds NAME CMD...: run CMD (a function or a program) with NAME's own credential
# files (berth, docker, containers/image) in $WORK/creds-NAME; "nobody" has none.
with_creds() {
  local c=$WORK/creds-$1
  shift
  mkdir -p "$c/docker"
  # (podman refuses a REGISTRY_AUTH_FILE that does not exist; skopeo and berth do not care)
  [ -e "$c/auth.json" ] || echo '{}' >"$c/auth.json"
  BERTH_AUTH_FILE=$c/berth-auth.json DOCKER_CONFIG=$c/docker REGISTRY_AUTH_FILE=$c/auth.json "$@"
}

# rc_of OUT ERR CMD...: run CMD with stdout/stderr into files (run's "+ command" echo
# lines are kept out of ERR), both copied to the log; returns CMD's exit status.
rc_of() {
  local out=$1 err=$2 rc
  shift 2
  "$@" >"$out" 2>"$err.raw"
  rc=$?
  grep '^+ ' "$err.raw" >&2
  grep -v '^+ ' "$err.raw" >"$err"
  sed 's/^/  stdout: /' "$out" >&2
  sed 's/^/  stderr: /' "$err" >&2
  echo "  exit status $rc" >&2
  return "$rc"
}

# auth_curl ARGS...: curl against the second berth, trusting the test CA. Credentials and
# tokens go in through a curl config on stdin (never on the command line or in the log).
auth_curl() { curl -s -m 20 --cacert "$AUTH_CA" "$@"; }

# auth_token USER PASSWORD SCOPE: GET /token with Basic credentials; prints the token
# (recorded in $AUTH_SECRETS/tokens for the leak check). USER "" = anonymous.
auth_token() {
  local user=$1 pw=$2 scope=$3 body tok
  local cfg=""
  [ -z "$user" ] || cfg="user = \"$user:$pw\""
  body=$(printf '%s\n' "$cfg" | auth_curl -K - -G --data-urlencode service=berth \
    --data-urlencode "scope=$scope" "https://$AUTH_HOST/token") || return 1
  tok=$(jq -r '.token // .access_token // empty' <<<"$body" 2>/dev/null)
  [ -n "$tok" ] || return 1
  echo "$tok" >>"$AUTH_SECRETS/tokens"
  echo "$tok"
}

# bearer_cfg TOKEN: a curl config line sending TOKEN.
bearer_cfg() { printf 'header = "Authorization: Bearer %s"\n' "$1"; }

# auth_digest REPO REF: Docker-Content-Digest of REPO:REF in the second berth (read with a
# pull token of alice's); empty if absent.
auth_digest() {
  local tok
  tok=$(auth_token alice "$ALICE_PW" "repository:$1:pull") || { echo "token-request-failed"; return 1; }
  bearer_cfg "$tok" | auth_curl -K - -o /dev/null -D - -I -H "Accept: $ACCEPT_ALL" \
    "https://$AUTH_HOST/v2/$1/manifests/$2" \
    | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}'
}

# jwt_payload TOKEN: the JSON payload of a JWT.
jwt_payload() {
  local p
  p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
  while [ $((${#p} % 4)) -ne 0 ]; do p="$p="; done
  base64 -d <<<"$p"
}

# header_of FILE NAME: the value of header NAME in a curl -D dump (last one wins).
header_of() { tr -d '\r' <"$1" | awk -v n="$2:" 'tolower($1) == tolower(n) {sub(/^[^:]*:[ \t]*/, ""); v = $0} END {print v}'; }
status_of() { tr -d '\r' <"$1" | awk '/^HTTP\// {s = $2} END {print s}'; }

# Words a refused request's message should contain.
DENIAL_RE='401|403|denied|unauthori[sz]ed|authenticat|forbidden'
CERT_RE='certificate|x509|unknown ?issuer|unknown authority|tls|ssl'

apm() { podman_ "${PODMAN_ARGS[@]}" "$@"; }

# ---- tests ---------------------------------------------------------------------------------

# Anonymous callers and the token service, with curl over HTTPS.
test_auth_tls_anonymous() {
  auth_ready
  local H=$AUTH_HOST rc
  # no CA: the handshake must fail on the certificate (curl exit 60)
  curl -s -m 20 -o /dev/null "https://$H/v2/" 2>"$WORK/err"
  rc=$?
  note "curl without --cacert: exit $rc"
  expect_eq "$rc" 60 "curl exit status without the test CA (60 = peer certificate cannot be authenticated)"

  # GET /v2/ anonymously: 401 UNAUTHORIZED with a Bearer challenge, no scope; the realm
  # is derived from the request's authority (Host in HTTP/1.1, :authority in HTTP/2 --
  # Go clients speak HTTP/1.1 here, curl and berth's own client negotiate h2)
  local v wa
  for v in 1.1 2; do
    auth_curl "--http$v" -o "$WORK/body" -D "$WORK/h" -w '%{http_version}\n' "https://$H/v2/" >"$WORK/version" \
      || die "curl --cacert --http$v https://$H/v2/ failed (exit $?)"
    note "HTTP version asked $v, used $(cat "$WORK/version")"
    tr -d '\r' <"$WORK/h" >&2
    cat "$WORK/body" >&2; echo >&2
    expect_eq "$(status_of "$WORK/h")" 401 "status of an anonymous GET /v2/ (HTTP/$v)"
    wa=$(header_of "$WORK/h" WWW-Authenticate)
    [[ $wa == Bearer\ * ]] || die "WWW-Authenticate of /v2/ (HTTP/$v) is not a Bearer challenge: '$wa'"
    [[ $wa == *"realm=\"https://$H/token\""* ]] || die "WWW-Authenticate of /v2/ over HTTP/$(cat "$WORK/version") lacks realm=\"https://$H/token\": '$wa'"
    [[ $wa == *'service="berth"'* ]] || die "WWW-Authenticate (HTTP/$v) lacks service=\"berth\": '$wa'"
    [[ $wa != *scope=* ]] || die "WWW-Authenticate of /v2/ has a scope: '$wa'"
    expect_eq "$(jq -r '.errors[0].code' "$WORK/body" 2>/dev/null)" UNAUTHORIZED "error code of the anonymous GET /v2/"
  done

  # a repository: the challenge names the pull scope
  auth_curl -o "$WORK/body2" -D "$WORK/h2" "https://$H/v2/secure/anon/tags/list" || die "curl failed"
  expect_eq "$(status_of "$WORK/h2")" 401 "status of an anonymous GET tags/list"
  wa=$(header_of "$WORK/h2" WWW-Authenticate)
  note "challenge: $wa"
  [[ $wa == *'scope="repository:secure/anon:pull"'* ]] || die "challenge of tags/list lacks scope=\"repository:secure/anon:pull\": '$wa'"
  expect_eq "$(jq -r '.errors[0].code' "$WORK/body2" 2>/dev/null)" UNAUTHORIZED "error code of the anonymous tags/list"

  # the certificate's DNS name: localhost:PORT (routed to the listening address)
  local port=${H##*:}
  expect_eq "$(auth_curl -o /dev/null -w '%{http_code}' --connect-to "localhost:$port:$AUTH_IP:$port" "https://localhost:$port/v2/")" \
    401 "status of GET https://localhost:$port/v2/ (certificate DNS name localhost)"

  # the token service: wrong password -> 401; alice gets pull,push; bob only pull;
  # anonymous gets a token without actions
  local code
  code=$(printf 'user = "alice:%s"\n' "$WRONG_PW" | auth_curl -K - -o /dev/null -w '%{http_code}' -G \
    --data-urlencode service=berth --data-urlencode scope=repository:secure/anon:pull "https://$H/token")
  expect_eq "$code" 401 "status of GET /token with a wrong password"
  local ta tb tn
  ta=$(auth_token alice "$ALICE_PW" "repository:secure/anon:pull,push") || die "GET /token for alice failed"
  jwt_payload "$ta" >"$WORK/alice.jwt" || die "alice's token is not a JWT"
  jq -c . "$WORK/alice.jwt" >&2 || die "alice's token payload is not JSON"
  expect_eq "$(jq -r '[.access[]? | select(.type == "repository" and .name == "secure/anon") | .actions[]] | sort | join(",")' "$WORK/alice.jwt")" \
    pull,push "actions in alice's token for repository:secure/anon:pull,push"
  expect_eq "$(jq -r .aud "$WORK/alice.jwt" | tr -d '[]" \n')" berth "aud of alice's token"
  expect_eq "$(jq -r .iss "$WORK/alice.jwt")" berth "iss of alice's token"
  tb=$(auth_token bob "$BOB_PW" "repository:secure/anon:pull,push") || die "GET /token for bob failed"
  jwt_payload "$tb" >"$WORK/bob.jwt" || die "bob's token is not a JWT"
  expect_eq "$(jq -r '[.access[]? | select(.name == "secure/anon") | .actions[]] | sort | join(",")' "$WORK/bob.jwt")" \
    pull "actions in bob's token for repository:secure/anon:pull,push"
  tn=$(auth_token "" "" "repository:secure/anon:pull") || die "GET /token anonymously did not give a token (expected 200 with no actions)"
  jwt_payload "$tn" >"$WORK/anon.jwt" || die "the anonymous token is not a JWT"
  expect_eq "$(jq -r '[.access[]?.actions[]?] | length' "$WORK/anon.jwt")" 0 "actions in an anonymous token for secure/anon"

  # tokens at work: alice's opens /v2/; bob's (pull only) cannot start an upload -> 403
  # DENIED (his policy refuses push); alice's pull-only token -> 401 insufficient_scope
  expect_eq "$(bearer_cfg "$ta" | auth_curl -K - -o /dev/null -w '%{http_code}' "https://$H/v2/")" 200 "GET /v2/ with alice's token"
  bearer_cfg "$tb" | auth_curl -K - -o "$WORK/b3" -D "$WORK/h3" -X POST "https://$H/v2/secure/anon/blobs/uploads/"
  tr -d '\r' <"$WORK/h3" >&2; cat "$WORK/b3" >&2; echo >&2
  expect_eq "$(status_of "$WORK/h3")" 403 "POST uploads with bob's token (bob may not push)"
  expect_eq "$(jq -r '.errors[0].code' "$WORK/b3" 2>/dev/null)" DENIED "error code of bob's POST uploads"
  local tap
  tap=$(auth_token alice "$ALICE_PW" "repository:secure/anon:pull") || die "GET /token (pull) for alice failed"
  bearer_cfg "$tap" | auth_curl -K - -o "$WORK/b4" -D "$WORK/h4" -X POST "https://$H/v2/secure/anon/blobs/uploads/"
  tr -d '\r' <"$WORK/h4" >&2; cat "$WORK/b4" >&2; echo >&2
  expect_eq "$(status_of "$WORK/h4")" 401 "POST uploads with alice's pull-only token"
  [[ $(header_of "$WORK/h4" WWW-Authenticate) == *'error="insufficient_scope"'* ]] \
    || die "challenge after alice's pull-only POST lacks error=\"insufficient_scope\": '$(header_of "$WORK/h4" WWW-Authenticate)'"

  # offline token -> refresh token -> POST /token grant_type=refresh_token
  printf 'user = "alice:%s"\n' "$ALICE_PW" | auth_curl -K - -o "$WORK/offline.json" -w '%{http_code}\n' -G \
    --data-urlencode service=berth --data-urlencode scope=repository:secure/anon:pull \
    --data-urlencode offline_token=true "https://$H/token" >"$WORK/offline.code"
  expect_eq "$(cat "$WORK/offline.code")" 200 "status of GET /token?offline_token=true"
  local rt; rt=$(jq -r '.refresh_token // empty' "$WORK/offline.json")
  [ -n "$rt" ] || die "GET /token?offline_token=true gave no refresh_token (keys: $(jq -c keys "$WORK/offline.json"))"
  echo "$rt" >>"$AUTH_SECRETS/tokens"
  jq -r '.token // .access_token // empty' "$WORK/offline.json" >>"$AUTH_SECRETS/tokens"
  printf 'data-urlencode = "refresh_token=%s"\n' "$rt" | auth_curl -K - -o "$WORK/refreshed.json" -w '%{http_code}\n' \
    --data-urlencode grant_type=refresh_token --data-urlencode service=berth \
    --data-urlencode scope=repository:secure/anon:pull "https://$H/token" >"$WORK/refreshed.code"
  expect_eq "$(cat "$WORK/refreshed.code")" 200 "status of POST /token grant_type=refresh_token"
  local at; at=$(jq -r '.access_token // empty' "$WORK/refreshed.json")
  [ -n "$at" ] || die "POST /token (refresh) gave no access_token (keys: $(jq -c keys "$WORK/refreshed.json"))"
  echo "$at" >>"$AUTH_SECRETS/tokens"
  code=$(bearer_cfg "$at" | auth_curl -K - -o /dev/null -w '%{http_code}' "https://$H/v2/secure/anon/tags/list")
  [ "$code" = 200 ] || [ "$code" = 404 ] \
    || die "GET tags/list with the refreshed token: status $code (expected 200 or 404: authorized)"
}
register auth-tls-anonymous test_auth_tls_anonymous

# skopeo: login with --cert-dir, copy as alice (writer) both ways; bob (reader) may pull
# but not push; nobody may pull.
test_auth_tls_skopeo() {
  auth_ready
  local H=$AUTH_HOST CD=$AUTH_CERTDIR
  local d; d=$(layout_digest "$IMAGES" amd64)
  # without the CA: a certificate error
  rc_of "$WORK/out" "$WORK/err" with_creds nobody skopeo_ inspect --raw "docker://$H/secure/skopeo:v1" \
    && die "skopeo inspect without the CA succeeded"
  grep -qiE "$CERT_RE" "$WORK/err" || die "skopeo inspect without the CA failed, but not on the certificate: $(head -c 300 "$WORK/err")"

  printf '%s\n' "$ALICE_PW" | with_creds alice skopeo_ login --cert-dir "$CD" -u alice --password-stdin "$H" \
    || die "skopeo login as alice failed"
  with_creds alice skopeo_ copy --dest-cert-dir "$CD" "oci:$IMAGES:amd64" "docker://$H/secure/skopeo:v1" \
    || die "skopeo copy oci -> registry as alice failed"
  expect_eq "$(auth_digest secure/skopeo v1)" "$d" "registry's digest of secure/skopeo:v1"
  with_creds alice skopeo_ copy --src-cert-dir "$CD" "docker://$H/secure/skopeo:v1" "oci:$WORK/back:v1" \
    || die "skopeo copy registry -> oci as alice failed"
  expect_eq "$(layout_digest "$WORK/back" v1)" "$d" "digest after the round trip"
  same_tree "$IMAGES" "$WORK/back" "$d"

  # bob: login works, push is refused, pull works
  printf '%s\n' "$BOB_PW" | with_creds bob skopeo_ login --cert-dir "$CD" -u bob --password-stdin "$H" \
    || die "skopeo login as bob failed"
  rc_of "$WORK/out" "$WORK/err" with_creds bob skopeo_ copy --dest-cert-dir "$CD" \
    "oci:$IMAGES:arm64" "docker://$H/secure/skopeo-bob:v1" && die "skopeo copy to the registry as bob (reader) succeeded"
  grep -qiE "$DENIAL_RE" "$WORK/err" || note "bob's refused push says: $(head -c 300 "$WORK/err")"
  expect_eq "$(auth_digest secure/skopeo-bob v1)" "" "digest of secure/skopeo-bob:v1 after bob's refused push"
  with_creds bob skopeo_ copy --src-cert-dir "$CD" "docker://$H/secure/skopeo:v1" "oci:$WORK/bob:v1" \
    || die "skopeo copy registry -> oci as bob (reader) failed"
  same_tree "$IMAGES" "$WORK/bob" "$d"

  # no credentials: refused
  rc_of "$WORK/out" "$WORK/err" with_creds nobody skopeo_ copy --src-cert-dir "$CD" \
    "docker://$H/secure/skopeo:v1" "oci:$WORK/anon:v1" && die "skopeo copy from the registry without credentials succeeded"
  grep -qiE "$DENIAL_RE" "$WORK/err" || die "anonymous skopeo copy failed, but not with an authentication error: $(head -c 300 "$WORK/err")"
  with_creds alice skopeo_ logout "$H" || die "skopeo logout failed"
}
register auth-tls-skopeo test_auth_tls_skopeo

# podman: login with --cert-dir, push, remove, pull back.
test_auth_tls_podman() {
  auth_ready
  command -v podman >/dev/null || die "podman not installed"
  local H=$AUTH_HOST CD=$AUTH_CERTDIR
  local ref=$H/secure/podman:v1
  skopeo_ copy "oci:$IMAGES:$NATIVE" "oci-archive:$WORK/img.tar:berth-test/auth:v1" \
    || die "skopeo copy oci -> oci-archive failed"
  apm load -i "$WORK/img.tar" || die "podman load failed"
  local id; id=$(apm inspect --format '{{.Id}}' localhost/berth-test/auth:v1)
  [ -n "$id" ] || die "podman load produced no localhost/berth-test/auth:v1"
  apm tag "$id" "$ref" || die "podman tag failed"

  printf '%s\n' "$ALICE_PW" | with_creds alice apm login --cert-dir "$CD" -u alice --password-stdin "$H" \
    || die "podman login as alice failed"
  with_creds alice apm push --cert-dir "$CD" --digestfile "$WORK/digest" "$ref" || die "podman push as alice failed"
  local pushed; pushed=$(cat "$WORK/digest")
  [[ $pushed == sha256:* ]] || die "podman push wrote no digest (got '$pushed')"
  expect_eq "$(auth_digest secure/podman v1)" "$pushed" "registry's digest of the pushed tag"
  apm rmi -f "$ref" "$id" || die "podman rmi failed"
  if apm image exists "$ref"; then die "image still present after rmi"; fi
  with_creds alice apm pull --cert-dir "$CD" "$ref" || die "podman pull as alice failed"
  apm inspect --format '{{json .RepoDigests}}' "$ref" >"$WORK/repodigests" || die "podman inspect failed"
  grep -q "\"$H/secure/podman@$pushed\"" "$WORK/repodigests" \
    || die "RepoDigests $(cat "$WORK/repodigests") lacks $H/secure/podman@$pushed"
  expect_eq "$(apm inspect --format '{{.Id}}' "$ref")" "$id" "image id after the round trip"

  # without credentials, and without the CA: refused
  rc_of "$WORK/out" "$WORK/err" with_creds nobody apm pull --cert-dir "$CD" "$ref" \
    && die "podman pull without credentials succeeded"
  grep -qiE "$DENIAL_RE" "$WORK/err" || die "podman pull without credentials failed, but not with an authentication error: $(tail -c 300 "$WORK/err")"
  rc_of "$WORK/out" "$WORK/err" with_creds alice apm pull "$ref" && die "podman pull without the CA succeeded"
  grep -qiE "$CERT_RE" "$WORK/err" || die "podman pull without the CA failed, but not on the certificate: $(tail -c 300 "$WORK/err")"
  with_creds alice apm logout "$H" || die "podman logout failed"
}
register auth-tls-podman test_auth_tls_podman

# The docker engine (run.sh's dockerd; it reads /etc/docker/certs.d/HOST:PORT/ on every
# registry connection, so installing the CA there needs no restart).
test_auth_tls_docker() {
  auth_ready
  docker_ready
  local H=$AUTH_HOST
  local certs=/etc/docker/certs.d
  local dir=$certs/$H
  [ ! -e "$dir" ] || die "$dir exists already; not touching it"
  # remove what this test creates, and only that: at its end, and (safety net, e.g. when
  # interrupted) in run.sh's cleanup
  local made=()
  [ -d /etc/docker ] || { mkdir /etc/docker && made+=(/etc/docker) && rmdir_on_exit /etc/docker; }
  [ -d "$certs" ] || { mkdir "$certs" && made+=("$certs") && rmdir_on_exit "$certs"; }
  mkdir "$dir" || die "cannot create $dir"
  remove_on_exit "$dir"
  local undo="rm -rf '$dir'" m
  for m in "${made[@]}"; do undo="rmdir '$m' 2>/dev/null; $undo"; done
  # shellcheck disable=SC2064  # expand now
  trap "$undo" EXIT
  cp "$AUTH_CA" "$dir/ca.crt" || die "cannot install the CA in $dir"
  if [[ $H == 127.* ]]; then
    note "dockerd treats 127.0.0.0/8 as an insecure registry: it will not verify the certificate (no other address; set AUTH_TLS_IP)"
  fi

  local ref=$H/secure/docker:v1
  printf '%s\n' "$ALICE_PW" | with_creds alice docker_ login "$H" -u alice --password-stdin \
    || die "docker login as alice failed"
  skopeo_ copy "oci:$IMAGES:$NATIVE" "docker-archive:$WORK/img.tar:berth-test/auth-docker:v1" \
    || die "skopeo copy oci -> docker-archive failed"
  docker_ load -i "$WORK/img.tar" || die "docker load failed"
  docker_ tag berth-test/auth-docker:v1 "$ref" || die "docker tag failed"
  with_creds alice docker_ push "$ref" >"$WORK/push.out" 2>&1
  local rc=$?
  cat "$WORK/push.out" >&2
  [ "$rc" -eq 0 ] || die "docker push as alice failed: $(tail -n 2 "$WORK/push.out" | tr '\n' ' ')"
  local pushed
  pushed=$(grep -o 'digest: sha256:[0-9a-f]\{64\}' "$WORK/push.out" | tail -n 1 | cut -d' ' -f2)
  [ -n "$pushed" ] || die "no digest in the docker push output"
  expect_eq "$(auth_digest secure/docker v1)" "$pushed" "registry's digest of the pushed tag"
  docker_ rmi "$ref" berth-test/auth-docker:v1 || die "docker rmi failed"
  if "$DOCKER_CLI" image inspect "$ref" >/dev/null 2>&1; then die "image still present after rmi"; fi
  with_creds alice docker_ pull "$ref" || die "docker pull as alice failed"
  local rd; rd=$("$DOCKER_CLI" image inspect --format '{{json .RepoDigests}}' "$ref") || die "docker image inspect failed"
  jq -e --arg w "$H/secure/docker@$pushed" 'index($w) != null' <<<"$rd" >/dev/null \
    || die "RepoDigests of $ref are $rd, without $H/secure/docker@$pushed"

  # bob (reader) may pull. (His refused push is not tried with docker: dockerd retries an
  # upload refused with a 403 DENIED whose message is the code's standard text five times,
  # 5+10+15+20 s; the other clients cover the refusal.)
  docker_ rmi "$ref" || die "docker rmi failed"
  printf '%s\n' "$BOB_PW" | with_creds bob docker_ login "$H" -u bob --password-stdin \
    || die "docker login as bob failed"
  with_creds bob docker_ pull "$ref" || die "docker pull as bob (reader) failed"
  docker_ rmi "$ref" || die "docker rmi failed"

  # nobody may pull
  rc_of "$WORK/out" "$WORK/err" with_creds nobody docker_ pull "$ref" && die "docker pull without credentials succeeded"
  grep -qiE "$DENIAL_RE" "$WORK/err" || die "docker pull without credentials failed, but not with an authentication error: $(tail -c 300 "$WORK/err")"

  # without the CA in certs.d the same pull fails on the certificate: dockerd did use it
  if [[ $H != 127.* ]]; then
    rm -f "$dir/ca.crt"
    rc_of "$WORK/out" "$WORK/err" with_creds alice docker_ pull "$ref" && die "docker pull succeeded without the CA in $dir"
    grep -qiE "$CERT_RE" "$WORK/err" || die "docker pull without the CA failed, but not on the certificate: $(tail -c 300 "$WORK/err")"
  fi
  with_creds alice docker_ logout "$H" || die "docker logout failed"
}
register auth-tls-docker test_auth_tls_docker

# berth's own client: login, push/pull with --ca-cert (and BERTH_CA_CERT), the refusals.
test_auth_tls_berth() {
  auth_ready
  local H=$AUTH_HOST CA=$AUTH_CA rc
  local d; d=$(layout_digest "$IMAGES" amd64)
  local di; di=$(layout_digest "$IMAGES" multi)

  # a wrong password: refused, nothing stored
  printf '%s\n' "$WRONG_PW" | rc_of "$WORK/out" "$WORK/err" with_creds wrong berth_ login "$H" -u alice --password-stdin --ca-cert "$CA"
  rc=$?
  [ "$rc" -ne 0 ] || die "berth login with a wrong password succeeded"
  grep -qiE "$DENIAL_RE|password|credential" "$WORK/err" || die "berth login with a wrong password: unclear message: $(head -c 300 "$WORK/err")"
  if [ -s "$WORK/creds-wrong/berth-auth.json" ]; then
    jq -e --arg h "$H" '.auths[$h] == null' "$WORK/creds-wrong/berth-auth.json" >/dev/null \
      || die "berth login with a wrong password stored credentials for $H"
  fi

  printf '%s\n' "$ALICE_PW" | with_creds alice berth_ login "$H" -u alice --password-stdin --ca-cert "$CA" \
    || die "berth login as alice failed"
  with_creds alice berth_ push --ca-cert "$CA" "oci:$IMAGES:amd64" "$H/secure/berth:v1" || die "berth push as alice failed"
  expect_eq "$(auth_digest secure/berth v1)" "$d" "registry's digest of secure/berth:v1"
  with_creds alice berth_ pull --ca-cert "$CA" "$H/secure/berth:v1" "oci:$WORK/back:v1" || die "berth pull as alice failed"
  expect_eq "$(layout_digest "$WORK/back" v1)" "$d" "digest of the pulled layout"
  same_tree "$IMAGES" "$WORK/back" "$d"
  with_creds alice berth_ push --all-platforms --ca-cert "$CA" "oci:$IMAGES:multi" "$H/secure/berth/idx:multi" \
    || die "berth push --all-platforms as alice failed"
  with_creds alice berth_ pull --all-platforms --ca-cert "$CA" "$H/secure/berth/idx:multi" "oci:$WORK/idx:multi" \
    || die "berth pull --all-platforms as alice failed"
  same_tree "$IMAGES" "$WORK/idx" "$di"
  # the CA from the environment
  BERTH_CA_CERT=$CA with_creds alice berth_ pull "$H/secure/berth:v1" "oci:$WORK/env:v1" \
    || die "berth pull with BERTH_CA_CERT failed"
  same_tree "$IMAGES" "$WORK/env" "$d"

  # without the CA: a certificate error, nothing written
  rc_of "$WORK/out" "$WORK/err" with_creds alice berth_ pull "$H/secure/berth:v1" "oci:$WORK/noca:v1"
  rc=$?
  [ "$rc" -ne 0 ] || die "berth pull without --ca-cert succeeded"
  expect_eq "$rc" 2 "exit status of berth pull without the CA (runtime error)"
  grep -qiE "$CERT_RE" "$WORK/err" || die "berth pull without --ca-cert failed, but not on the certificate: $(head -c 300 "$WORK/err")"
  [ ! -e "$WORK/noca" ] || die "failed pull left $WORK/noca behind"

  # no credentials: refused
  rc_of "$WORK/out" "$WORK/err" with_creds nobody berth_ pull --ca-cert "$CA" "$H/secure/berth:v1" "oci:$WORK/anon:v1"
  rc=$?
  [ "$rc" -ne 0 ] || die "berth pull without credentials succeeded"
  grep -qiE "$DENIAL_RE" "$WORK/err" || die "berth pull without credentials: message names no 401/403/denied/authentication: $(head -c 300 "$WORK/err")"

  # bob: pull yes, push no (exit 2, a message that says why)
  printf '%s\n' "$BOB_PW" | with_creds bob berth_ login "$H" -u bob --password-stdin --ca-cert "$CA" \
    || die "berth login as bob failed"
  with_creds bob berth_ pull --ca-cert "$CA" "$H/secure/berth:v1" "oci:$WORK/bob:v1" || die "berth pull as bob (reader) failed"
  same_tree "$IMAGES" "$WORK/bob" "$d"
  rc_of "$WORK/out" "$WORK/err" with_creds bob berth_ push --ca-cert "$CA" "oci:$IMAGES:arm64" "$H/secure/berth-bob:v1"
  rc=$?
  expect_eq "$rc" 2 "exit status of berth push as bob (reader)"
  grep -qiE "$DENIAL_RE" "$WORK/err" || die "bob's refused berth push: message names no 401/403/denied/authentication: $(head -c 300 "$WORK/err")"
  expect_eq "$(auth_digest secure/berth-bob v1)" "" "digest of secure/berth-bob:v1 after bob's refused push"
  rc_of "$WORK/out" "$WORK/err" with_creds bob berth_ push --ca-cert "$CA" "oci:$IMAGES:arm64" "$H/secure/berth:v2"
  rc=$?
  expect_eq "$rc" 2 "exit status of berth push as bob into alice's existing repository"
  expect_eq "$(auth_digest secure/berth v2)" "" "digest of secure/berth:v2 after bob's refused push"

  # alice outside secure/**: refused
  rc_of "$WORK/out" "$WORK/err" with_creds alice berth_ push --ca-cert "$CA" "oci:$IMAGES:amd64" "$H/other/berth:v1"
  rc=$?
  expect_eq "$rc" 2 "exit status of berth push as alice outside secure/**"
  grep -qiE "$DENIAL_RE" "$WORK/err" || die "alice's refused push outside secure/**: message names no 401/403/denied/authentication: $(head -c 300 "$WORK/err")"

  # logout: then pulls are anonymous again
  with_creds alice berth_ logout "$H" --ca-cert "$CA" || die "berth logout failed"
  rc_of "$WORK/out" "$WORK/err" with_creds alice berth_ pull --ca-cert "$CA" "$H/secure/berth:v1" "oci:$WORK/after-logout:v1" \
    && die "berth pull after logout succeeded"
  true
}
register auth-tls-berth test_auth_tls_berth

# The audit file has login_failed, push and denied lines; no password or token appears in
# any log: the second berth's stderr (BERTH_LOG=debug) and stdout, its audit file, the
# auth-tls-* tests' logs (every client's output) and dockerd's log. Makes its own events,
# so it also works alone (ONLY=auth-tls-logs).
test_auth_tls_logs() {
  auth_ready
  local H=$AUTH_HOST CA=$AUTH_CA rc
  # htpasswd made by berth passwd: 0600, hashes only
  expect_eq "$(stat -c %a "$AUTH_DIR/htpasswd")" 600 "mode of the htpasswd file berth passwd created"
  expect_eq "$(cut -d: -f1 "$AUTH_DIR/htpasswd" | sort | tr '\n' ' ')" "alice bob " "users in the htpasswd file"
  if grep -qF -e "$ALICE_PW" -e "$BOB_PW" "$AUTH_DIR/htpasswd"; then die "the htpasswd file holds a plain password"; fi

  # events: a failed login, a push, a denied push
  printf '%s\n' "$WRONG_PW" | rc_of "$WORK/out" "$WORK/err" with_creds wrong berth_ login "$H" -u alice --password-stdin --ca-cert "$CA"
  rc=$?
  [ "$rc" -ne 0 ] || die "berth login with a wrong password succeeded"
  printf '%s\n' "$ALICE_PW" | with_creds alice berth_ login "$H" -u alice --password-stdin --ca-cert "$CA" || die "berth login as alice failed"
  with_creds alice berth_ push --ca-cert "$CA" "oci:$IMAGES:amd64" "$H/secure/logs:v1" || die "berth push as alice failed"
  printf '%s\n' "$BOB_PW" | with_creds bob berth_ login "$H" -u bob --password-stdin --ca-cert "$CA" || die "berth login as bob failed"
  rc_of "$WORK/out" "$WORK/err" with_creds bob berth_ push --ca-cert "$CA" "oci:$IMAGES:amd64" "$H/secure/logs-bob:v1" \
    && die "berth push as bob (reader) succeeded"

  # the audit file (JSON lines; written asynchronously, so wait a little)
  local i
  for ((i = 0; i < 50; i++)); do
    grep -q '"login_failed"' "$AUTH_AUDIT" 2>/dev/null && grep -q '"push"' "$AUTH_AUDIT" && grep -q '"denied"' "$AUTH_AUDIT" && break
    sleep 0.1
  done
  [ -s "$AUTH_AUDIT" ] || die "the audit file $AUTH_AUDIT is empty or missing"
  note "audit file: $(wc -l <"$AUTH_AUDIT") lines; events: $(jq -r '.audit' "$AUTH_AUDIT" 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')"
  tail -n 20 "$AUTH_AUDIT" >&2
  local n=0 line
  while IFS= read -r line; do
    n=$((n + 1))
    jq -e 'type == "object" and (.audit | type == "string") and has("ts_ms")' <<<"$line" >/dev/null 2>&1 \
      || die "audit line $n is not a JSON object with audit and ts_ms: $(head -c 200 <<<"$line")"
  done <"$AUTH_AUDIT"
  jq -se 'any(.[]; .audit == "login_failed")' "$AUTH_AUDIT" >/dev/null || die "no login_failed line in the audit file"
  jq -se 'any(.[]; .audit == "push" and .user == "alice" and .repository == "secure/logs")' "$AUTH_AUDIT" >/dev/null \
    || die "no push line (user alice, repository secure/logs) in the audit file"
  jq -se 'any(.[]; .audit == "denied" and .user == "bob")' "$AUTH_AUDIT" >/dev/null \
    || die "no denied line for user bob in the audit file"
  [ -s "$AUTH_LOG" ] || die "the second berth's stderr log is empty (BERTH_LOG=debug)"

  # the leak check: every password, its Basic form, every token seen (ours from /token,
  # any the clients stored), and anything shaped like a JWT
  local pats=$AUTH_SECRETS/patterns
  : >"$pats"
  local u pw
  for u in alice:"$ALICE_PW" bob:"$BOB_PW" alice:"$WRONG_PW"; do
    pw=${u#*:}
    printf '%s\n' "$pw" "$(printf '%s' "$u" | base64 -w0)" >>"$pats"
  done
  grep -v '^$' "$AUTH_SECRETS/tokens" >>"$pats"
  local f
  for f in "$TMP"/work/auth-tls-*/creds-*/berth-auth.json "$TMP"/work/auth-tls-*/creds-*/auth.json \
    "$TMP"/work/auth-tls-*/creds-*/docker/config.json; do
    [ -f "$f" ] && jq -r '.. | objects | (.identitytoken?, .registrytoken?) // empty' "$f" 2>/dev/null >>"$pats"
  done
  sort -u -o "$pats" "$pats"
  sed -i '/^.\{0,7\}$/d' "$pats"   # nothing shorter than 8 characters (no false hits)
  note "leak check: $(wc -l <"$pats") secret strings"
  local logs=("$AUTH_LOG" "$AUTH_STDOUT" "$AUTH_AUDIT" "$LOGS/auth-setup.log")
  for f in "$LOGS"/test-auth-tls-*.log "$LOGS/dockerd.log"; do [ -f "$f" ] && logs+=("$f"); done
  local leaks=() hit
  for f in "${logs[@]}"; do
    [ -f "$f" ] || continue
    if grep -qF -f "$pats" "$f"; then
      # name the line, not the secret (this message goes to a log too)
      hit=$(grep -nF -f "$pats" "$f" | head -n 1 | cut -d: -f1)
      leaks+=("${f#"$TMP"/} line $hit")
    fi
    if grep -qE 'eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}' "$f"; then
      hit=$(grep -nE 'eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}' "$f" | head -n 1 | cut -d: -f1)
      leaks+=("${f#"$TMP"/} line $hit (a JWT)")
    fi
  done
  note "checked: ${logs[*]#"$TMP"/}"
  [ ${#leaks[@]} -eq 0 ] || die "a password or token appears in: ${leaks[*]}"
}
register auth-tls-logs test_auth_tls_logs
