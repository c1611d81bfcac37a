# shellcheck shell=bash
# umoci: pull from the registry into an OCI layout with skopeo, unpack it with umoci.

test_umoci_unpack() {
  local R; R=$(reg)
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:$NATIVE" "docker://$R/umoci/img:v1" || die "skopeo push failed"
  skopeo_ copy --src-tls-verify=false "docker://$R/umoci/img:v1" "oci:$WORK/layout:v1" \
    || die "skopeo copy registry -> oci failed"
  run umoci unpack --image "$WORK/layout:v1" "$WORK/bundle" || die "umoci unpack failed"
  [ -f "$WORK/bundle/config.json" ] || die "bundle/config.json missing"
  [ -f "$WORK/bundle/rootfs/bin/busybox" ] || die "bundle/rootfs/bin/busybox missing"
  cmp /bin/busybox "$WORK/bundle/rootfs/bin/busybox" || die "unpacked busybox differs from /bin/busybox"
  expect_eq "$(readlink "$WORK/bundle/rootfs/bin/sh")" busybox "symlink bin/sh"
  expect_eq "$(cat "$WORK/bundle/rootfs/etc/berth-test")" "berth-client-test $NATIVE" "etc/berth-test"
  jq -e --arg a "echo hello from $NATIVE" '.process.args == ["/bin/sh", "-c", $a]' \
    "$WORK/bundle/config.json" >/dev/null || die "process.args in config.json: $(jq -c .process.args "$WORK/bundle/config.json")"
}
register umoci-unpack test_umoci_unpack
