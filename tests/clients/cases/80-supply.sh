# shellcheck shell=bash
# Supply chain (issue 8): berth keygen/sign/verify/attest/verify-attestation/sbom/tree
# against the registry under test and against CNCF Distribution (no referrers API: the
# tag scheme and the referrers tag schema must carry everything there).
# Independent checks: openssl verifies signatures (cosign SIGNATURE_SPEC.md: the
# signature is ECDSA P-256 over SHA-256 of the simple-signing payload, base64 in the
# layer annotation dev.cosignproject.cosign/signature); securesystemslib verifies the
# DSSE envelopes (in-toto/DSSE "Signature definition": the signature is over PAE);
# pyspdxtools and cyclonedx-python-lib validate the SBOMs; dpkg-query, pip and npm say
# which packages the images really hold.

# supply_env: keys in $WORK (password from BERTH_PASSWORD), cosign-style names.
supply_keys() {
  export BERTH_PASSWORD=berth-test-password
  berth_ keygen --output-key-prefix "$WORK/cosign" || die "berth keygen failed"
  [ "$(stat -c %a "$WORK/cosign.key")" = 600 ] || die "cosign.key is not mode 0600"
  grep -q 'BEGIN ENCRYPTED SIGSTORE PRIVATE KEY' "$WORK/cosign.key" || die "cosign.key is not cosign's encrypted format"
  grep -q 'BEGIN PUBLIC KEY' "$WORK/cosign.pub" || die "cosign.pub is not a PEM public key"
  openssl pkey -pubin -in "$WORK/cosign.pub" -noout -text 2>/dev/null | grep_all 'P-256' \
    || die "openssl does not read cosign.pub as a P-256 key"
}

# berth_out OUT ERR CMD...: berth with stdout/stderr into files (copied to the log);
# returns berth's exit status.
berth_out() {
  local out=$1 err=$2 rc
  shift 2
  echo "+ $BERTH $*" >&2
  timeout --kill-after=10 "$CMD_TIMEOUT" "$BERTH" "$@" >"$out" 2>"$err"
  rc=$?
  sed 's/^/  stdout: /' "$out" | head -n 40 >&2
  sed 's/^/  stderr: /' "$err" | head -n 40 >&2
  echo "  exit status $rc" >&2
  return "$rc"
}

# manifest_at HOST REPO REF -> the manifest's bytes on stdout
manifest_at() {
  curl -sf -m 20 -H "Accept: $ACCEPT_ALL" "http://$1/v2/$2/manifests/$3"
}

# blob_at HOST REPO DIGEST -> the blob's bytes on stdout
blob_at() { curl -sf -m 60 "http://$1/v2/$2/blobs/$3"; }

# put_blob HOST REPO FILE -> uploads FILE (POST then PUT ?digest=), prints its digest
put_blob() {
  local host=$1 repo=$2 f=$3 d loc
  d="sha256:$(sha256_of "$f")"
  loc=$(curl -s -m 20 -X POST -D - -o /dev/null "http://$host/v2/$repo/blobs/uploads/" \
    | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
  [ -n "$loc" ] || return 1
  case "$loc" in http*) ;; *) loc="http://$host$loc" ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sf -m 60 -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$f" "$loc" >/dev/null || return 1
  echo "$d"
}

# put_manifest HOST REPO REF FILE
put_manifest() {
  curl -sf -m 20 -X PUT -H "Content-Type: $MT_OCI_MANIFEST" --data-binary "@$4" \
    "http://$1/v2/$2/manifests/$3" >/dev/null
}

# openssl_verify_sig HOST REPO DIGEST: fetch the .sig manifest's first layer and check
# it with openssl, as cosign's SIGNATURE_SPEC.md describes; then tamper and expect failure.
openssl_verify_sig() {
  local host=$1 repo=$2 d=$3 tag m ld
  tag="sha256-${d#sha256:}.sig"
  manifest_at "$host" "$repo" "$tag" >"$WORK/sig-manifest.json" || die "no $tag manifest in $host/$repo"
  expect_eq "$(jq -r '.layers[0].mediaType' "$WORK/sig-manifest.json")" application/vnd.dev.cosign.simplesigning.v1+json "signature layer media type"
  ld=$(jq -r '.layers[0].digest' "$WORK/sig-manifest.json")
  blob_at "$host" "$repo" "$ld" >"$WORK/payload.json" || die "cannot fetch signature payload $ld"
  expect_eq "$(jq -r '.critical.image["docker-manifest-digest"]' "$WORK/payload.json")" "$d" "payload's docker-manifest-digest"
  expect_eq "$(jq -r '.critical.type' "$WORK/payload.json")" "cosign container image signature" "payload's critical.type"
  jq -r '.layers[0].annotations["dev.cosignproject.cosign/signature"]' "$WORK/sig-manifest.json" | base64 -d >"$WORK/sig.der" \
    || die "signature annotation is not base64"
  openssl dgst -sha256 -verify "$WORK/cosign.pub" -signature "$WORK/sig.der" "$WORK/payload.json" >"$WORK/openssl.out" 2>&1
  grep -q 'Verified OK' "$WORK/openssl.out" || die "openssl does not verify berth's signature: $(cat "$WORK/openssl.out")"
  sed 's/cosign container image signature/cosign container image signaturE/' "$WORK/payload.json" >"$WORK/payload-tampered.json"
  if openssl dgst -sha256 -verify "$WORK/cosign.pub" -signature "$WORK/sig.der" "$WORK/payload-tampered.json" >/dev/null 2>&1; then
    die "openssl verifies a tampered payload"
  fi
}

