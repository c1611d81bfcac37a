# shellcheck shell=bash
# berth layout verify (issue 3) on layouts written by other tools: umoci builds the
# test images, skopeo copies one out of the registry; then one is damaged on purpose.

test_layout_verify_foreign_layouts() {
  local R; R=$(reg)
  run "$BERTH" layout verify "$IMAGES" || die "berth rejects the layout umoci wrote"
  skopeo_ copy --dest-tls-verify=false "oci:$IMAGES:$NATIVE" "docker://$R/layout/img:v1" || die "skopeo push failed"
  skopeo_ copy --src-tls-verify=false "docker://$R/layout/img:v1" "oci:$WORK/copy:v1" \
    || die "skopeo copy registry -> oci failed"
  run "$BERTH" layout verify "$WORK/copy" || die "berth rejects the layout skopeo wrote"

  # Damage one layer blob (same size, other bytes): verify must fail and name it.
  local layer
  layer=$(find "$WORK/copy/blobs/sha256" -type f -size +100k | head -1)
  [ -n "$layer" ] || die "no layer blob found in $WORK/copy"
  printf 'X' | dd of="$layer" bs=1 seek=100 conv=notrunc status=none
  local out rc
  out=$("$BERTH" layout verify "$WORK/copy" 2>&1); rc=$?
  expect_eq "$rc" 1 "exit code of verify on a damaged layout"
  grep -q "blobs/sha256/$(basename "$layer"): content has digest" <<<"$out" \
    || die "verify output does not name the damaged blob: $out"
}
register layout-verify-foreign test_layout_verify_foreign_layouts
