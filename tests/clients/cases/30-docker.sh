# shellcheck shell=bash
# The docker engine (dockerd started by run.sh with its own directories, vfs storage,
# no bridge, no iptables; docker_ready is in lib.sh). Talks plain HTTP to 127.0.0.1.

# repo_digest_of REF -> .RepoDigests[0]
repo_digest_of() {
  "$DOCKER_CLI" image inspect --format '{{index .RepoDigests 0}}' "$1"
}

# expect_repo_digest REF REPO@DIGEST: one of REF's RepoDigests must be REPO@DIGEST (an image
# id that other tests also pulled has one RepoDigest per repository, in no fixed order).
expect_repo_digest() {
  local all
  all=$("$DOCKER_CLI" image inspect --format '{{json .RepoDigests}}' "$1") || die "docker image inspect $1 failed"
  jq -e --arg w "$2" 'index($w) != null' <<<"$all" >/dev/null || die "RepoDigests of $1 are $all, without $2"
}

# docker load (from a docker-archive made by skopeo), tag, push, rmi, pull back.
test_docker_push_pull() {
  docker_ready
  local R; R=$(reg)
  local ref=$R/docker/test:v1
  skopeo_ copy "oci:$IMAGES:$NATIVE" "docker-archive:$WORK/img.tar:berth-test/img:v1" \
    || die "skopeo copy oci -> docker-archive failed"
  docker_ load -i "$WORK/img.tar" || die "docker load failed"
  docker_ tag berth-test/img:v1 "$ref" || die "docker tag failed"
  docker_ push "$ref" >"$WORK/push.out" 2>&1
  local rc=$?
  cat "$WORK/push.out" >&2
  [ "$rc" -eq 0 ] || die "docker push failed: $(tail -n 2 "$WORK/push.out" | tr '\n' ' ')"
  local pushed
  pushed=$(grep -o 'digest: sha256:[0-9a-f]\{64\}' "$WORK/push.out" | tail -n 1 | cut -d' ' -f2)
  [ -n "$pushed" ] || die "no digest in the docker push output"
  note "pushed $ref as $pushed"
  expect_eq "$(registry_digest docker/test v1)" "$pushed" "registry's Docker-Content-Digest for the pushed tag"
  docker_ rmi "$ref" berth-test/img:v1 || die "docker rmi failed"
  if "$DOCKER_CLI" image inspect "$ref" >/dev/null 2>&1; then die "image still present after rmi"; fi
  docker_ pull "$ref" || die "docker pull failed"
  expect_eq "$(repo_digest_of "$ref")" "$R/docker/test@$pushed" "RepoDigests[0] after pull"
  docker_ run --rm --network none "$ref" >"$WORK/out" || die "docker run of the pulled image failed"
  grep -q "hello from $NATIVE" "$WORK/out" || die "unexpected container output: $(cat "$WORK/out")"
  # Push the pulled image to another repository: dockerd now knows where its layers came
  # from and tries a cross-repository mount (POST ?mount=&from=docker/test).
  docker_ tag "$ref" "$R/docker/mounted:v1" || die "docker tag failed"
  docker_ push "$R/docker/mounted:v1" >"$WORK/push2.out" 2>&1 || die "second docker push failed: $(tail -n 2 "$WORK/push2.out" | tr '\n' ' ')"
  cat "$WORK/push2.out" >&2
  grep -q "digest: $pushed" "$WORK/push2.out" || die "second push reported another digest"
  expect_eq "$(registry_digest docker/mounted v1)" "$pushed" "digest in the mount destination"
}
register docker-push-pull test_docker_push_pull

# docker pull of an OCI manifest pushed by skopeo (umoci's manifests have no mediaType).
test_docker_pull_oci() {
  docker_ready
  local R; R=$(reg)
  local d; d=$(layout_digest "$IMAGES" "$NATIVE")
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:$NATIVE" "docker://$R/docker/oci:v1" || die "skopeo push failed"
  docker_ pull "$R/docker/oci:v1" || die "docker pull of an OCI image failed"
  expect_repo_digest "$R/docker/oci:v1" "$R/docker/oci@$d"
  docker_ run --rm --network none "$R/docker/oci:v1" cat /etc/berth-test >"$WORK/out" || die "docker run failed"
  grep -q "berth-client-test $NATIVE" "$WORK/out" || die "unexpected container output: $(cat "$WORK/out")"
}
register docker-pull-oci test_docker_pull_oci

# docker pull of a two-platform OCI index: picks the native child, records the index digest.
test_docker_pull_index() {
  docker_ready
  local R; R=$(reg)
  local di; di=$(layout_digest "$IMAGES" multi)
  skopeo_ copy --all --dest-tls-verify=false "oci:$IMAGES:multi" "docker://$R/docker/index:multi" \
    || die "skopeo push of the index failed"
  docker_ pull "$R/docker/index:multi" || die "docker pull of an OCI index failed"
  expect_repo_digest "$R/docker/index:multi" "$R/docker/index@$di"
  expect_eq "$("$DOCKER_CLI" image inspect --format '{{.Architecture}}' "$R/docker/index:multi")" "$NATIVE" \
    "architecture of the pulled instance"
  docker_ pull "$R/docker/index@$di" || die "docker pull by index digest failed"
}
register docker-pull-index test_docker_pull_index
