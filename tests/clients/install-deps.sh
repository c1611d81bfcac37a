#!/usr/bin/env bash
# Install (idempotently) every Debian package the real-client tests in this
# directory need. Safe to run repeatedly; does nothing when all are present.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive

# skopeo/podman/docker/umoci are the clients under test; runc (+ conmon, pulled in by
# podman) runs images; busybox-static is the offline source of test-image content;
# docker-registry (CNCF Distribution 2.8) is the stand-in registry used with
# REGISTRY_UNDER_TEST=distribution; jq/curl/coreutils/procps/util-linux/iproute2 are
# used by the scripts themselves (jq, curl, sha256sum, timeout, pgrep, findmnt, ss);
# openssl makes the test CA and certificates of cases/60-auth-tls.sh. The benchmark
# harness (benches/compare.sh, smoke-run by scripts/test.sh) also uses docker-registry,
# openssl (`openssl speed`, the SHA-256 ceiling), jq, curl and nginx-light (nginx serving
# a static copy of the test blob: the GET ceiling). prometheus provides promtool, which
# deploy/check.sh uses to check and unit-test the alerting rules and the dashboards' PromQL
# (which metrics they use is the cargo test crates/berth-server/tests/dashboards.rs), and
# the prometheus server scrapes berth in crates/berth-cli/tests/observability.rs.
# debootstrap builds a real Debian root whose dpkg database the SBOM test
# (cases/80-supply.sh) checks berth's catalogue against; golang-go builds a real Go
# binary whose embedded build info the SBOM must read.
PKGS=(skopeo podman docker.io containerd runc conmon umoci busybox-static
      docker-registry jq curl coreutils procps util-linux iproute2
      ca-certificates golang-github-containers-common openssl nginx-light prometheus debootstrap golang-go)

# Independent validators and verifiers from PyPI (cases/80-supply.sh and the
# berth-supply tests): spdx-tools (pyspdxtools), cyclonedx-python-lib (CycloneDX 1.6
# JSON schema validation), securesystemslib and in-toto (DSSE envelopes). Pinned.
PIP_PKGS=(spdx-tools==0.8.5 "cyclonedx-python-lib[json-validation]==11.12.0"
          securesystemslib==1.6.0 in-toto==3.1.0)
if ! python3 -c 'import spdx_tools, cyclonedx.validation.json, securesystemslib.dsse, in_toto' 2>/dev/null; then
  echo "install-deps: pip installing: ${PIP_PKGS[*]}"
  python3 -m pip install -q --disable-pip-version-check "${PIP_PKGS[@]}" \
    || { echo "install-deps: pip install failed" >&2; exit 1; }
fi

# cargo-auditable (crates.io) builds the real auditable binary cases/80-supply.sh
# catalogues (~1 min to build).
if ! command -v cargo-auditable >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-auditable"
  cargo install --quiet --locked cargo-auditable --version 0.7.7 \
    || { echo "install-deps: cargo install cargo-auditable failed" >&2; exit 1; }
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi
echo "install-deps: installing: ${missing[*]}"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Only refresh the package lists if they are missing or older than a day, or if a
# package is not known to apt at all.
need_update=0
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' 2>/dev/null | head -1)" ]; then
  need_update=1
elif [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime +1 2>/dev/null | head -1)" ]; then
  need_update=1
else
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then need_update=1; break; fi
  done
fi
if [ "$need_update" -eq 1 ]; then
  $SUDO apt-get update -q || { echo "install-deps: apt-get update failed" >&2; exit 1; }
fi

$SUDO apt-get install -y -q "${missing[@]}" \
  || { echo "install-deps: apt-get install failed" >&2; exit 1; }
echo "install-deps: done"
