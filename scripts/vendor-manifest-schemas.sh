#!/usr/bin/env bash
# Refetches the published schemas test/deploy/manifest-schemas.test.ts checks deploy/ and
# docker-compose.yml against, at the commits below, into test/vendor/manifest-schemas/. Only the
# kinds our files use are kept. Needs git and node (with `npm ci` done: it uses the yaml package).
# Each repository is read from $MIRROR/<owner>+<name>/repo when that git dir exists, else fetched
# from GitHub (only the files needed).
set -euo pipefail

# Kubernetes JSON schemas generated from the v1.32.2 OpenAPI by yannh/kubernetes-json-schema's
# openapi2jsonschema (the set kubeconform uses); this copy of them keeps the repository small.
K8S_REPO=redacid/k8s-json-scheme
K8S_COMMIT=200801bf30a49e61e08d34dfaab274f4922741af
K8S_DIR=v1.32.2-standalone-strict
ISTIO_COMMIT=b8f8791d9653b2edc77a071d48887e582cfe84bf        # istio/api
SCHEMASTORE_COMMIT=3b6446ad8a077bac56f4a4796c0b7fd88927fc8e  # SchemaStore/schemastore
COMPOSE_COMMIT=170098ba07d9f53c383a41bfd4c5166b0a4529a6      # compose-spec/compose-spec

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/test/vendor/manifest-schemas"
MIRROR="${MIRROR:-}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# extract <owner/name> <commit> <path in repo> <dir>
extract() {
  local repo="$1" commit="$2" from="$3" to="$4" gitdir="$WORK/${1//\//+}.git"
  if [ -n "$MIRROR" ] && [ -d "$MIRROR/${repo//\//+}/repo" ]; then
    gitdir="$MIRROR/${repo//\//+}/repo"
  elif [ ! -d "$gitdir" ]; then
    git init -q --bare "$gitdir"
    git --git-dir="$gitdir" fetch -q --depth 1 --filter=blob:none "https://github.com/$repo" "$commit"
  fi
  mkdir -p "$to"
  git --git-dir="$gitdir" archive "$commit" "$from" | tar -x -C "$to"
}

extract "$K8S_REPO" "$K8S_COMMIT" "$K8S_DIR" "$WORK/k8s"
extract istio/api "$ISTIO_COMMIT" kubernetes/customresourcedefinitions.gen.yaml "$WORK/istio"
extract SchemaStore/schemastore "$SCHEMASTORE_COMMIT" src/schemas/json/kustomization.json "$WORK/schemastore"
extract compose-spec/compose-spec "$COMPOSE_COMMIT" schema/compose-spec.json "$WORK/compose"

mkdir -p "$OUT"
(cd "$ROOT" && node scripts/manifest-schemas.mjs "$WORK/k8s/$K8S_DIR" "$WORK/istio" "$WORK/schemastore" "$WORK/compose" "$OUT")
cat >"$OUT/COMMITS.txt" <<COMMITS
$K8S_REPO $K8S_COMMIT $K8S_DIR
istio/api $ISTIO_COMMIT kubernetes/customresourcedefinitions.gen.yaml
SchemaStore/schemastore $SCHEMASTORE_COMMIT src/schemas/json/kustomization.json
compose-spec/compose-spec $COMPOSE_COMMIT schema/compose-spec.json
COMMITS