# sign_verify_suite HOST REPO: the sign/verify contract against one registry.
sign_verify_suite() {
  local host=$1 repo=$2
  supply_keys
  berth_ push "oci:$IMAGES:amd64" "$host/$repo:a" || die "push amd64"
  berth_ push "oci:$IMAGES:arm64" "$host/$repo:b" || die "push arm64"
  local da db
  da=$(layout_digest "$IMAGES" amd64)
  db=$(layout_digest "$IMAGES" arm64)

  # unsigned: verify fails, exit 1, says nothing was found
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:a" --key "$WORK/cosign.pub" && die "verify passed on an unsigned image"
  grep -q 'no signatures found' "$WORK/e" || die "unsigned image: message does not say no signatures were found"

  berth_ sign "$host/$repo:a" --key "$WORK/cosign.key" -a env=prod -a team=platform || die "berth sign failed"
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:a" --key "$WORK/cosign.pub" -o json || die "berth verify of a signed image failed"
  expect_eq "$(jq -r '.digest' "$WORK/o")" "$da" "verified digest"
  expect_eq "$(jq -r '.verified[0].claims.manifest_digest // .verified[0].claims["docker-manifest-digest"] // empty' "$WORK/o" | head -1)" "$da" "digest in the verified claims"
  # found by both schemes
  jq -r '.verified[0].found' "$WORK/o" | grep_all 'tag sha256-' || die "signature not found through the tag scheme"
  jq -r '.verified[0].found' "$WORK/o" | grep_all 'referrer sha256:' || die "signature not found through referrers"
  # annotations: required ones must match
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:a" --key "$WORK/cosign.pub" -a env=prod || die "verify -a env=prod failed"
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:a" --key "$WORK/cosign.pub" -a env=dev && die "verify -a env=dev passed"
  grep -q 'env' "$WORK/e" || die "annotation mismatch message does not name the annotation"

  openssl_verify_sig "$host" "$repo" "$da"

  # wrong key: exit 1
  (cd "$WORK" && BERTH_PASSWORD=other "$BERTH" keygen --output-key-prefix other) || die "second keygen"
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:a" --key "$WORK/other.pub"
  expect_eq "$?" 1 "exit status of verify with the wrong key"
  grep -qi 'does not verify' "$WORK/e" || die "wrong key: message does not say the signature does not verify"

  # a signature for another digest: image a's .sig manifest copied to b's tag
  manifest_at "$host" "$repo" "sha256-${da#sha256:}.sig" >"$WORK/a.sig.json"
  put_manifest "$host" "$repo" "sha256-${db#sha256:}.sig" "$WORK/a.sig.json" || die "cannot copy the .sig manifest to b's tag"
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:b" --key "$WORK/cosign.pub"
  expect_eq "$?" 1 "exit status of verify with a signature made for another digest"
  grep -q "signature is for $da" "$WORK/e" || die "moved signature: message does not name the digest it was made for"

  # tampered payload: same signature annotation over an edited payload
  jq -c '.critical.identity["docker-reference"] = "evil.example/x"' "$WORK/payload.json" >"$WORK/evil-payload.json"
  local ed m
  ed=$(put_blob "$host" "$repo" "$WORK/evil-payload.json") || die "upload of the tampered payload"
  jq -c --arg d "$ed" --argjson s "$(stat -c %s "$WORK/evil-payload.json")" \
    '.layers[0].digest = $d | .layers[0].size = $s' "$WORK/sig-manifest.json" >"$WORK/evil-sig.json"
  put_manifest "$host" "$repo" "sha256-${db#sha256:}.sig" "$WORK/evil-sig.json" || die "cannot push the tampered .sig manifest"
  berth_out "$WORK/o" "$WORK/e" verify "$host/$repo:b" --key "$WORK/cosign.pub"
  expect_eq "$?" 1 "exit status of verify with a tampered payload"
  grep -qi 'does not verify' "$WORK/e" || die "tampered payload: message does not say the signature does not verify"

  # tree shows both places
  berth_out "$WORK/o" "$WORK/e" tree "$host/$repo:a" -o json || die "berth tree failed"
  expect_eq "$(jq -r '.tags[] | select(.kind == "signatures") | .tag' "$WORK/o")" "sha256-${da#sha256:}.sig" "tree: signature tag"
  expect_eq "$(jq -r '[.referrers[] | select(.artifactType | test("sig"))] | length' "$WORK/o")" 1 "tree: signature referrers"
  berth_out "$WORK/o" "$WORK/e" tree "$host/$repo:a" || die "berth tree (text) failed"
  grep -q 'signatures (tag sha256-' "$WORK/o" || die "tree text does not show the signature tag"
}

