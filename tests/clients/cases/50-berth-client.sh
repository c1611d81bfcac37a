# shellcheck shell=bash
# berth's registry client (push, pull, copy, inspect, tags, tag, resolve, catalog, rm,
# index create, completions) against the registry under test, against a second registry
# (CNCF Distribution, which run.sh starts for the berth-dist-* tests whatever
# REGISTRY_UNDER_TEST is), and interoperating with skopeo and umoci through OCI layouts.
# Contract: the berth client CLI spec (references docker-style, layouts as oci:DIR[:TAG],
# exit 0 ok / 1 not found or verification failed / 2 usage or runtime error).

# (same_tree is in lib.sh.)

# berth_rc OUT ERR CMD...: run berth with stdout/stderr into files, both copied to the log;
# prints nothing, returns berth's exit status.
berth_rc() {
  local out=$1 err=$2 rc
  shift 2
  echo "+ $BERTH $*" >&2
  timeout --kill-after=10 "$CMD_TIMEOUT" "$BERTH" "$@" >"$out" 2>"$err"
  rc=$?
  sed 's/^/  stdout: /' "$out" >&2
  sed 's/^/  stderr: /' "$err" >&2
  echo "  exit status $rc" >&2
  return "$rc"
}

# roundtrip_via HOST REPO SRCTAG [transfer flags...]: berth push oci:$IMAGES:SRCTAG to
# HOST/REPO:SRCTAG, berth pull it back into a new layout, then compare every byte.
roundtrip_via() {
  local host=$1 repo=$2 tag=$3
  shift 3
  local d; d=$(layout_digest "$IMAGES" "$tag")
  [ -n "$d" ] || die "no tag $tag in $IMAGES"
  local out=$WORK/pulled-$tag
  berth_ push "$@" "oci:$IMAGES:$tag" "$host/$repo:$tag" || die "berth push oci:\$IMAGES:$tag $host/$repo:$tag failed"
  expect_eq "$(registry_digest_at "$host" "$repo" "$tag")" "$d" "registry's Docker-Content-Digest of $host/$repo:$tag after berth push"
  berth_ pull "$@" "$host/$repo:$tag" "oci:$out:v1" || die "berth pull $host/$repo:$tag failed"
  expect_eq "$(layout_digest "$out" v1)" "$d" "digest tagged v1 in the layout berth pulled"
  same_tree "$IMAGES" "$out" "$d"
  berth_ layout verify "$out" || die "berth layout verify rejects the layout berth pulled from $host"
  # by digest as well, into a second layout
  berth_ pull "$@" "$host/$repo@$d" "oci:$out-bydigest:v1" || die "berth pull $host/$repo@$d failed"
  expect_eq "$(layout_digest "$out-bydigest" v1)" "$d" "digest of the layout pulled by digest"
  same_tree "$IMAGES" "$out-bydigest" "$d"
}

# ---- round trips ------------------------------------------------------------------------

test_berth_roundtrip() {
  roundtrip_via "$(reg)" berth/rt/img amd64
}
register berth-roundtrip test_berth_roundtrip

test_berth_roundtrip_index() {
  roundtrip_via "$(reg)" berth/rt/idx multi --all-platforms
  local di; di=$(layout_digest "$IMAGES" multi)
  expect_eq "$(jq '.manifests | length' "$(blob_path "$WORK/pulled-multi" "$di")")" 2 "children of the pulled index"
  local c
  for c in $(jq -r '.manifests[].digest' "$(blob_path "$IMAGES" "$di")"); do
    expect_eq "$(registry_digest berth/rt/idx "$c")" "$c" "child $c addressable by digest in the registry"
  done
}
register berth-roundtrip-index test_berth_roundtrip_index

