# shellcheck shell=bash
# Storage lifecycle (issue 6) with real clients: a THIRD berth serve, started here for
# the lifecycle-* tests on its own loopback port with [gc] grace = 1 s, an immutable-tag
# rule on prod/** (except latest) and a 4 MiB quota on small/**. skopeo pushes and pulls;
# `berth gc` reaches the running server through <data_dir>/admin.sock.
#
# berth-specific: with REGISTRY_UNDER_TEST=distribution every test here is skipped.

LIFE_SKIP=""
LIFE_ERR=""
LIFE_PID=""
LIFE_HOST=""
LIFE_DIR=""
LIFE_LOG=""

lifecycle_setup() {
  if [ "$REGISTRY_UNDER_TEST" != berth ]; then
    LIFE_SKIP="berth-specific (berth gc, immutable tags, quotas); REGISTRY_UNDER_TEST=$REGISTRY_UNDER_TEST"
    return 0
  fi
  LIFE_DIR=$TMP/life
  mkdir -p "$LIFE_DIR"
  if ! lifecycle_start >"$LOGS/lifecycle-setup.log" 2>&1; then
    LIFE_ERR="starting the lifecycle berth failed: $(tail -n 4 "$LOGS/lifecycle-setup.log" | cut -c 1-300 | tr '\n' ' ')"
    echo "# $LIFE_ERR"
    return 1
  fi
  echo "# third berth (lifecycle rules) at http://$LIFE_HOST (pid $LIFE_PID)"
}

lifecycle_start() {
  local D=$LIFE_DIR
  LIFE_LOG=$D/berth.log
  cat >"$D/berth.toml" <<EOF
[server]
listen = "127.0.0.1:0"

[storage]
data_dir = "$D/data"

[gc]
interval = "off"
grace = 1

[scrub]
interval = "off"

[immutable_tags]
rules = [ { repositories = ["prod/**"], except = ["latest"] } ]

[quotas]
rules = [ { repositories = ["small/**"], limit = "4MiB" } ]
EOF
  local unset_args=() v
  for v in $(env | awk -F= '/^BERTH_/ && $1 != "BERTH_LOG" {print $1}'); do unset_args+=(-u "$v"); done
  env "${unset_args[@]}" "$BERTH" check-config "$D/berth.toml" || return 1
  env "${unset_args[@]}" BERTH_LOG=info "$BERTH" serve --config "$D/berth.toml" \
    >"$D/berth.stdout" 2>"$LIFE_LOG" </dev/null &
  LIFE_PID=$!
  EXTRA_PIDS+=("$LIFE_PID")
  EXTRA_LOGS+=("$LIFE_LOG")
  local i url=""
  for ((i = 0; i < 300; i++)); do
    kill -0 "$LIFE_PID" 2>/dev/null || { echo "berth serve exited"; tail -n 20 "$LIFE_LOG"; LIFE_PID=""; return 1; }
    url=$(grep -o 'listening on http://[^ ]*' "$D/berth.stdout" | head -n 1 | awk '{print $3}')
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "no ready line within 30 s"; return 1; }
  LIFE_HOST=${url#http://}
}

before_tests lifecycle- lifecycle_setup

life_ready() {
  [ -z "$LIFE_SKIP" ] || skip "$LIFE_SKIP"
  [ -z "$LIFE_ERR" ] || die "$LIFE_ERR"
  [ -n "$LIFE_PID" ] && kill -0 "$LIFE_PID" 2>/dev/null || die "the lifecycle berth is not running"
}


# The number of blob files in the lifecycle berth's store.
life_blob_count() { find "$LIFE_DIR/data/blobs" -type f | wc -l; }