test_supply_sign_verify() {
  sign_verify_suite "$(reg)" supply/sig
}
register supply-sign-verify test_supply_sign_verify

test_berth_dist_supply_sign_verify() {
  need_dist2
  sign_verify_suite "$DIST2" supply/sig
  # Distribution has no referrers API: the referrer is listed in the referrers tag schema.
  local da
  da=$(layout_digest "$IMAGES" amd64)
  manifest_at "$DIST2" supply/sig "sha256-${da#sha256:}" >"$WORK/fallback.json" || die "no referrers tag schema index on Distribution"
  expect_eq "$(jq -r '.manifests | length' "$WORK/fallback.json")" 1 "entries in the referrers tag schema index"
}
register berth-dist-supply-sign-verify test_berth_dist_supply_sign_verify

test_supply_sign_recursive() {
  supply_keys
  berth_ push --all-platforms "oci:$IMAGES:multi" "$(reg)/supply/idx:multi" || die "push index"
  berth_ sign "$(reg)/supply/idx:multi" --key "$WORK/cosign.key" --recursive --scheme tag || die "sign --recursive"
  local c
  berth_ verify "$(reg)/supply/idx:multi" --key "$WORK/cosign.pub" || die "index signature does not verify"
  for c in $(jq -r '.manifests[].digest' "$(blob_path "$IMAGES" "$(layout_digest "$IMAGES" multi)")"); do
    berth_ verify "$(reg)/supply/idx@$c" --key "$WORK/cosign.pub" || die "child $c not signed by --recursive"
  done
}
register supply-sign-recursive test_supply_sign_recursive

# dsse_verify_python ENVELOPE PUBKEY: securesystemslib (the in-toto project's library)
# verifies the DSSE envelope; prints the statement's predicateType.
dsse_verify_python() {
  python3 - "$1" "$2" <<'EOF'
import json, sys, base64
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
env = json.load(open(sys.argv[1]))
pem = open(sys.argv[2]).read()
# securesystemslib only tries keys whose keyid equals the signature's; cosign (and
# berth) write keyid "", so the key is given that id.
keyid = env["signatures"][0].get("keyid", "")
key = SSlibKey(keyid, "ecdsa", "ecdsa-sha2-nistp256", {"public": pem})
e = Envelope.from_dict(env)
e.verify([key], 1)
stmt = json.loads(e.payload)
assert stmt["_type"] == "https://in-toto.io/Statement/v1", stmt["_type"]
print(stmt["predicateType"])
EOF
}