# The same against CNCF Distribution (the reference implementation).
test_berth_dist_roundtrip() {
  need_dist2
  roundtrip_via "$DIST2" berth/rt/img amd64
  roundtrip_via "$DIST2" berth/rt/idx multi --all-platforms
  local di; di=$(layout_digest "$IMAGES" multi)
  expect_eq "$(jq '.manifests | length' "$(blob_path "$WORK/pulled-multi" "$di")")" 2 "children of the index pulled from Distribution"
}
register berth-dist-roundtrip test_berth_dist_roundtrip

# berth copy registry -> registry: the registry under test -> Distribution -> back.
test_berth_dist_copy() {
  need_dist2
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  local di; di=$(layout_digest "$IMAGES" multi)
  berth_ push "oci:$IMAGES:amd64" "$R/berth/copy/img:v1" || die "berth push failed"
  berth_ copy "$R/berth/copy/img:v1" "$DIST2/berth/copy/img:v1" || die "berth copy $R -> $DIST2 failed"
  expect_eq "$(registry_digest_at "$DIST2" berth/copy/img v1)" "$d" "Distribution's digest after berth copy"
  berth_ copy "$DIST2/berth/copy/img:v1" "$R/berth/copy/back:v1" || die "berth copy $DIST2 -> $R failed"
  expect_eq "$(registry_digest berth/copy/back v1)" "$d" "digest after copying back"
  # an independent client reads the copy back: every byte as umoci wrote it
  skopeo_ copy --src-tls-verify=false "docker://$R/berth/copy/back:v1" "oci:$WORK/check:v1" \
    || die "skopeo copy of the copied-back image failed"
  expect_eq "$(layout_digest "$WORK/check" v1)" "$d" "digest of skopeo's copy"
  same_tree "$IMAGES" "$WORK/check" "$d"

  # the whole index
  berth_ push --all-platforms "oci:$IMAGES:multi" "$R/berth/copy/idx:multi" || die "berth push --all-platforms failed"
  berth_ copy --all-platforms "$R/berth/copy/idx:multi" "$DIST2/berth/copy/idx:multi" \
    || die "berth copy --all-platforms $R -> $DIST2 failed"
  expect_eq "$(registry_digest_at "$DIST2" berth/copy/idx multi)" "$di" "Distribution's index digest after berth copy"
  local c
  for c in $(jq -r '.manifests[].digest' "$(blob_path "$IMAGES" "$di")"); do
    expect_eq "$(registry_digest_at "$DIST2" berth/copy/idx "$c")" "$c" "child $c in Distribution"
  done
  berth_ copy --all-platforms "$DIST2/berth/copy/idx:multi" "$R/berth/copy/idxback:multi" \
    || die "berth copy --all-platforms $DIST2 -> $R failed"
  expect_eq "$(registry_digest berth/copy/idxback multi)" "$di" "index digest after copying back"
  skopeo_ copy --all --src-tls-verify=false "docker://$R/berth/copy/idxback:multi" "oci:$WORK/checkidx:multi" \
    || die "skopeo copy --all of the copied-back index failed"
  same_tree "$IMAGES" "$WORK/checkidx" "$di"
}
register berth-dist-copy test_berth_dist_copy

# ---- interoperability -------------------------------------------------------------------

