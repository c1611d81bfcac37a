#!/usr/bin/env bash
# berth's one test command, run by people and by CI (.ci/run) alike.
# On a fresh machine it first installs what the tests need (Debian packages: skopeo,
# podman, docker.io, umoci, busybox-static, …), then runs, in order:
#   formatting and clippy checks, every cargo test (unit, in-process API,
#   crash-safety, concurrency), the Prometheus rules' checks and unit tests
#   (deploy/check.sh, promtool), the real-client tests (skopeo, podman, docker,
#   umoci) against a spawned `berth serve`, and a smoke run of the benchmark harness
#   (benches/compare.sh --smoke: tiny sizes, proves the script works; timings never
#   fail it) and of the two-build comparison (benches/ab.sh, two pairs of 4 MiB pushes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
bash tests/clients/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build"
cargo build --workspace --locked

step "cargo test"
cargo test --workspace --locked

step "prometheus rules and grafana dashboards (promtool)"
bash deploy/check.sh

step "real clients against berth serve"
BERTH_BIN="$PWD/target/debug/berth" bash tests/clients/run.sh

step "benchmark harness smoke run"
bash benches/compare.sh --smoke --berth target/debug/berth --skip-build

step "A/B harness smoke run"
bash benches/ab.sh --pairs 2 --size 4MiB target/debug/berth target/debug/berth
