# shellcheck shell=bash
# skopeo: OCI layout <-> registry round trips, image index, inspect, list-tags, delete.

# Push one single-platform image, pull it back into a new layout; every byte must survive.
test_skopeo_roundtrip() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$R/skopeo/roundtrip:v1" \
    || die "skopeo copy oci -> registry failed"
  skopeo_ copy --src-tls-verify=false "docker://$R/skopeo/roundtrip:v1" "oci:$WORK/back:v1" \
    || die "skopeo copy registry -> oci failed"
  local d2; d2=$(layout_digest "$WORK/back" v1)
  expect_eq "$d2" "$d" "manifest digest after the round trip"
  cmp "$(blob_path "$IMAGES" "$d")" "$(blob_path "$WORK/back" "$d2")" \
    || die "manifest bytes differ after the round trip"
  local m; m=$(blob_path "$IMAGES" "$d")
  local b
  for b in $(jq -r '.config.digest, .layers[].digest' "$m"); do
    verify_blob "$WORK/back" "$b" || die "blob $b missing or corrupt in the pulled layout"
    cmp "$(blob_path "$IMAGES" "$b")" "$(blob_path "$WORK/back" "$b")" || die "blob $b differs"
  done
  skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/roundtrip:v1" >"$WORK/raw" \
    || die "skopeo inspect --raw failed"
  expect_eq "sha256:$(sha256_of "$WORK/raw")" "$d" "sha256 of 'skopeo inspect --raw' (by tag)"
  skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/roundtrip@$d" >"$WORK/raw2" \
    || die "skopeo inspect --raw by digest failed"
  cmp "$WORK/raw2" "$m" || die "manifest fetched by digest differs from the pushed bytes"
  expect_eq "$(registry_digest skopeo/roundtrip v1)" "$d" "Docker-Content-Digest of HEAD manifests/v1"
}
register skopeo-roundtrip test_skopeo_roundtrip

# An OCI image index over two platforms, with --all: index digest and both children kept.
test_skopeo_index() {
  local R; R=$(reg)
  local di; di=$(layout_digest "$IMAGES" multi)
  skopeo_ copy --all --dest-tls-verify=false "oci:$IMAGES:multi" "docker://$R/skopeo/index:multi" \
    || die "skopeo copy --all oci -> registry failed"
  skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/index:multi" >"$WORK/raw" \
    || die "skopeo inspect --raw of the index failed"
  expect_eq "sha256:$(sha256_of "$WORK/raw")" "$di" "sha256 of the index as served"
  skopeo_ copy --all --src-tls-verify=false "docker://$R/skopeo/index:multi" "oci:$WORK/back:multi" \
    || die "skopeo copy --all registry -> oci failed"
  expect_eq "$(layout_digest "$WORK/back" multi)" "$di" "index digest after the round trip"
  cmp "$(blob_path "$IMAGES" "$di")" "$(blob_path "$WORK/back" "$di")" || die "index bytes differ"
  local n; n=$(jq '.manifests | length' "$(blob_path "$WORK/back" "$di")")
  expect_eq "$n" 2 "number of children in the pulled index"
  local c arch
  for c in $(jq -r '.manifests[].digest' "$(blob_path "$IMAGES" "$di")"); do
    verify_blob "$WORK/back" "$c" || die "child manifest $c did not arrive"
    cmp "$(blob_path "$IMAGES" "$c")" "$(blob_path "$WORK/back" "$c")" || die "child $c bytes differ"
    local cfg; cfg=$(jq -r .config.digest "$(blob_path "$WORK/back" "$c")")
    verify_blob "$WORK/back" "$cfg" || die "config $cfg of child $c did not arrive"
    for l in $(jq -r '.layers[].digest' "$(blob_path "$WORK/back" "$c")"); do
      verify_blob "$WORK/back" "$l" || die "layer $l of child $c did not arrive"
    done
    # each child is also addressable by digest in the registry
    skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/index@$c" >"$WORK/child" \
      || die "child $c not fetchable by digest"
    expect_eq "sha256:$(sha256_of "$WORK/child")" "$c" "child fetched by digest"
  done
  for arch in amd64 arm64; do
    local got
    got=$(skopeo_ --override-arch "$arch" --override-os linux inspect --tls-verify=false \
      "docker://$R/skopeo/index:multi" | jq -r .Architecture) || die "inspect --override-arch $arch failed"
    expect_eq "$got" "$arch" "architecture of the $arch instance"
  done
}
register skopeo-index test_skopeo_index

