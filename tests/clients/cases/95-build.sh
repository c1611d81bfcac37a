# shellcheck shell=bash
# berth build and berth diff (issue 10): reproducible images from directories, checked
# by rebuilding from other directories at other times with other mtimes and owners;
# the built image runs (berth run) and skopeo and podman pull it from the registry;
# a two-platform index validates and each platform pulls its own manifest.

# app_tree DIR: the same application files, written fresh (new mtimes, given owner).
app_tree() {
  local d=$1 owner=${2:-0:0}
  mkdir -p "$d/bin" "$d/etc/app" "$d/share"
  printf '#!/bin/sh\necho "app says: $*"\n' >"$d/bin/app"
  chmod 0755 "$d/bin/app"
  echo 'greeting=hello' >"$d/etc/app/app.conf"
  echo 'static data' >"$d/share/data.txt"
  ln -sf ../share/data.txt "$d/etc/app/data-link"
  printf 'secret.txt\n*.tmp\n' >"$d/.berthignore"
  echo 'never in the image' >"$d/secret.txt"
  echo 'scratch file' >"$d/build.tmp"
  chown -R "$owner" "$d" 2>/dev/null || true
}

# build_app OUT_LAYOUT_TAG SRC_DIR COMPRESSION [extra build args]: prints the digest.
build_app() {
  local dst=$1 src=$2 comp=$3
  shift 3
  "$BERTH" build --from "oci:$IMAGES:$NATIVE" --layer "$src:/opt/app" --compression "$comp" \
    --entrypoint '["/opt/app/bin/app"]' --cmd '["default-arg"]' --env APP_MODE=prod \
    --label org.example.built-by=berth --expose 8080 --workdir /opt/app --tag "$dst" "$@" 2>>"$WORK/build.err"
}

test_build_reproducible() {
  local comp d1 d2 dg=""
  for comp in gzip zstd; do
    app_tree "$WORK/src1-$comp" 0:0
    d1=$(SOURCE_DATE_EPOCH=1700000000 build_app "oci:$WORK/out1-$comp:v1" "$WORK/src1-$comp" "$comp") \
      || die "first build ($comp) failed: $(tail -n 3 "$WORK/build.err")"
    sleep 1.1
    app_tree "$WORK/other-place/src2-$comp" 1234:4321
    touch -d '2001-02-03 04:05:06' "$WORK/other-place/src2-$comp/bin/app"
    d2=$(SOURCE_DATE_EPOCH=1700000000 build_app "oci:$WORK/out2-$comp:v1" "$WORK/other-place/src2-$comp" "$comp") \
      || die "second build ($comp) failed"
    expect_eq "$d2" "$d1" "manifest digest of the rebuild ($comp)"
    expect_eq "$(layout_digest "$WORK/out1-$comp" v1)" "$d1" "digest written to the layout ($comp)"
    berth_ layout verify "$WORK/out1-$comp" || die "berth layout verify rejects the built layout ($comp)"
    [ "$comp" = gzip ] && dg=$d1
  done
  [ "$d1" != "$dg" ] || die "gzip and zstd builds have the same digest"
  d1=$dg
  grep -q 'secret.txt' "$WORK/build.err" && die "an ignored file was warned about (it is not in the image)"
  # the ignored files are not in the image; the others are, with normalised metadata
  local m l
  m=$(blob_path "$WORK/out1-gzip" "$d1")
  l=$(jq -r '.layers[-1].digest' "$m")
  tar -tvzf "$(blob_path "$WORK/out1-gzip" "$l")" >"$WORK/listing.txt"
  grep -q 'secret.txt\|build.tmp' "$WORK/listing.txt" && die ".berthignore not honoured: $(cat "$WORK/listing.txt")"
  grep -q 'opt/app/bin/app' "$WORK/listing.txt" || die "app binary missing from the layer"
  awk '{print $2}' "$WORK/listing.txt" | sort -u | tr '\n' ' ' | grep_all -x '0/0 ' || die "owners not normalised: $(awk '{print $2}' "$WORK/listing.txt" | sort -u | tr '\n' ' ')"
  # the config records the base, the epoch and the settings
  local c
  c=$(blob_path "$WORK/out1-gzip" "$(jq -r '.config.digest' "$m")")
  expect_eq "$(jq -r '.created' "$c")" "2023-11-14T22:13:20Z" "config created from SOURCE_DATE_EPOCH"
  expect_eq "$(jq -c '.config.Entrypoint' "$c")" '["/opt/app/bin/app"]' "Entrypoint"
  jq -r '.config.Env[]' "$c" | grep_all -x 'APP_MODE=prod' || die "Env lacks APP_MODE"
  expect_eq "$(jq -r '.annotations["org.opencontainers.image.base.digest"]' "$m")" "$(layout_digest "$IMAGES" "$NATIVE")" "base digest annotation"
}
register build-reproducible test_build_reproducible