test_berth_skopeo_interop() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  local di; di=$(layout_digest "$IMAGES" multi)
  # skopeo pushes, berth pulls
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$R/berth/sk2b/img:v1" || die "skopeo push failed"
  berth_ pull "$R/berth/sk2b/img:v1" "oci:$WORK/sk2b:v1" || die "berth pull of skopeo's push failed"
  expect_eq "$(layout_digest "$WORK/sk2b" v1)" "$d" "digest berth pulled (skopeo pushed)"
  same_tree "$IMAGES" "$WORK/sk2b" "$d"
  berth_ layout verify "$WORK/sk2b" || die "berth layout verify failed"
  # berth pushes, skopeo pulls
  berth_ push "oci:$IMAGES:amd64" "$R/berth/b2sk/img:v1" || die "berth push failed"
  skopeo_ copy --src-tls-verify=false "docker://$R/berth/b2sk/img:v1" "oci:$WORK/b2sk:v1" || die "skopeo pull of berth's push failed"
  expect_eq "$(layout_digest "$WORK/b2sk" v1)" "$d" "digest skopeo pulled (berth pushed)"
  same_tree "$IMAGES" "$WORK/b2sk" "$d"
  # the same with the index
  skopeo_ copy --all --dest-tls-verify=false "oci:$IMAGES:multi" "docker://$R/berth/sk2b/idx:multi" || die "skopeo push --all failed"
  berth_ pull --all-platforms "$R/berth/sk2b/idx:multi" "oci:$WORK/sk2bidx:multi" || die "berth pull --all-platforms failed"
  expect_eq "$(layout_digest "$WORK/sk2bidx" multi)" "$di" "index digest berth pulled (skopeo pushed)"
  same_tree "$IMAGES" "$WORK/sk2bidx" "$di"
  berth_ push --all-platforms "oci:$IMAGES:multi" "$R/berth/b2sk/idx:multi" || die "berth push --all-platforms failed"
  skopeo_ copy --all --src-tls-verify=false "docker://$R/berth/b2sk/idx:multi" "oci:$WORK/b2skidx:multi" \
    || die "skopeo copy --all of berth's index failed"
  expect_eq "$(layout_digest "$WORK/b2skidx" multi)" "$di" "index digest skopeo pulled (berth pushed)"
  same_tree "$IMAGES" "$WORK/b2skidx" "$di"
}
register berth-skopeo-interop test_berth_skopeo_interop

test_berth_umoci_interop() {
  local R; R=$(reg)
  local dn; dn=$(layout_digest "$IMAGES" "$NATIVE")
  # umoci reads a layout berth pulled
  berth_ push "oci:$IMAGES:$NATIVE" "$R/berth/umoci/img:v1" || die "berth push failed"
  berth_ pull "$R/berth/umoci/img:v1" "oci:$WORK/pulled:v1" || die "berth pull failed"
  expect_eq "$(layout_digest "$WORK/pulled" v1)" "$dn" "digest berth pulled"
  run umoci ls --layout "$WORK/pulled" >"$WORK/ls" || die "umoci ls failed on berth's layout"
  cat "$WORK/ls" >&2
  grep -qx v1 "$WORK/ls" || die "umoci ls does not list v1: $(tr '\n' ' ' <"$WORK/ls")"
  run umoci unpack --image "$WORK/pulled:v1" "$WORK/bundle" || die "umoci unpack failed on berth's layout"
  cmp /bin/busybox "$WORK/bundle/rootfs/bin/busybox" || die "unpacked busybox differs from /bin/busybox"
  expect_eq "$(readlink "$WORK/bundle/rootfs/bin/sh")" busybox "symlink bin/sh"
  expect_eq "$(cat "$WORK/bundle/rootfs/etc/berth-test")" "berth-client-test $NATIVE" "etc/berth-test"

  # berth pushes a layout umoci just wrote
  run umoci init --layout "$WORK/fresh" || die "umoci init failed"
  build_image "$WORK/fresh" v1 "$NATIVE" "$WORK" --config.env FRESH=1 || die "umoci image build failed"
  run umoci gc --layout "$WORK/fresh" || die "umoci gc failed"
  local df; df=$(layout_digest "$WORK/fresh" v1)
  [ -n "$df" ] || die "umoci wrote no tag v1"
  berth_ push "oci:$WORK/fresh:v1" "$R/berth/umoci/fresh:v1" || die "berth push of umoci's layout failed"
  expect_eq "$(registry_digest berth/umoci/fresh v1)" "$df" "registry's digest of umoci's image pushed by berth"
  skopeo_ copy --src-tls-verify=false "docker://$R/berth/umoci/fresh:v1" "oci:$WORK/fresh-back:v1" || die "skopeo pull failed"
  same_tree "$WORK/fresh" "$WORK/fresh-back" "$df"

  # berth pulls into umoci's existing layout under another tag; umoci still reads it
  berth_ pull "$R/berth/umoci/img:v1" "oci:$WORK/fresh:v2" || die "berth pull into umoci's layout failed"
  expect_eq "$(layout_digest "$WORK/fresh" v1)" "$df" "umoci's tag v1 after berth added v2"
  expect_eq "$(layout_digest "$WORK/fresh" v2)" "$dn" "berth's tag v2 in umoci's layout"
  run umoci ls --layout "$WORK/fresh" >"$WORK/ls2" || die "umoci ls failed after berth pulled into its layout"
  expect_eq "$(sort "$WORK/ls2" | tr '\n' ' ')" "v1 v2 " "umoci ls of the shared layout"
  run umoci unpack --image "$WORK/fresh:v2" "$WORK/bundle2" || die "umoci unpack of berth's tag failed"
  cmp /bin/busybox "$WORK/bundle2/rootfs/bin/busybox" || die "unpacked busybox (v2) differs"
  berth_ layout verify "$WORK/fresh" || die "berth layout verify failed on the shared layout"
}
register berth-umoci-interop test_berth_umoci_interop

