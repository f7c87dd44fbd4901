#!/usr/bin/env bash
# Refetches the Envoy API protos that test/deploy/envoy-schema.test.ts decodes our Envoy files
# against, at the commits below, and vendors their import closure into test/vendor/envoy-api/
# (today's API) and test/vendor/envoy-api-v1.34/ (the API of the Envoy docker-compose.yml runs).
# Needs git and node. Each repository is read from $MIRROR/<owner>+<name>/repo when that git dir
# exists (a local bare mirror), else cloned from GitHub. Bump a commit, rerun, run the test.
set -euo pipefail

DATA_PLANE_API=84e84367f2560cdb47b9bb78fd3e615feb80c3e4   # envoyproxy/data-plane-api, today
# The last data-plane-api commit before Envoy v1.34.0 (2025-04-15) branched: the 1.34 API.
DATA_PLANE_API_V1_34=d9c5e84658eef279e9a021ff0517f8f8ee35d79a
XDS=5cf4b19495289a9e992ce5e2c3ffb08f2cf387be              # cncf/xds
PGV=92b9a7df69ca9f71bfc492f7a90adf4d36eab569              # bufbuild/protoc-gen-validate
GOOGLEAPIS=f8291d2b89f0017ab078a4c7378069bae5686f6f       # googleapis/googleapis
PROTOBUF=e712d276bcead35cad45e305463f5e542246351e         # protocolbuffers/protobuf

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MIRROR="${MIRROR:-}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# extract <owner/name> <commit> <path in repo> <tree> <path in tree>
extract() {
  local repo="$1" commit="$2" from="$3" tree="$4" to="$5" gitdir="$WORK/${1//\//+}.git"
  if [ -n "$MIRROR" ] && [ -d "$MIRROR/${repo//\//+}/repo" ]; then
    gitdir="$MIRROR/${repo//\//+}/repo"
  elif ! git --git-dir="$gitdir" cat-file -e "$commit^{commit}" 2>/dev/null; then
    [ -d "$gitdir" ] || git init -q --bare "$gitdir"
    git --git-dir="$gitdir" fetch -q --depth 1 "https://github.com/$repo" "$commit"
  fi
  mkdir -p "$tree/$to"
  git --git-dir="$gitdir" archive "$commit" "$from" | tar -x -C "$tree/$to" --strip-components="$(tr -cd / <<<"$from/" | wc -c)"
}

# vendor <data-plane-api commit> <vendor dir>
vendor() {
  local api="$1" vendor="$2" tree
  tree="$(mktemp -d -p "$WORK")"
  extract envoyproxy/data-plane-api "$api" envoy "$tree" envoy
  extract cncf/xds "$XDS" xds "$tree" xds
  extract cncf/xds "$XDS" udpa "$tree" udpa
  extract bufbuild/protoc-gen-validate "$PGV" validate "$tree" validate
  extract googleapis/googleapis "$GOOGLEAPIS" google/api "$tree" google/api
  extract googleapis/googleapis "$GOOGLEAPIS" google/rpc "$tree" google/rpc
  extract protocolbuffers/protobuf "$PROTOBUF" src/google/protobuf "$tree" google/protobuf
  mkdir -p "$vendor"
  node "$ROOT/scripts/envoy-proto-closure.mjs" "$tree" "$vendor"
  cat >"$vendor/COMMITS.txt" <<COMMITS
envoyproxy/data-plane-api $api
cncf/xds $XDS
bufbuild/protoc-gen-validate $PGV
googleapis/googleapis $GOOGLEAPIS
protocolbuffers/protobuf $PROTOBUF
COMMITS
}

vendor "$DATA_PLANE_API" "$ROOT/test/vendor/envoy-api"
vendor "$DATA_PLANE_API_V1_34" "$ROOT/test/vendor/envoy-api-v1.34"