test_build_change_one_file() {
  app_tree "$WORK/a"; app_tree "$WORK/b"
  echo 'greeting=bonjour' >"$WORK/b/etc/app/app.conf"
  local da db
  da=$(SOURCE_DATE_EPOCH=1700000000 "$BERTH" build --from "oci:$IMAGES:$NATIVE" --layer "$WORK/a:/opt/app" \
    --layer "$WORK/a/share:/opt/share" --tag "oci:$WORK/oa:v1") || die "build a"
  db=$(SOURCE_DATE_EPOCH=1700000000 "$BERTH" build --from "oci:$IMAGES:$NATIVE" --layer "$WORK/b:/opt/app" \
    --layer "$WORK/b/share:/opt/share" --tag "oci:$WORK/ob:v1") || die "build b"
  [ "$da" != "$db" ] || die "a changed file did not change the digest"
  local ma mb
  ma=$(blob_path "$WORK/oa" "$da"); mb=$(blob_path "$WORK/ob" "$db")
  expect_eq "$(diff <(jq -r '.layers[].digest' "$ma") <(jq -r '.layers[].digest' "$mb") | grep -c '^<')" 1 "layers that differ"
  berth_out_diff() { "$BERTH" diff "$@" >"$WORK/diff.out" 2>"$WORK/diff.err"; }
  berth_out_diff "oci:$WORK/oa:v1" "oci:$WORK/ob:v1"
  expect_eq "$?" 1 "exit status of berth diff on different images"
  cat "$WORK/diff.out" >&2
  grep -q 'opt/app/etc/app/app.conf' "$WORK/diff.out" || die "berth diff does not name the changed file"
  grep -q 'opt/app/bin/app' "$WORK/diff.out" && die "berth diff names an unchanged file"
  berth_out_diff "oci:$WORK/oa:v1" "oci:$WORK/oa:v1" || die "berth diff of an image with itself is not 0"
  # a rebuild with another epoch: berth diff says the timestamps differ
  SOURCE_DATE_EPOCH=1800000000 "$BERTH" build --from "oci:$IMAGES:$NATIVE" --layer "$WORK/a:/opt/app" \
    --layer "$WORK/a/share:/opt/share" --tag "oci:$WORK/oc:v1" >/dev/null || die "build c"
  berth_out_diff "oci:$WORK/oa:v1" "oci:$WORK/oc:v1"
  grep -q '/created' "$WORK/diff.out" || die "berth diff does not point at the config's created field"
  grep -qi 'mtime' "$WORK/diff.out" || die "berth diff does not name the mtime change"
}
register build-change-one-file test_build_change_one_file

# Files that look like secrets are warned about (and still built: the user decides);
# ignored ones are not read at all.
test_build_secret_warnings() {
  mkdir -p "$WORK/s/.ssh"
  echo 'TOKEN=abc' >"$WORK/s/.env"
  printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n' >"$WORK/s/.ssh/id_ed25519"
  echo 'AWS key AKIAABCDEFGHIJKLMNOP' >"$WORK/s/notes.txt"
  echo 'fine' >"$WORK/s/readme.txt"
  printf -- '-----BEGIN RSA PRIVATE KEY-----\n' >"$WORK/s/ignored.pem"
  echo 'ignored.pem' >"$WORK/s/.berthignore"
  "$BERTH" build --from scratch --layer "$WORK/s:/app" --tag "oci:$WORK/out:1" >"$WORK/o" 2>"$WORK/e" || die "build failed: $(cat "$WORK/e")"
  cat "$WORK/e" >&2
  local f
  for f in .env .ssh/id_ed25519 notes.txt; do
    grep -q "warning: .*$f" "$WORK/e" || die "no warning about $f"
  done
  grep -q 'readme.txt' "$WORK/e" && die "a harmless file was warned about"
  grep -q 'ignored.pem' "$WORK/e" && die "an ignored file was warned about"
  true
}
register build-secret-warnings test_build_secret_warnings

