#!/usr/bin/env bash
# Checks the Prometheus rules, their unit tests and the example configuration with
# promtool (Debian package `prometheus`, installed by tests/clients/install-deps.sh).
# Run from anywhere; fails on the first error. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "deploy/check.sh: promtool not found (apt-get install prometheus)" >&2
  exit 1
fi

promtool check rules deploy/prometheus/berth-rules.yml
promtool test rules deploy/prometheus/berth-rules.test.yml
promtool check config deploy/prometheus/prometheus.yml

# Every dashboard query must be valid PromQL: write them (Grafana's variables
# replaced by values) as recording rules of a scratch file and let promtool parse it.
# Which metrics they use is checked by crates/berth-server/tests/dashboards.rs.
scratch="$(mktemp)"
trap 'rm -f "$scratch"' EXIT
jq -n '{groups: [{name: "dashboards", rules: [inputs | .. | objects | .expr? | strings
        | gsub("\\$\\{?__rate_interval\\}?"; "1m") | gsub("\\$\\{?__range\\}?"; "1d")
        | gsub("\\$\\{?job\\}?"; ".+") | {record: "dashboard:query", expr: .}]}]}' \
  deploy/grafana/*.json >"$scratch"
echo "Checking the PromQL of deploy/grafana/*.json ($(jq '.groups[0].rules | length' "$scratch") queries)"
promtool check rules --lint=none "$scratch"