# ---- platforms --------------------------------------------------------------------------

test_berth_platform() {
  local R; R=$(reg)
  local di; di=$(layout_digest "$IMAGES" multi)
  local da; da=$(layout_digest "$IMAGES" amd64)
  local db; db=$(layout_digest "$IMAGES" arm64)
  local dn; dn=$(layout_digest "$IMAGES" "$NATIVE")
  berth_ push --all-platforms "oci:$IMAGES:multi" "$R/berth/plat/img:multi" || die "berth push --all-platforms failed"
  expect_eq "$(registry_digest berth/plat/img multi)" "$di" "index digest in the registry"

  berth_ pull --platform linux/arm64 "$R/berth/plat/img:multi" "oci:$WORK/arm:v1" || die "berth pull --platform linux/arm64 failed"
  expect_eq "$(layout_digest "$WORK/arm" v1)" "$db" "manifest pulled for linux/arm64"
  same_tree "$IMAGES" "$WORK/arm" "$db"
  berth_ pull --platform linux/amd64 "$R/berth/plat/img:multi" "oci:$WORK/amd:v1" || die "berth pull --platform linux/amd64 failed"
  expect_eq "$(layout_digest "$WORK/amd" v1)" "$da" "manifest pulled for linux/amd64"

  local rc
  berth_rc "$WORK/out" "$WORK/err" pull --platform linux/s390x "$R/berth/plat/img:multi" "oci:$WORK/s390x:v1"
  rc=$?
  expect_eq "$rc" 1 "exit status of pull --platform linux/s390x"
  local p
  for p in linux/amd64 linux/arm64; do
    grep -qF "$p" "$WORK/err" || die "stderr does not list the available platform $p: $(cat "$WORK/err")"
  done
  grep -q '^berth pull: ' "$WORK/err" || die "error not prefixed 'berth pull: ': $(cat "$WORK/err")"
  [ ! -e "$WORK/s390x" ] || die "failed pull left $WORK/s390x behind"

  berth_ pull "$R/berth/plat/img:multi" "oci:$WORK/default:v1" || die "berth pull (default platform) failed"
  expect_eq "$(layout_digest "$WORK/default" v1)" "$dn" "manifest pulled by default (host is linux/$NATIVE)"

  # push selects a platform of a layout's index the same way
  berth_ push "oci:$IMAGES:multi" "$R/berth/plat/native:v1" || die "berth push (default platform) failed"
  expect_eq "$(registry_digest berth/plat/native v1)" "$dn" "manifest pushed by default"
  berth_ push --platform linux/arm64 "oci:$IMAGES:multi" "$R/berth/plat/arm:v1" || die "berth push --platform linux/arm64 failed"
  expect_eq "$(registry_digest berth/plat/arm v1)" "$db" "manifest pushed for linux/arm64"
}
register berth-platform test_berth_platform