test_build_runs_and_pulls() {
  [ "$(id -u)" = 0 ] || skip "needs root"
  app_tree "$WORK/src"
  local ref=$(reg)/built/app:1 d
  d=$(SOURCE_DATE_EPOCH=1700000000 build_app "$ref" "$WORK/src" gzip --provenance "$WORK/prov.json") \
    || die "build to the registry failed: $(tail -n 3 "$WORK/build.err")"
  expect_eq "$(registry_digest built/app 1)" "$d" "digest in the registry"
  BERTH_CACHE=$WORK/cache "$BERTH" run --rm "$ref" -- hello >"$WORK/run.out" 2>"$WORK/run.err" \
    || die "berth run of the built image failed: $(tail -n 3 "$WORK/run.err")"
  expect_eq "$(cat "$WORK/run.out")" "app says: hello" "output of the built image"
  skopeo_ copy --src-tls-verify=false "docker://$ref" "oci:$WORK/skopeo:1" || die "skopeo cannot pull the built image"
  expect_eq "$(layout_digest "$WORK/skopeo" 1)" "$d" "digest skopeo pulled"
  if command -v podman >/dev/null; then
    podman_ pull --tls-verify=false "$ref" >/dev/null || die "podman cannot pull the built image"
    podman_ rmi -f "$ref" >/dev/null 2>&1 || true
  fi
  # provenance: an in-toto SLSA v1 predicate naming the base and the layer input
  expect_eq "$(jq -r '.buildDefinition.resolvedDependencies[0].digest.sha256' "$WORK/prov.json")" \
    "$(layout_digest "$IMAGES" "$NATIVE" | cut -d: -f2)" "base digest in the provenance"
  jq -e '.buildDefinition.buildType and .runDetails.builder.id' "$WORK/prov.json" >/dev/null || die "provenance lacks buildType or builder.id"
  export BERTH_PASSWORD=pw
  (cd "$WORK" && "$BERTH" keygen >/dev/null 2>&1) || die "keygen"
  berth_ attest "$ref" --predicate "$WORK/prov.json" --type slsaprovenance1 --key "$WORK/cosign.key" || die "attest the provenance"
  berth_ verify-attestation "$ref" --key "$WORK/cosign.pub" --type slsaprovenance1 -o json >"$WORK/v.json" || die "verify the provenance"
  expect_eq "$(jq -r '.verified[0].statement.subject[0].digest.sha256' "$WORK/v.json")" "${d#sha256:}" "provenance statement subject"
}
register build-runs-and-pulls test_build_runs_and_pulls

test_build_multi_arch() {
  app_tree "$WORK/src"
  local a b
  a=$(SOURCE_DATE_EPOCH=1 "$BERTH" build --from "oci:$IMAGES:multi" --platform linux/amd64 --layer "$WORK/src:/opt/app" --tag "$(reg)/built/multi:amd64") || die "amd64 build"
  b=$(SOURCE_DATE_EPOCH=1 "$BERTH" build --from "oci:$IMAGES:multi" --platform linux/arm64 --layer "$WORK/src:/opt/app" --tag "$(reg)/built/multi:arm64") || die "arm64 build"
  [ "$a" != "$b" ] || die "both platforms built to the same digest"
  berth_ index create "$(reg)/built/multi:latest" --manifest "$(reg)/built/multi:amd64" --manifest "$(reg)/built/multi:arm64" || die "index create"
  berth_ pull --all-platforms "$(reg)/built/multi:latest" "oci:$WORK/all:latest" || die "pull the index"
  berth_ layout verify "$WORK/all" || die "the index or its manifests fail the image-spec schemas"
  berth_ pull --platform linux/arm64 "$(reg)/built/multi:latest" "oci:$WORK/arm:1" || die "pull arm64"
  expect_eq "$(layout_digest "$WORK/arm" 1)" "$b" "manifest pulled for linux/arm64"
  berth_ pull --platform linux/amd64 "$(reg)/built/multi:latest" "oci:$WORK/amd:1" || die "pull amd64"
  expect_eq "$(layout_digest "$WORK/amd" 1)" "$a" "manifest pulled for linux/amd64"
  local c
  c=$(blob_path "$WORK/arm" "$(jq -r '.config.digest' "$(blob_path "$WORK/arm" "$b")")")
  expect_eq "$(jq -r .architecture "$c")" arm64 "architecture in the arm64 config"
}
register build-multi-arch test_build_multi_arch
