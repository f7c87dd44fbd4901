#!/usr/bin/env bash
# Refetches the Envoy API protos that test/deploy/envoy-schema.test.ts decodes our Envoy files
# against, at the commits below, and vendors their import closure into test/vendor/envoy-api/.
# Needs git and node. Each repository is read from $MIRROR/<owner>+<name>/repo when that git dir
# exists (a local bare mirror), else cloned from GitHub. Bump a commit, rerun, run the test.
set -euo pipefail

DATA_PLANE_API=84e84367f2560cdb47b9bb78fd3e615feb80c3e4   # envoyproxy/data-plane-api
XDS=5cf4b19495289a9e992ce5e2c3ffb08f2cf387be              # cncf/xds
PGV=92b9a7df69ca9f71bfc492f7a90adf4d36eab569              # bufbuild/protoc-gen-validate
GOOGLEAPIS=f8291d2b89f0017ab078a4c7378069bae5686f6f       # googleapis/googleapis
PROTOBUF=e712d276bcead35cad45e305463f5e542246351e         # protocolbuffers/protobuf

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENDOR="$ROOT/test/vendor/envoy-api"
MIRROR="${MIRROR:-}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tree"

# extract <owner/name> <commit> <path in repo> <path in tree>
extract() {
  local repo="$1" commit="$2" from="$3" to="$4" gitdir="$WORK/${1//\//+}.git"
  if [ -n "$MIRROR" ] && [ -d "$MIRROR/${repo//\//+}/repo" ]; then
    gitdir="$MIRROR/${repo//\//+}/repo"
  elif [ ! -d "$gitdir" ]; then
    git init -q --bare "$gitdir"
    git --git-dir="$gitdir" fetch -q --depth 1 "https://github.com/$repo" "$commit"
  fi
  mkdir -p "$WORK/tree/$to"
  git --git-dir="$gitdir" archive "$commit" "$from" | tar -x -C "$WORK/tree/$to" --strip-components="$(tr -cd / <<<"$from/" | wc -c)"
}

extract envoyproxy/data-plane-api "$DATA_PLANE_API" envoy envoy
extract cncf/xds "$XDS" xds xds
extract cncf/xds "$XDS" udpa udpa
extract bufbuild/protoc-gen-validate "$PGV" validate validate
extract googleapis/googleapis "$GOOGLEAPIS" google/api google/api
extract googleapis/googleapis "$GOOGLEAPIS" google/rpc google/rpc
extract protocolbuffers/protobuf "$PROTOBUF" src/google/protobuf google/protobuf

mkdir -p "$VENDOR"
node "$ROOT/scripts/envoy-proto-closure.mjs" "$WORK/tree" "$VENDOR"
cat >"$VENDOR/COMMITS.txt" <<COMMITS
envoyproxy/data-plane-api $DATA_PLANE_API
cncf/xds $XDS
bufbuild/protoc-gen-validate $PGV
googleapis/googleapis $GOOGLEAPIS
protocolbuffers/protobuf $PROTOBUF
COMMITS
