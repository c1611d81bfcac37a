# shellcheck shell=bash
# podman, with its own storage (vfs) under the temp dir and the containers.conf that
# run.sh writes (netns none, runc, cgroupfs, ulimits) -- see shared/FIELD-NOTES.md.

pm() { podman_ "${PODMAN_ARGS[@]}" "$@"; }

# Load from an OCI layout, push, remove, pull back: the digest must be the pushed one.
test_podman_push_pull() {
  command -v podman >/dev/null || die "podman not installed"
  local R; R=$(reg)
  local ref=$R/podman/test:v1
  # (podman pull oci:DIR names the image after DIR, and mktemp's mixed-case directory
  # names are not valid image names; so load an oci-archive that carries a name.)
  skopeo_ copy "oci:$IMAGES:$NATIVE" "oci-archive:$WORK/img.tar:berth-test/img:v1" \
    || die "skopeo copy oci -> oci-archive failed"
  pm load -i "$WORK/img.tar" || die "podman load failed"
  local id; id=$(pm inspect --format '{{.Id}}' localhost/berth-test/img:v1)
  [ -n "$id" ] || die "podman load produced no localhost/berth-test/img:v1"
  pm tag "$id" "$ref" || die "podman tag failed"
  pm push --tls-verify=false --digestfile "$WORK/digest" "$ref" || die "podman push failed"
  local pushed; pushed=$(cat "$WORK/digest")
  [[ $pushed == sha256:* ]] || die "podman push wrote no digest (got '$pushed')"
  note "pushed $ref as $pushed"
  expect_eq "$(registry_digest podman/test v1)" "$pushed" "registry's Docker-Content-Digest for the pushed tag"
  pm rmi -f "$ref" "$id" || die "podman rmi failed"
  if pm image exists "$ref"; then die "image still present after rmi"; fi
  pm pull --tls-verify=false "$ref" || die "podman pull from the registry failed"
  expect_eq "$(pm inspect --format '{{.Digest}}' "$ref")" "$pushed" "podman inspect .Digest after pull"
  pm inspect --format '{{json .RepoDigests}}' "$ref" >"$WORK/repodigests" || die "inspect RepoDigests failed"
  grep -q "\"$R/podman/test@$pushed\"" "$WORK/repodigests" \
    || die "RepoDigests $(cat "$WORK/repodigests") lacks $R/podman/test@$pushed"
  expect_eq "$(pm inspect --format '{{.Id}}' "$ref")" "$id" "image id (config digest) after the round trip"
  # Pull by digest as well.
  pm pull --tls-verify=false "$R/podman/test@$pushed" || die "podman pull by digest failed"
}
register podman-push-pull test_podman_push_pull

# podman run of an image pushed by skopeo (an OCI manifest without a mediaType field).
test_podman_run() {
  command -v podman >/dev/null || die "podman not installed"
  local R; R=$(reg)
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:$NATIVE" "docker://$R/podman/run:v1" || die "skopeo push failed"
  pm run --rm --tls-verify=false --network none "$R/podman/run:v1" >"$WORK/out" \
    || die "podman run failed: $(tail -n 2 "$WORK/out" | tr '\n' ' ')"
  cat "$WORK/out" >&2
  grep -q "hello from $NATIVE" "$WORK/out" || die "unexpected output from the container: $(cat "$WORK/out")"
  pm run --rm --network none "$R/podman/run:v1" cat /etc/berth-test >"$WORK/out2" || die "second podman run failed"
  grep -q "berth-client-test $NATIVE" "$WORK/out2" || die "file content in the container differs"
  # (.Digest may name another manifest of the same image id, e.g. podman-push-pull's;
  # RepoDigests has one entry per repository.)
  local d; d=$(layout_digest "$IMAGES" "$NATIVE")
  pm inspect --format '{{json .RepoDigests}}' "$R/podman/run:v1" >"$WORK/repodigests" || die "inspect failed"
  grep -q "\"$R/podman/run@$d\"" "$WORK/repodigests" \
    || die "RepoDigests $(cat "$WORK/repodigests") lacks $R/podman/run@$d"
}
register podman-run test_podman_run