# skopeo pushes two images sharing nothing but their base; one is deleted; berth gc
# (online, through the admin socket) frees exactly its own blobs; the other still pulls
# byte for byte.
test_lifecycle_gc_skopeo() {
  life_ready
  local H=$LIFE_HOST
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$H/app:keep" || die "push keep"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:arm64" "docker://$H/app:drop" || die "push drop"
  local before; before=$(life_blob_count)
  local dd; dd=$(layout_digest "$IMAGES" arm64)
  skopeo_ delete --tls-verify=false "docker://$H/app:drop" || die "skopeo delete"
  sleep 2
  run "$BERTH" gc --config "$LIFE_DIR/berth.toml" --dry-run -o json >"$WORK/dry.json" || die "berth gc --dry-run failed"
  expect_eq "$(jq -r '.manifests[]' "$WORK/dry.json")" "" "manifests left to collect after skopeo deleted the manifest itself"
  local would; would=$(jq '.blobs | length' "$WORK/dry.json")
  [ "$would" -ge 1 ] || die "gc --dry-run would free no blob of the deleted image"
  expect_eq "$(life_blob_count)" "$before" "blob files after a dry run"
  run "$BERTH" gc --config "$LIFE_DIR/berth.toml" -o json >"$WORK/gc.json" || die "berth gc failed"
  expect_eq "$(jq '.blobs | length' "$WORK/gc.json")" "$would" "blobs deleted vs the dry run"
  expect_eq "$(life_blob_count)" "$((before - would))" "blob files after gc"
  skopeo_ copy --src-tls-verify=false "docker://$H/app:keep" "oci:$WORK/back:v1" || die "pull keep after gc"
  same_tree "$IMAGES" "$WORK/back" "$(layout_digest "$IMAGES" amd64)"
  expect_eq "$(curl -s -m 20 -o /dev/null -w '%{http_code}' "http://$H/v2/app/manifests/$dd")" 404 "GET of the deleted manifest"
}
register lifecycle-gc-skopeo test_lifecycle_gc_skopeo

# A multi-arch index pushed with skopeo --all survives gc while tagged.
test_lifecycle_gc_keeps_index() {
  life_ready
  local H=$LIFE_HOST
  skopeo_ copy --all --dest-tls-verify=false "oci:$IMAGES:multi" "docker://$H/idx:multi" || die "push index"
  sleep 2
  run "$BERTH" gc --config "$LIFE_DIR/berth.toml" -o json >"$WORK/gc.json" || die "berth gc failed"
  grep -q '"idx@' "$WORK/gc.json" && die "gc deleted a manifest of the tagged index: $(cat "$WORK/gc.json")"
  skopeo_ copy --all --src-tls-verify=false "docker://$H/idx:multi" "oci:$WORK/idx:v1" || die "pull index after gc"
  same_tree "$IMAGES" "$WORK/idx" "$(layout_digest "$IMAGES" multi)"
}
register lifecycle-gc-keeps-index test_lifecycle_gc_keeps_index

# skopeo cannot move an immutable tag: 403 DENIED; the tag still names the first image.
test_lifecycle_immutable_skopeo() {
  life_ready
  local H=$LIFE_HOST
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$H/prod/app:v1" || die "first push"
  if skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:arm64" "docker://$H/prod/app:v1" 2>"$WORK/err"; then
    die "skopeo moved an immutable tag"
  fi
  grep -qi 'denied' "$WORK/err" || die "the refusal is not DENIED: $(head -c 300 "$WORK/err")"
  expect_eq "$(registry_digest_at "$H" prod/app v1)" "$(layout_digest "$IMAGES" amd64)" "prod/app:v1 after the refused push"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:arm64" "docker://$H/prod/app:latest" || die "latest is excepted"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$H/prod/app:latest" || die "latest moves"
}
register lifecycle-immutable-skopeo test_lifecycle_immutable_skopeo

# A push over the quota is refused by name; usage counts what is stored.
test_lifecycle_quota_skopeo() {
  life_ready
  local H=$LIFE_HOST
  # A layout with one 6 MiB random (incompressible) layer.
  run umoci init --layout "$WORK/big" || die "umoci init"
  run umoci new --image "$WORK/big:v1" || die "umoci new"
  run umoci unpack --image "$WORK/big:v1" "$WORK/bundle" || die "umoci unpack"
  head -c $((6 * 1024 * 1024)) /dev/urandom >"$WORK/bundle/rootfs/blob" || die "random file"
  run umoci repack --image "$WORK/big:v1" "$WORK/bundle" || die "umoci repack"
  if skopeo_ copy --dest-tls-verify=false "oci:$WORK/big:v1" "docker://$H/small/x:v1" 2>"$WORK/err"; then
    die "a 6 MiB push into a 4 MiB quota succeeded"
  fi
  grep -qi 'quota' "$WORK/err" || die "the refusal does not mention the quota: $(head -c 300 "$WORK/err")"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$H/small/y:v1" || die "a small image fits"
  run "$BERTH" usage --config "$LIFE_DIR/berth.toml" -o json >"$WORK/usage.json" || die "berth usage"
  local used; used=$(jq '[.repositories[] | select(.repository == "small/x") | .bytes] | add // 0' "$WORK/usage.json")
  [ "$used" -le $((4 * 1024 * 1024)) ] || die "small/x holds $used bytes, over its quota"
  expect_eq "$(jq '[.repositories[] | select(.repository == "small/y") | .quota] | add' "$WORK/usage.json")" 4194304 "quota reported for small/y"
}
register lifecycle-quota-skopeo test_lifecycle_quota_skopeo
