# shellcheck shell=bash
# Helpers shared by the real-client tests. Sourced by run.sh; not run on its own.
#
# Conventions inside a test function (which run.sh runs in a subshell, output to the
# test's own log file):
#   die "reason"     record the reason and end the test as failed
#   run CMD...       echo the command, then run it under a timeout (CMD_TIMEOUT seconds)
#   expect_eq A B "what"   die unless A == B
#   skip "reason"    end the test as not applicable ("ok - NAME # skip reason")

CMD_TIMEOUT=${CMD_TIMEOUT:-180}

# Media types
MT_OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_OCI_INDEX=application/vnd.oci.image.index.v1+json
MT_DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
MT_DOCKER_LIST=application/vnd.docker.distribution.manifest.list.v2+json
ACCEPT_ALL="$MT_OCI_MANIFEST, $MT_OCI_INDEX, $MT_DOCKER_MANIFEST, $MT_DOCKER_LIST"

die() {
  printf '%s\n' "$*" >"$REASON_FILE"
  echo "FAIL: $*" >&2
  exit 1
}

note() { echo "# $*" >&2; }

skip() {
  printf '%s\n' "$*" >"$SKIP_FILE"
  echo "SKIP: $*" >&2
  exit 0
}

# remove_on_exit PATH: run.sh's cleanup removes PATH (recursively) when the run ends, even
# if the test that made it is interrupted -- for paths outside the temp dir such as
# /etc/docker/certs.d/HOST:PORT. rmdir_on_exit PATH: removes PATH only if it is empty then
# (a parent directory the test had to create). Works from a test's subshell.
remove_on_exit() { echo "rm $1" >>"$REMOVE_ON_EXIT"; }
rmdir_on_exit() { echo "rmdir $1" >>"$REMOVE_ON_EXIT"; }

run() {
  echo "+ $*" >&2
  timeout --kill-after=10 "$CMD_TIMEOUT" "$@"
  local rc=$?
  [ "$rc" -eq 124 ] && echo "!! timed out after ${CMD_TIMEOUT}s: $*" >&2
  return "$rc"
}

expect_eq() {
  [ "$1" == "$2" ] || die "$3: expected '$2', got '$1'"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# grep_all [FLAGS] PATTERN: like `grep -q`, but reads all of its input. At the end of a
# pipeline under `set -o pipefail`, `grep -q` exits at the first match and the writer
# before it may die of SIGPIPE, failing the pipeline although the line was there.
grep_all() { grep "$@" >/dev/null; }

# The registry under test, as "host:port".
reg() { echo "$REGISTRY"; }

# ---- OCI image layouts -------------------------------------------------------------

# layout_digest LAYOUT REF -> digest of the top-level descriptor tagged REF in index.json
layout_digest() {
  jq -r --arg r "$2" \
    '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest][0] // empty' \
    "$1/index.json"
}

# blob_path LAYOUT DIGEST -> path of the blob file
blob_path() { echo "$1/blobs/${2%%:*}/${2#*:}"; }

# verify_blob LAYOUT DIGEST -> succeeds if the blob exists and its content hashes to DIGEST
verify_blob() {
  local p
  p=$(blob_path "$1" "$2")
  [ -f "$p" ] && [ "sha256:$(sha256_of "$p")" == "$2" ]
}

# same_tree SRC DST DIGEST: the manifest or index DIGEST, and everything it references
# (children, configs, layers), is in layout DST, intact and byte-identical to SRC's copy.
same_tree() {
  local src=$1 dst=$2 d=$3 m c
  verify_blob "$dst" "$d" || die "$d missing or corrupt in $dst"
  cmp "$(blob_path "$src" "$d")" "$(blob_path "$dst" "$d")" || die "$d differs between $src and $dst"
  m=$(blob_path "$dst" "$d")
  if jq -e '.manifests' "$m" >/dev/null 2>&1; then
    for c in $(jq -r '.manifests[].digest' "$m"); do same_tree "$src" "$dst" "$c"; done
  else
    for c in $(jq -r '.config.digest, .layers[].digest' "$m"); do
      verify_blob "$dst" "$c" || die "blob $c (of $d) missing or corrupt in $dst"
      cmp "$(blob_path "$src" "$c")" "$(blob_path "$dst" "$c")" || die "blob $c differs between $src and $dst"
    done
  fi
}

# ---- registry HTTP helpers ---------------------------------------------------------

# registry_digest REPO REF -> Docker-Content-Digest of HEAD /v2/REPO/manifests/REF
registry_digest() { registry_digest_at "$REGISTRY" "$@"; }

# registry_digest_at HOST:PORT REPO REF -> the same, from another registry (e.g. $DIST2)
registry_digest_at() {
  curl -s -m 20 -o /dev/null -D - -I -H "Accept: $ACCEPT_ALL" \
    "http://$1/v2/$2/manifests/$3" \
    | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}'
}

# http_status METHOD PATH [curl args...] -> HTTP status code
http_status() {
  local m=$1 p=$2
  shift 2
  curl -s -m 20 -o /dev/null -w '%{http_code}' -X "$m" "$@" "http://$REGISTRY$p"
}

# ---- client wrappers ---------------------------------------------------------------

skopeo_() { run skopeo --policy "$TMP/conf/policy.json" "$@"; }