# skopeo inspect: Digest field, platform, layers, tags and the config blob.
test_skopeo_inspect() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" amd64)
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$R/skopeo/inspect:v1" \
    || die "push failed"
  skopeo_ inspect --tls-verify=false "docker://$R/skopeo/inspect:v1" >"$WORK/inspect.json" \
    || die "skopeo inspect failed"
  cat "$WORK/inspect.json" >&2
  expect_eq "$(jq -r .Digest "$WORK/inspect.json")" "$d" "inspect .Digest"
  expect_eq "$(jq -r .Architecture "$WORK/inspect.json")" amd64 "inspect .Architecture"
  expect_eq "$(jq -r .Os "$WORK/inspect.json")" linux "inspect .Os"
  expect_eq "$(jq -r '.Layers | length' "$WORK/inspect.json")" 1 "inspect layer count"
  expect_eq "$(jq -r '.RepoTags | join(",")' "$WORK/inspect.json")" v1 "inspect .RepoTags"
  expect_eq "$(jq -r '.Labels["org.example.berth.test"]' "$WORK/inspect.json")" amd64 "inspect label"
  skopeo_ inspect --config --raw --tls-verify=false "docker://$R/skopeo/inspect:v1" >"$WORK/config" \
    || die "skopeo inspect --config failed"
  expect_eq "sha256:$(sha256_of "$WORK/config")" \
    "$(jq -r .config.digest "$(blob_path "$IMAGES" "$d")")" "config blob digest"
  # A tag that does not exist must make inspect fail.
  if skopeo_ inspect --tls-verify=false "docker://$R/skopeo/inspect:nope" >/dev/null 2>&1; then
    die "inspect of a missing tag succeeded"
  fi
}
register skopeo-inspect test_skopeo_inspect

# skopeo list-tags: every pushed tag listed, in lexical order.
test_skopeo_list_tags() {
  local R; R=$(reg)
  local t
  for t in zeta alpha v10 mid v2; do
    skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$R/skopeo/tags:$t" \
      || die "push of tag $t failed"
  done
  skopeo_ list-tags --tls-verify=false "docker://$R/skopeo/tags" >"$WORK/tags.json" \
    || die "skopeo list-tags failed"
  cat "$WORK/tags.json" >&2
  expect_eq "$(jq -r .Repository "$WORK/tags.json")" "$R/skopeo/tags" "list-tags .Repository"
  local got; got=$(jq -r '.Tags | join(",")' "$WORK/tags.json")
  local sorted; sorted=$(jq -r '.Tags | sort | join(",")' "$WORK/tags.json")
  expect_eq "$sorted" "alpha,mid,v10,v2,zeta" "set of tags"
  expect_eq "$got" "alpha,mid,v10,v2,zeta" "order of tags (must be lexical)"
}
register skopeo-list-tags test_skopeo_list_tags

# skopeo delete: deletes the manifest by digest; every tag on it goes, others stay.
test_skopeo_delete() {
  local R; R=$(reg)
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$R/skopeo/delete:a" || die "push a failed"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:amd64" "docker://$R/skopeo/delete:b" || die "push b failed"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:arm64" "docker://$R/skopeo/delete:keep" || die "push keep failed"
  skopeo_ inspect --tls-verify=false "docker://$R/skopeo/delete:a" >/dev/null || die "inspect before delete failed"
  skopeo_ delete --tls-verify=false "docker://$R/skopeo/delete:a" || die "skopeo delete failed"
  if skopeo_ inspect --tls-verify=false "docker://$R/skopeo/delete:a"; then
    die "inspect of the deleted tag still succeeds"
  fi
  local d; d=$(layout_digest "$IMAGES" amd64)
  if skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/delete@$d" >/dev/null; then
    die "the deleted manifest is still served by digest"
  fi
  if skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/delete:b" >/dev/null; then
    die "tag b, which pointed at the deleted manifest, still resolves"
  fi
  skopeo_ inspect --raw --tls-verify=false "docker://$R/skopeo/delete:keep" >"$WORK/keep" \
    || die "tag 'keep' (another manifest) vanished with the delete"
  expect_eq "sha256:$(sha256_of "$WORK/keep")" "$(layout_digest "$IMAGES" arm64)" "digest of the kept tag"
}
register skopeo-delete test_skopeo_delete

# registry -> registry in the same registry: skopeo tries a cross-repository mount.
test_skopeo_cross_repo() {
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" arm64)
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:arm64" "docker://$R/skopeo/mount-src:v1" || die "push failed"
  skopeo_ copy --src-tls-verify=false --dest-tls-verify=false \
    "docker://$R/skopeo/mount-src:v1" "docker://$R/skopeo/mount-dst/nested:v1" \
    || die "registry -> registry copy failed"
  expect_eq "$(registry_digest skopeo/mount-dst/nested v1)" "$d" "digest in the destination repository"
  local b
  for b in $(jq -r '.config.digest, .layers[].digest' "$(blob_path "$IMAGES" "$d")"); do
    expect_eq "$(http_status HEAD "/v2/skopeo/mount-dst/nested/blobs/$b" -I)" 200 "HEAD of blob $b in the destination"
  done
  # A re-push of the same image must be a no-op that keeps the digest.
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:arm64" "docker://$R/skopeo/mount-dst/nested:v1" \
    || die "re-push failed"
  expect_eq "$(registry_digest skopeo/mount-dst/nested v1)" "$d" "digest after the re-push"
}
register skopeo-cross-repo test_skopeo_cross_repo

known_bug distribution skopeo-list-tags "Distribution 2.8 returns tags/list unsorted (and ignores n)"