# ---- read commands ----------------------------------------------------------------------

test_berth_inspect() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  local di; di=$(layout_digest "$IMAGES" multi)
  local db; db=$(layout_digest "$IMAGES" arm64)
  local m; m=$(blob_path "$IMAGES" "$d")
  berth_ push "oci:$IMAGES:amd64" "$R/berth/inspect/img:v1" || die "berth push failed"
  berth_ push --all-platforms "oci:$IMAGES:multi" "$R/berth/inspect/img:multi" || die "berth push --all-platforms failed"

  berth_ inspect "$R/berth/inspect/img:v1" >"$WORK/text" || die "berth inspect (text) failed"
  cat "$WORK/text" >&2
  [ -s "$WORK/text" ] || die "berth inspect printed nothing"
  grep -qF "$d" "$WORK/text" || die "berth inspect (text) does not show the digest $d"

  berth_ inspect -o json "$R/berth/inspect/img:v1" >"$WORK/m.json" || die "berth inspect -o json failed"
  cat "$WORK/m.json" >&2
  jq -e . "$WORK/m.json" >/dev/null || die "berth inspect -o json is not JSON"
  expect_eq "$(jq -r .digest "$WORK/m.json")" "$d" "inspect .digest"
  expect_eq "$(jq -r .mediaType "$WORK/m.json")" "$MT_OCI_MANIFEST" "inspect .mediaType"
  expect_eq "$(jq -r .size "$WORK/m.json")" "$(stat -c %s "$m")" "inspect .size"
  expect_eq "$(jq -r '.layers | length' "$WORK/m.json")" "$(jq -r '.layers | length' "$m")" "inspect .layers count"
  expect_eq "$(jq -r '[.layers[].digest] | join(" ")' "$WORK/m.json")" "$(jq -r '[.layers[].digest] | join(" ")' "$m")" "inspect .layers digests"
  expect_eq "$(jq -r .config.digest "$WORK/m.json")" "$(jq -r .config.digest "$m")" "inspect .config.digest"
  expect_eq "$(jq -r '.config.os + "/" + .config.architecture' "$WORK/m.json")" linux/amd64 "inspect .config os/architecture"

  berth_ inspect -o json "$R/berth/inspect/img:multi" >"$WORK/i.json" || die "berth inspect -o json of the index failed"
  cat "$WORK/i.json" >&2
  expect_eq "$(jq -r .digest "$WORK/i.json")" "$di" "index .digest"
  expect_eq "$(jq -r .mediaType "$WORK/i.json")" "$MT_OCI_INDEX" "index .mediaType"
  expect_eq "$(jq -r '[.manifests[].platform | .os + "/" + .architecture] | sort | join(" ")' "$WORK/i.json")" \
    "linux/amd64 linux/arm64" "platforms of the index"

  berth_ inspect --raw "$R/berth/inspect/img:v1" >"$WORK/raw" || die "berth inspect --raw failed"
  expect_eq "sha256:$(sha256_of "$WORK/raw")" "$d" "sha256 of inspect --raw"
  cmp "$WORK/raw" "$m" || die "inspect --raw bytes differ from the pushed manifest"
  berth_ inspect --raw "$R/berth/inspect/img:multi" >"$WORK/rawi" || die "berth inspect --raw of the index failed"
  expect_eq "sha256:$(sha256_of "$WORK/rawi")" "$di" "sha256 of inspect --raw (index)"

  berth_ inspect -o json --platform linux/arm64 "$R/berth/inspect/img:multi" >"$WORK/arm.json" \
    || die "berth inspect --platform linux/arm64 failed"
  expect_eq "$(jq -r .digest "$WORK/arm.json")" "$db" "inspect --platform linux/arm64 .digest"
  expect_eq "$(jq -r .config.architecture "$WORK/arm.json")" arm64 "inspect --platform linux/arm64 .config.architecture"

  # a layout reference
  berth_ inspect -o json "oci:$IMAGES:multi" >"$WORK/l.json" || die "berth inspect oci:\$IMAGES:multi failed"
  expect_eq "$(jq -r .digest "$WORK/l.json")" "$di" "inspect of the layout's multi .digest"

  local rc
  berth_rc "$WORK/out" "$WORK/err" inspect "$R/berth/inspect/img:nosuchtag"
  rc=$?
  expect_eq "$rc" 1 "exit status of inspect of a missing tag"
}
register berth-inspect test_berth_inspect