podman_() { run podman "$@"; }

# berth's client commands (the binary run.sh resolved; BERTH_AUTH_FILE, DOCKER_CONFIG and
# REGISTRY_AUTH_FILE point into the temp dir).
berth_() { run "$BERTH" "$@"; }

# need_dist2: die unless the second registry (Distribution, run.sh starts it before the
# first berth-dist-* test) is up; its address is $DIST2.
need_dist2() {
  if [ -z "${DIST2_PID:-}" ] || [ -z "${DIST2:-}" ]; then
    die "second registry unavailable: ${DIST2_ERR:-not started}"
  fi
}

docker_() { run "$DOCKER_CLI" "$@"; }

# docker_ready: die unless the dockerd run.sh started (before the first test that
# needs_dockerd) answers.
docker_ready() {
  [ -z "${DOCKERD_ERR:-}" ] || die "$DOCKERD_ERR"
  [ -n "${DOCKER_HOST:-}" ] || die "dockerd was not started"
  timeout 10 "$DOCKER_CLI" info >/dev/null 2>&1 || die "dockerd does not answer 'docker info'"
}

# ---- test images -------------------------------------------------------------------

# build_image LAYOUT TAG ARCH WORKDIR [extra umoci config args...]
# Makes a one-layer image from busybox-static: /bin/busybox plus a few symlinks.
build_image() {
  local layout=$1 tag=$2 arch=$3 work=$4
  shift 4
  local bundle="$work/bundle-$tag"
  run umoci new --image "$layout:$tag" || return 1
  run umoci unpack --image "$layout:$tag" "$bundle" || return 1
  mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/etc" "$bundle/rootfs/tmp" || return 1
  cp /bin/busybox "$bundle/rootfs/bin/busybox" || return 1
  local s
  for s in sh ls cat echo true false uname env id; do
    ln -sf busybox "$bundle/rootfs/bin/$s" || return 1
  done
  echo "berth-client-test $tag" >"$bundle/rootfs/etc/berth-test" || return 1
  run umoci repack --image "$layout:$tag" "$bundle" || return 1
  run umoci config --image "$layout:$tag" --os linux --architecture "$arch" \
    --config.cmd /bin/sh --config.cmd -c --config.cmd "echo hello from $tag" \
    --config.label "org.example.berth.test=$tag" "$@" || return 1
  rm -rf "$bundle"
}

# add_index LAYOUT NAME (DIGEST ARCH)... : write an OCI image index over existing manifests
# of LAYOUT and tag it NAME in index.json.
add_index() {
  local layout=$1 name=$2
  shift 2
  local descs="[]" d a p size
  while [ $# -ge 2 ]; do
    d=$1 a=$2
    shift 2
    p=$(blob_path "$layout" "$d")
    size=$(stat -c %s "$p") || return 1
    descs=$(jq -c --arg d "$d" --argjson s "$size" --arg a "$a" --arg mt "$MT_OCI_MANIFEST" \
      '. + [{mediaType: $mt, digest: $d, size: $s, platform: {architecture: $a, os: "linux"}}]' \
      <<<"$descs") || return 1
  done
  local tmpf="$layout/index.tmp"
  jq -cj --argjson m "$descs" --arg mt "$MT_OCI_INDEX" \
    '{schemaVersion: 2, mediaType: $mt, manifests: $m, annotations: {"org.example.berth.test": "index"}}' \
    -n >"$tmpf" || return 1
  local hex isize
  hex=$(sha256_of "$tmpf")
  isize=$(stat -c %s "$tmpf")
  mv "$tmpf" "$layout/blobs/sha256/$hex" || return 1
  jq --arg d "sha256:$hex" --argjson s "$isize" --arg n "$name" --arg mt "$MT_OCI_INDEX" \
    '.manifests += [{mediaType: $mt, digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": $n}}]' \
    "$layout/index.json" >"$layout/index.json.new" || return 1
  mv "$layout/index.json.new" "$layout/index.json"
}

# The host's architecture in OCI terms; the test image of that architecture is the one
# the tests run (both contain the host's /bin/busybox).
# shellcheck disable=SC2034  # used by the cases
case "$(uname -m)" in
  aarch64 | arm64) NATIVE=arm64 ;;
  *) NATIVE=amd64 ;;
esac

# build_test_images: the shared OCI layout $IMAGES with tags
#   amd64, arm64  single-platform images (configs differ: architecture, env, label)
#   multi         an OCI image index over both
build_test_images() {
  local w=$TMP/images/work
  mkdir -p "$w"
  run umoci init --layout "$IMAGES" || return 1
  build_image "$IMAGES" amd64 amd64 "$w" --config.env ARCH=amd64 || return 1
  build_image "$IMAGES" arm64 arm64 "$w" --config.env ARCH=arm64 || return 1
  run umoci gc --layout "$IMAGES" || return 1
  local da db
  da=$(layout_digest "$IMAGES" amd64)
  db=$(layout_digest "$IMAGES" arm64)
  if [ -z "$da" ] || [ -z "$db" ]; then echo "image digests missing" >&2; return 1; fi
  add_index "$IMAGES" multi "$da" amd64 "$db" arm64 || return 1
  rm -rf "$w"
  jq . "$IMAGES/index.json" >&2
}