test_supply_attest() {
  supply_keys
  berth_ push "oci:$IMAGES:amd64" "$(reg)/supply/att:a" || die "push"
  local da
  da=$(layout_digest "$IMAGES" amd64)
  cat >"$WORK/provenance.json" <<'EOF'
{"builder": {"id": "https://example.invalid/berth-ci"}, "buildType": "https://example.invalid/test@v1",
 "invocation": {"configSource": {"uri": "git+https://example.invalid/repo", "digest": {"sha1": "0123456789abcdef0123456789abcdef01234567"}}}}
EOF
  berth_ attest "$(reg)/supply/att:a" --predicate "$WORK/provenance.json" --type slsaprovenance --key "$WORK/cosign.key" \
    || die "berth attest failed"
  berth_out "$WORK/o" "$WORK/e" verify-attestation "$(reg)/supply/att:a" --key "$WORK/cosign.pub" --type slsaprovenance -o json \
    || die "verify-attestation failed"
  expect_eq "$(jq -r '.verified[0].predicateType' "$WORK/o")" https://slsa.dev/provenance/v0.2 "predicate type"
  expect_eq "$(jq -S -c '.verified[0].predicate' "$WORK/o")" "$(jq -S -c . "$WORK/provenance.json")" "verified predicate"
  expect_eq "$(jq -r '.verified[0].statement.subject[0].digest.sha256' "$WORK/o")" "${da#sha256:}" "statement subject digest"
  # another type: nothing verifies
  berth_out "$WORK/o" "$WORK/e" verify-attestation "$(reg)/supply/att:a" --key "$WORK/cosign.pub" --type cyclonedx
  expect_eq "$?" 1 "exit status of verify-attestation for a type never attested"
  # wrong key
  (cd "$WORK" && BERTH_PASSWORD=x "$BERTH" keygen --output-key-prefix other) || die "second keygen"
  berth_out "$WORK/o" "$WORK/e" verify-attestation "$(reg)/supply/att:a" --key "$WORK/other.pub"
  expect_eq "$?" 1 "exit status of verify-attestation with the wrong key"
  # independent DSSE verification of the stored envelope (tag scheme)
  manifest_at "$(reg)" supply/att "sha256-${da#sha256:}.att" >"$WORK/att.json" || die "no .att manifest"
  expect_eq "$(jq -r '.layers[0].mediaType' "$WORK/att.json")" application/vnd.dsse.envelope.v1+json ".att layer media type"
  blob_at "$(reg)" supply/att "$(jq -r '.layers[0].digest' "$WORK/att.json")" >"$WORK/envelope.json" || die "fetch envelope"
  local pt
  pt=$(dsse_verify_python "$WORK/envelope.json" "$WORK/cosign.pub" 2>"$WORK/py.err") \
    || die "securesystemslib does not verify berth's DSSE envelope: $(tail -n 3 "$WORK/py.err")"
  expect_eq "$pt" https://slsa.dev/provenance/v0.2 "predicateType securesystemslib read"
  # tampered envelope payload: securesystemslib and berth both refuse it
  jq -c '.payload = (.payload | @base64d | fromjson | .predicate.builder.id = "evil" | tojson | @base64)' \
    "$WORK/envelope.json" >"$WORK/evil-env.json"
  dsse_verify_python "$WORK/evil-env.json" "$WORK/cosign.pub" >/dev/null 2>&1 && die "securesystemslib verifies a tampered envelope"
  true
}
register supply-attest test_supply_attest