test_berth_tags() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  berth_ push "oci:$IMAGES:amd64" "$R/berth/tags/img:v1" || die "berth push v1 failed"
  berth_ push "oci:$IMAGES:arm64" "$R/berth/tags/img:v2" || die "berth push v2 failed"
  berth_ tags "$R/berth/tags/img" >"$WORK/tags" || die "berth tags failed"
  cat "$WORK/tags" >&2
  expect_eq "$(sort "$WORK/tags" | tr '\n' ' ')" "v1 v2 " "berth tags"
  berth_ tags -o json "$R/berth/tags/img" >"$WORK/tags.json" || die "berth tags -o json failed"
  cat "$WORK/tags.json" >&2
  expect_eq "$(jq -r .name "$WORK/tags.json")" berth/tags/img "tags -o json .name"
  expect_eq "$(jq -r '.tags | sort | join(" ")' "$WORK/tags.json")" "v1 v2" "tags -o json .tags"

  berth_ tag "$R/berth/tags/img:v1" v3 || die "berth tag failed"
  expect_eq "$(registry_digest berth/tags/img v3)" "$d" "digest of the new tag v3"
  berth_ tags "$R/berth/tags/img" >"$WORK/tags2" || die "berth tags (after tag) failed"
  expect_eq "$(sort "$WORK/tags2" | tr '\n' ' ')" "v1 v2 v3 " "berth tags after berth tag"
}
register berth-tags test_berth_tags

test_berth_resolve() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  berth_ push "oci:$IMAGES:amd64" "$R/berth/resolve/img:v1" || die "berth push failed"
  local sd
  sd=$(skopeo_ inspect --tls-verify=false "docker://$R/berth/resolve/img:v1" | jq -r .Digest) || die "skopeo inspect failed"
  expect_eq "$sd" "$d" "skopeo inspect .Digest"
  local out; out=$(berth_ resolve "$R/berth/resolve/img:v1") || die "berth resolve failed"
  expect_eq "$out" "$R/berth/resolve/img@$sd" "berth resolve"
  berth_ resolve -o json "$R/berth/resolve/img:v1" >"$WORK/r.json" || die "berth resolve -o json failed"
  cat "$WORK/r.json" >&2
  expect_eq "$(jq -r .digest "$WORK/r.json")" "$sd" "resolve -o json .digest"
  local rc
  berth_rc "$WORK/out" "$WORK/err" resolve "$R/berth/resolve/img:nosuchtag"
  rc=$?
  expect_eq "$rc" 1 "exit status of resolve of a missing tag"
}
register berth-resolve test_berth_resolve

test_berth_catalog() {
  local R; R=$(reg)
  berth_ push "oci:$IMAGES:amd64" "$R/berth/catalog/one:v1" || die "berth push one failed"
  berth_ push "oci:$IMAGES:amd64" "$R/berth/catalog/two:v1" || die "berth push two failed"
  berth_ catalog "$R" >"$WORK/cat" || die "berth catalog failed"
  cat "$WORK/cat" >&2
  local r
  for r in berth/catalog/one berth/catalog/two; do
    grep -qxF "$r" "$WORK/cat" || die "berth catalog does not list $r"
  done
  berth_ catalog -o json "$R" >"$WORK/cat.json" || die "berth catalog -o json failed"
  for r in berth/catalog/one berth/catalog/two; do
    jq -e --arg r "$r" '.repositories | index($r)' "$WORK/cat.json" >/dev/null \
      || die "berth catalog -o json .repositories lacks $r"
  done
}
register berth-catalog test_berth_catalog

