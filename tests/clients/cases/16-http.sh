# shellcheck shell=bash
# Requests the real clients make that are easy to get wrong, replayed with curl so that
# they are tested deterministically (the clients only make them when their caches say so).

# skopeo/podman/docker try a cross-repository mount from their blob-info cache, which may
# name a repository or blob this registry does not have: the answer must be 202 with an
# upload session (Location), never an error, or the push fails.
test_http_impossible_mount() {
  local z=sha256:0000000000000000000000000000000000000000000000000000000000000000
  curl -s -m 20 -o /dev/null -D "$WORK/h" -X POST \
    "http://$REGISTRY/v2/http/mount/blobs/uploads/?mount=$z&from=no/such/repo" || die "curl failed"
  tr -d '\r' <"$WORK/h" >"$WORK/headers"
  cat "$WORK/headers" >&2
  expect_eq "$(awk 'NR==1 {print $2}' "$WORK/headers")" 202 "status of an impossible mount"
  local loc; loc=$(awk 'tolower($1) == "location:" {print $2}' "$WORK/headers")
  [ -n "$loc" ] || die "no Location header on the 202"
  # The session must work: one PATCH with the whole body and no Content-Range, then PUT.
  printf 'berth' >"$WORK/blob"
  local d; d=sha256:$(sha256_of "$WORK/blob")
  case "$loc" in http*) ;; *) loc=http://$REGISTRY$loc ;; esac
  curl -s -m 20 -o /dev/null -D "$WORK/h2" -X PATCH -H 'Content-Type: application/octet-stream' \
    --data-binary @"$WORK/blob" "$loc" || die "PATCH failed"
  expect_eq "$(tr -d '\r' <"$WORK/h2" | awk 'NR==1 {print $2}')" 202 "status of the PATCH"
  loc=$(tr -d '\r' <"$WORK/h2" | awk 'tolower($1) == "location:" {print $2}')
  case "$loc" in http*) ;; *) loc=http://$REGISTRY$loc ;; esac
  local sep='?'; [[ $loc == *\?* ]] && sep='&'
  expect_eq "$(curl -s -m 20 -o /dev/null -w '%{http_code}' -X PUT "$loc${sep}digest=$d")" 201 "status of the closing PUT"
  expect_eq "$(http_status HEAD "/v2/http/mount/blobs/$d" -I)" 200 "HEAD of the uploaded blob"
}
register http-impossible-mount test_http_impossible_mount

# skopeo/podman with --tls-verify=false and dockerd for its insecure registries first try
# TLS on the plain-HTTP port and fall back to HTTP only when that attempt fails. A server
# that answers a ClientHello promptly (Go's net/http sends a 400; closing also works) costs
# nothing; one that waits for more bytes stalls every client command ~10 s (TLS handshake
# timeout). curl -k https:// reproduces the probe: it must fail fast, not time out.
test_http_tls_probe() {
  local t0 rc dt
  t0=$(date +%s%N)
  curl -sk -m 5 -o /dev/null "https://$REGISTRY/v2/" 2>"$WORK/err"
  rc=$?
  dt=$((($(date +%s%N) - t0) / 1000000))
  note "curl exit $rc after ${dt} ms: $(cat "$WORK/err")"
  [ "$rc" -ne 28 ] || die "a TLS ClientHello on the HTTP port got no answer within 5 s (clients stall ~10 s per command)"
  [ "$rc" -ne 0 ] || die "https:// on the plain port succeeded?"
  [ "$dt" -lt 2000 ] || die "a TLS ClientHello took ${dt} ms to be rejected"
}
register http-tls-probe test_http_tls_probe