# Bad input: each a clear message naming the file or the problem, exit 2, and nothing
# stored in the registry.
test_supply_bad_input() {
  supply_keys
  berth_ push "oci:$IMAGES:amd64" "$(reg)/supply/bad:a" || die "push"
  local da
  da=$(layout_digest "$IMAGES" amd64)
  BERTH_PASSWORD=wrong berth_out "$WORK/o" "$WORK/e" sign "$(reg)/supply/bad:a" --key "$WORK/cosign.key"
  expect_eq "$?" 2 "exit status of sign with the wrong password"
  grep -q 'wrong password' "$WORK/e" || die "wrong password: message does not say so"
  berth_out "$WORK/o" "$WORK/e" sign "$(reg)/supply/bad:a" --key "$WORK/missing.key"
  expect_eq "$?" 2 "exit status of sign with a missing key file"
  grep -q 'missing.key' "$WORK/e" || die "missing key: message does not name the file"
  berth_out "$WORK/o" "$WORK/e" verify "$(reg)/supply/bad:a" --key "$WORK/cosign.key"
  expect_eq "$?" 2 "exit status of verify given the private key"
  grep -qi 'public key' "$WORK/e" || die "private key given to verify: message does not ask for a public key"
  echo 'not json' >"$WORK/pred.txt"
  berth_out "$WORK/o" "$WORK/e" attest "$(reg)/supply/bad:a" --predicate "$WORK/pred.txt" --key "$WORK/cosign.key"
  expect_eq "$?" 2 "exit status of attest with a predicate that is not JSON"
  grep -q 'pred.txt: not JSON' "$WORK/e" || die "bad predicate: message does not name the file"
  berth_out "$WORK/o" "$WORK/e" attest "$(reg)/supply/bad:a" --predicate "$WORK/cosign.pub" --type nonsense --key "$WORK/cosign.key"
  expect_eq "$?" 2 "exit status of attest with an unknown predicate type"
  # nothing was stored by any of these
  expect_eq "$(http_status GET "/v2/supply/bad/manifests/sha256-${da#sha256:}.sig" -H "Accept: $ACCEPT_ALL")" 404 ".sig after failed signs"
  expect_eq "$(http_status GET "/v2/supply/bad/manifests/sha256-${da#sha256:}.att" -H "Accept: $ACCEPT_ALL")" 404 ".att after failed attests"
  # a layer whose bytes do not match its digest fails the SBOM, naming the layer
  local l=$WORK/oci lay
  cp -a "$IMAGES" "$l"
  lay=$(jq -r '.layers[0].digest' "$(blob_path "$l" "$da")")
  chmod u+w "$(blob_path "$l" "$lay")"
  printf 'x' | dd of="$(blob_path "$l" "$lay")" bs=1 seek=100 conv=notrunc 2>/dev/null
  berth_out "$WORK/o" "$WORK/e" sbom "oci:$l:amd64"
  expect_eq "$?" 1 "exit status of sbom over a corrupt layer"
  grep -q "$lay" "$WORK/e" || die "corrupt layer: message does not name the layer digest"
  [ -s "$WORK/o" ] && die "an SBOM was printed for an image with a corrupt layer"
  true
}
register supply-bad-input test_supply_bad_input

# ---- SBOMs --------------------------------------------------------------------------------

# image_from_root LAYOUT TAG ROOTDIR: an image whose single layer is ROOTDIR.
image_from_root() {
  local layout=$1 tag=$2 root=$3 b=$WORK/bundle-$2
  [ -d "$layout" ] || run umoci init --layout "$layout" || return 1
  run umoci new --image "$layout:$tag" || return 1
  run umoci unpack --image "$layout:$tag" "$b" || return 1
  cp -a "$root/." "$b/rootfs/" || return 1
  run umoci repack --image "$layout:$tag" "$b" || return 1
  run umoci config --image "$layout:$tag" --os linux --architecture "$NATIVE" || return 1
  rm -rf "$b"
}

validate_spdx() {
  run pyspdxtools -i "$1" >"$WORK/pyspdx.out" 2>&1 || die "pyspdxtools rejects $1: $(tail -n 5 "$WORK/pyspdx.out")"
}

validate_cyclonedx() {
  python3 - "$1" >"$WORK/cdx.out" 2>&1 <<'EOF' || die "cyclonedx-python-lib rejects $1: $(tail -n 5 "$WORK/cdx.out")"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if err:
    print(err); sys.exit(1)
EOF
}

test_supply_sbom_debian() {
  command -v debootstrap >/dev/null || die "debootstrap not installed"
  local root=$WORK/root mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  timeout 900 debootstrap --variant=minbase bookworm "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed: $(tail -n 3 "$WORK/debootstrap.log")"
  dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${db:Status-Abbrev}|${Package} ${Version}\n' \
    | awk -F'|' '$1 ~ /^ii/ {print $2}' | sort >"$WORK/dpkg.txt"
  [ "$(wc -l <"$WORK/dpkg.txt")" -gt 50 ] || die "debootstrap root lists too few packages"
  rm -rf "$root/dev" && mkdir "$root/dev"
  image_from_root "$WORK/oci" deb "$root" || die "building the Debian image"

  berth_out "$WORK/sbom.spdx.json" "$WORK/e" sbom "oci:$WORK/oci:deb" --format spdx-json || die "berth sbom (spdx) failed"
  validate_spdx "$WORK/sbom.spdx.json"
  jq -r '.packages[] | select(any(.externalRefs[]?; .referenceLocator | startswith("pkg:deb/"))) | "\(.name) \(.versionInfo)"' \
    "$WORK/sbom.spdx.json" | sort >"$WORK/spdx-deb.txt"
  diff "$WORK/dpkg.txt" "$WORK/spdx-deb.txt" >"$WORK/diff.txt" || die "SPDX packages differ from dpkg-query: $(head -n 10 "$WORK/diff.txt" | tr '\n' ' ')"
  jq -r '.packages[].externalRefs[]?.referenceLocator' "$WORK/sbom.spdx.json" | grep_all '^pkg:deb/debian/.*distro=debian-12' \
    || die "deb purls do not name the distro (debian-12)"

  berth_out "$WORK/sbom.cdx.json" "$WORK/e" sbom "oci:$WORK/oci:deb" --format cyclonedx-json || die "berth sbom (cyclonedx) failed"
  validate_cyclonedx "$WORK/sbom.cdx.json"
  jq -r '.components[] | select(.purl // "" | startswith("pkg:deb/")) | "\(.name) \(.version)"' "$WORK/sbom.cdx.json" \
    | sort >"$WORK/cdx-deb.txt"
  diff "$WORK/dpkg.txt" "$WORK/cdx-deb.txt" >"$WORK/diff.txt" || die "CycloneDX packages differ from dpkg-query: $(head -n 10 "$WORK/diff.txt" | tr '\n' ' ')"

  # the same image through the registry: layers streamed over HTTP give the same list
  berth_ push "oci:$WORK/oci:deb" "$(reg)/supply/debian:12" || die "push the Debian image"
  berth_out "$WORK/reg.spdx.json" "$WORK/e" sbom "$(reg)/supply/debian:12" || die "berth sbom from the registry failed"
  jq -r '.packages[] | select(any(.externalRefs[]?; .referenceLocator | startswith("pkg:deb/"))) | "\(.name) \(.versionInfo)"' \
    "$WORK/reg.spdx.json" | sort >"$WORK/reg-deb.txt"
  diff "$WORK/dpkg.txt" "$WORK/reg-deb.txt" >/dev/null || die "SBOM from the registry differs from dpkg-query"
}
register supply-sbom-debian test_supply_sbom_debian

test_supply_sbom_python_npm_whiteouts() {
  command -v npm >/dev/null || die "npm not installed"
  local site=usr/lib/python3/site-packages l=$WORK/oci b=$WORK/bundle
  run umoci init --layout "$l" || die "umoci init"
  build_image "$l" base "$NATIVE" "$WORK" || die "base image"
  # layer 2: pip and npm packages
  run umoci unpack --image "$l:base" "$b" || die "unpack"
  run pip install --quiet --no-deps --target "$b/rootfs/$site" six==1.16.0 attrs==23.2.0 idna==3.7 \
    || die "pip install"
  mkdir -p "$b/rootfs/app"
  echo '{"name": "app", "version": "1.0.0", "private": true}' >"$b/rootfs/app/package.json"
  (cd "$b/rootfs/app" && run npm install --silent --no-audit --no-fund is-number@7.0.0 @sindresorhus/is@4.6.0 ms@2.1.3) \
    || die "npm install"
  run umoci repack --image "$l:pkgs" "$b" || die "repack pkgs"
  # what pip and npm say is there
  python3 -m pip list --path "$b/rootfs/$site" --format json \
    | jq -r '.[] | "\(.name | ascii_downcase) \(.version)"' | sort >"$WORK/pip.txt"
  [ "$(wc -l <"$WORK/pip.txt")" -eq 3 ] || die "pip lists $(wc -l <"$WORK/pip.txt") packages, expected 3"
  (cd "$b/rootfs/app" && npm ls --all --json) \
    | jq -r '.. | objects | select(has("dependencies")) | .dependencies | to_entries[] | "\(.key) \(.value.version)"' \
    | sort -u >"$WORK/npm.txt"
  [ "$(wc -l <"$WORK/npm.txt")" -ge 3 ] || die "npm lists too few packages"
  # layer 3: remove six and is-number (umoci writes whiteouts)
  rm -rf "$b/rootfs/$site"/six-1.16.0.dist-info "$b/rootfs/$site/six.py" "$b/rootfs/app/node_modules/is-number"
  run umoci repack --image "$l:removed" "$b" || die "repack removed"
  rm -rf "$b"

  berth_out "$WORK/pkgs.spdx.json" "$WORK/e" sbom "oci:$l:pkgs" || die "berth sbom pkgs"
  validate_spdx "$WORK/pkgs.spdx.json"
  jq -r '.packages[] | select(any(.externalRefs[]?; .referenceLocator | startswith("pkg:pypi/"))) | "\(.name | ascii_downcase) \(.versionInfo)"' \
    "$WORK/pkgs.spdx.json" | sort >"$WORK/sbom-pip.txt"
  diff "$WORK/pip.txt" "$WORK/sbom-pip.txt" >"$WORK/d" || die "Python packages differ from pip list: $(tr '\n' ' ' <"$WORK/d")"
  jq -r '.packages[] | select(any(.externalRefs[]?; .referenceLocator | startswith("pkg:npm/"))) | "\(.name) \(.versionInfo)"' \
    "$WORK/pkgs.spdx.json" | sort -u >"$WORK/sbom-npm.txt"
  diff "$WORK/npm.txt" "$WORK/sbom-npm.txt" >"$WORK/d" || die "npm packages differ from npm ls: $(tr '\n' ' ' <"$WORK/d")"
  jq -r '.packages[].externalRefs[]?.referenceLocator' "$WORK/pkgs.spdx.json" | grep_all -x 'pkg:npm/%40sindresorhus/is@4.6.0' \
    || die "scoped npm purl missing or not encoded (pkg:npm/%40sindresorhus/is@4.6.0)"

  berth_out "$WORK/rm.cdx.json" "$WORK/e" sbom "oci:$l:removed" --format cyclonedx-json || die "berth sbom removed"
  validate_cyclonedx "$WORK/rm.cdx.json"
  jq -r '.components[].purl' "$WORK/rm.cdx.json" >"$WORK/rm-purls.txt"
  grep -q '^pkg:pypi/six@' "$WORK/rm-purls.txt" && die "six was removed by a whiteout but is in the SBOM"
  grep -q '^pkg:npm/is-number@' "$WORK/rm-purls.txt" && die "is-number was removed by a whiteout but is in the SBOM"
  grep -q '^pkg:pypi/attrs@23.2.0' "$WORK/rm-purls.txt" || die "attrs (not removed) is missing after the whiteout layer"
  grep -q '^pkg:npm/ms@2.1.3' "$WORK/rm-purls.txt" || die "ms (not removed) is missing after the whiteout layer"
  # the layer each package came from is recorded
  local l2
  l2=$(jq -r '.layers[1].digest' "$(blob_path "$l" "$(layout_digest "$l" removed)")")
  expect_eq "$(jq -r '.components[] | select(.name == "attrs") | .properties[] | select(.name == "berth:layer") | .value' "$WORK/rm.cdx.json")" \
    "$l2" "layer recorded for attrs"
}
register supply-sbom-python-npm-whiteouts test_supply_sbom_python_npm_whiteouts

# A real Go binary (Debian's golang-go, no network: a local module replacement stands
# in for a dependency): its embedded build info gives the main module, the dependency
# and the Go version.
test_supply_sbom_go() {
  command -v go >/dev/null || die "go not installed (golang-go)"
  local src=$WORK/src root=$WORK/root
  mkdir -p "$src/app" "$src/dep" "$root/usr/local/bin"
  printf 'module example.com/dep\n\ngo 1.19\n' >"$src/dep/go.mod"
  printf 'package dep\n\nfunc Hello() string { return "hello" }\n' >"$src/dep/dep.go"
  printf 'module example.com/berthapp\n\ngo 1.19\n\nrequire example.com/dep v1.2.3\n\nreplace example.com/dep v1.2.3 => ../dep\n' >"$src/app/go.mod"
  printf 'package main\n\nimport "example.com/dep"\n\nfunc main() { println(dep.Hello()) }\n' >"$src/app/main.go"
  (cd "$src/app" && GOCACHE=$WORK/gocache GOPATH=$WORK/gopath GOFLAGS=-mod=mod GOPROXY=off CGO_ENABLED=0 \
    run go build -o "$root/usr/local/bin/berthapp" .) || die "go build"
  local gov
  gov=$(go version | awk '{print $3}')
  go version -m "$root/usr/local/bin/berthapp" >&2
  image_from_root "$WORK/oci" go "$root" || die "building the image"
  berth_out "$WORK/go.cdx.json" "$WORK/e" sbom "oci:$WORK/oci:go" --format cyclonedx-json || die "berth sbom"
  validate_cyclonedx "$WORK/go.cdx.json"
  jq -r '.components[].purl' "$WORK/go.cdx.json" >"$WORK/purls.txt"
  grep -q '^pkg:golang/example.com/berthapp' "$WORK/purls.txt" || die "main module example.com/berthapp not found"
  grep -q '^pkg:golang/example.com/dep' "$WORK/purls.txt" || die "dependency example.com/dep not found"
  grep -qx "pkg:golang/stdlib@${gov#go}" "$WORK/purls.txt" || die "stdlib ${gov#go} not found: $(tr '\n' ' ' <"$WORK/purls.txt")"
  expect_eq "$(jq -r '.components[] | select(.name == "example.com/dep") | .properties[] | select(.name == "berth:location") | .value' "$WORK/go.cdx.json")" \
    usr/local/bin/berthapp "location recorded for the Go dependency"
}
register supply-sbom-go test_supply_sbom_go

# metric_value NAME: the value of an unlabelled series on berth's /metrics (0 if absent).
metric_value() {
  curl -s -m 10 "http://$(reg)/metrics" | awk -v n="$1" '$1 == n {printf "%d\n", $2; f=1} END {if (!f) print 0}'
}

# A real cargo-auditable binary (cargo-auditable from crates.io, installed by
# install-deps.sh) with one dependency, and the crate's Cargo.lock beside it: both are
# catalogued, each with its own location.
test_supply_sbom_rust() {
  command -v cargo-auditable >/dev/null || die "cargo-auditable not installed"
  local src=$WORK/src root=$WORK/root
  mkdir -p "$src/src" "$root/usr/local/bin" "$root/app"
  printf '[package]\nname = "berthdemo"\nversion = "0.3.1"\nedition = "2021"\n\n[dependencies]\nitoa = "=1.0.11"\n\n[workspace]\n' >"$src/Cargo.toml"
  printf 'fn main() { println!("{}", itoa::Buffer::new().format(42)); }\n' >"$src/src/main.rs"
  (cd "$src" && CARGO_TARGET_DIR=$WORK/target run cargo auditable build --release --quiet) || die "cargo auditable build"
  cp "$WORK/target/release/berthdemo" "$root/usr/local/bin/" && cp "$src/Cargo.lock" "$root/app/" || die "copy"
  image_from_root "$WORK/oci" rust "$root" || die "building the image"
  berth_out "$WORK/rust.spdx.json" "$WORK/e" sbom "oci:$WORK/oci:rust" || die "berth sbom"
  validate_spdx "$WORK/rust.spdx.json"
  berth_out "$WORK/rust.cdx.json" "$WORK/e" sbom "oci:$WORK/oci:rust" --format cyclonedx-json || die "berth sbom (cyclonedx)"
  validate_cyclonedx "$WORK/rust.cdx.json"
  jq -r '.components[] | select(.purl == "pkg:cargo/itoa@1.0.11") | .properties[] | select(.name == "berth:location") | .value' \
    "$WORK/rust.cdx.json" | sort >"$WORK/itoa-locations.txt"
  expect_eq "$(tr '\n' ' ' <"$WORK/itoa-locations.txt")" "app/Cargo.lock usr/local/bin/berthdemo " "where itoa 1.0.11 was found"
  jq -r '.components[].purl' "$WORK/rust.cdx.json" | grep_all -x 'pkg:cargo/berthdemo@0.3.1' || die "the binary's own crate is missing"
}
register supply-sbom-rust test_supply_sbom_rust

test_supply_sbom_attach_tree() {
  supply_keys
  local l=$WORK/oci b=$WORK/bundle site=usr/lib/python3/site-packages
  run umoci init --layout "$l" || die "umoci init"
  build_image "$l" base "$NATIVE" "$WORK" || die "base image"
  run umoci unpack --image "$l:base" "$b" || die "unpack"
  run pip install --quiet --no-deps --target "$b/rootfs/$site" six==1.16.0 || die "pip install"
  run umoci repack --image "$l:py" "$b" || die "repack"
  berth_ push "oci:$l:py" "$(reg)/supply/tree:py" || die "push"
  local d s0 g0
  d=$(layout_digest "$l" py)
  s0=$(metric_value berth_images_with_sbom)
  g0=$(metric_value berth_images_signed)
  berth_out "$WORK/o" "$WORK/e" sbom "$(reg)/supply/tree:py" --format spdx-json --attach --key "$WORK/cosign.key" \
    || die "berth sbom --attach --key failed"
  berth_ sign "$(reg)/supply/tree:py" --key "$WORK/cosign.key" || die "sign"
  if [ "$REGISTRY_UNDER_TEST" = berth ]; then
    # M6 and M5 (docs/metrics.md) count what berth attached
    expect_eq "$(metric_value berth_images_with_sbom)" "$((s0 + 1))" "berth_images_with_sbom after sbom --attach"
    expect_eq "$(metric_value berth_images_signed)" "$((g0 + 1))" "berth_images_signed after sign"
  fi
  berth_out "$WORK/t" "$WORK/e" tree "$(reg)/supply/tree:py" -o json || die "berth tree"
  expect_eq "$(jq -r '[.referrers[] | select(.artifactType == "application/spdx+json")] | length' "$WORK/t")" 1 "SPDX referrers in tree"
  expect_eq "$(jq -r '[.tags[] | select(.kind == "attestations")] | length' "$WORK/t")" 1 "attestation tag in tree"
  # the attached SBOM is the one printed
  local sd
  sd=$(jq -r '.referrers[] | select(.artifactType == "application/spdx+json") | .layers[0].digest' "$WORK/t")
  blob_at "$(reg)" supply/tree "$sd" >"$WORK/attached.json" || die "fetch attached SBOM"
  expect_eq "$(sha256_of "$WORK/attached.json")" "$(sha256_of "$WORK/o")" "attached SBOM bytes vs printed"
  berth_out "$WORK/v" "$WORK/e" verify-attestation "$(reg)/supply/tree:py" --key "$WORK/cosign.pub" --type spdx -o json \
    || die "verify-attestation --type spdx failed"
  expect_eq "$(jq -r '.verified[0].predicate.spdxVersion' "$WORK/v")" SPDX-2.3 "SBOM attestation predicate"
  jq -r '.verified[0].predicate.packages[].name' "$WORK/v" | grep_all -x six || die "six missing from the attested SBOM"
  # referrers API lists it with its artifact type
  berth_out "$WORK/r" "$WORK/e" referrers "$(reg)/supply/tree@$d" --artifact-type application/spdx+json -o json || die "berth referrers"
  grep -q 'application/spdx+json' "$WORK/r" || die "referrers does not list the SBOM"
}
register supply-sbom-attach-tree test_supply_sbom_attach_tree