test_berth_rm() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  berth_ push "oci:$IMAGES:amd64" "$R/berth/rm/img:v1" || die "berth push failed"
  expect_eq "$(registry_digest berth/rm/img v1)" "$d" "digest before rm"
  berth_ rm "$R/berth/rm/img:v1" || die "berth rm failed"
  expect_eq "$(registry_digest berth/rm/img "$d")" "" "manifest digest still served after rm"
  local rc
  berth_rc "$WORK/out" "$WORK/err" pull "$R/berth/rm/img:v1" "oci:$WORK/gone:v1"
  rc=$?
  expect_eq "$rc" 1 "exit status of pulling a removed tag"
  [ ! -e "$WORK/gone" ] || die "failed pull left $WORK/gone behind"
  berth_rc "$WORK/out" "$WORK/err" pull "$R/berth/rm/img@$d" "oci:$WORK/gone2:v1"
  rc=$?
  expect_eq "$rc" 1 "exit status of pulling a removed manifest by digest"
}
register berth-rm test_berth_rm

test_berth_index_create() {
  local R; R=$(reg)
  local da; da=$(layout_digest "$IMAGES" amd64)
  local db; db=$(layout_digest "$IMAGES" arm64)
  berth_ push "oci:$IMAGES:amd64" "$R/berth/ix/img:amd64" || die "berth push amd64 failed"
  berth_ push "oci:$IMAGES:arm64" "$R/berth/ix/img:arm64" || die "berth push arm64 failed"
  berth_ index create "$R/berth/ix/img:multi" --manifest "$R/berth/ix/img@$da" --manifest "$R/berth/ix/img@$db" \
    >"$WORK/out" || die "berth index create failed"
  cat "$WORK/out" >&2
  local dx; dx=$(grep -oE 'sha256:[0-9a-f]{64}' "$WORK/out" | tail -n 1)
  [ -n "$dx" ] || die "berth index create printed no digest: $(cat "$WORK/out")"
  expect_eq "$(registry_digest berth/ix/img multi)" "$dx" "registry's digest of the created index"
  berth_ inspect --raw "$R/berth/ix/img:multi" >"$WORK/raw" || die "berth inspect --raw failed"
  expect_eq "sha256:$(sha256_of "$WORK/raw")" "$dx" "sha256 of the created index"
  berth_ inspect -o json "$R/berth/ix/img:multi" >"$WORK/i.json" || die "berth inspect -o json failed"
  cat "$WORK/i.json" >&2
  expect_eq "$(jq -r .mediaType "$WORK/i.json")" "$MT_OCI_INDEX" "created index .mediaType"
  expect_eq "$(jq -r '[.manifests[] | .digest + "=" + .platform.os + "/" + .platform.architecture] | sort | join(" ")' "$WORK/i.json")" \
    "$(printf '%s\n' "$da=linux/amd64" "$db=linux/arm64" | sort | tr '\n' ' ' | sed 's/ $//')" \
    "children and platforms of the created index"
  berth_ pull --platform linux/arm64 "$R/berth/ix/img:multi" "oci:$WORK/arm:v1" || die "berth pull --platform linux/arm64 of the created index failed"
  expect_eq "$(layout_digest "$WORK/arm" v1)" "$db" "arm64 manifest through the created index"
}
register berth-index-create test_berth_index_create

test_berth_completions() {
  berth_ completions bash >"$WORK/berth.bash" || die "berth completions bash failed"
  [ -s "$WORK/berth.bash" ] || die "berth completions bash printed nothing"
  bash -n "$WORK/berth.bash" || die "bash -n rejects the bash completion script"
  bash -c '. "$1" && complete -p berth' _ "$WORK/berth.bash" || die "the completion script registers no completion for berth"
}
register berth-completions test_berth_completions
