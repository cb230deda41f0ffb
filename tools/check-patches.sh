#!/usr/bin/env bash
# Fails when a `[patch]` entry of the workspace's Cargo.toml is not in the resolved crate graph.
#
#   bash tools/check-patches.sh [WORKSPACE_DIR]     (default: this repository)
#
# Cargo only warns ("patch `x` was not used in the crate graph") when a patch no longer matches
# what the graph asks for, e.g. when sea-orm moves to another sqlx: the build goes on with the
# unpatched crate and the fix the patch carries (vendor/README.md) silently disappears. This
# check makes that an error. For every entry of every `[patch.<registry>]` table it asserts that
#   - `cargo metadata --locked` resolves the graph with the committed Cargo.lock (offline when
#     the registry cache has everything, else fetching the index);
#   - the resolved graph holds the patched package from the patch's own source (its path, or its
#     git repository);
#   - Cargo.lock lists no `[[patch.unused]]` and cargo printed no "not used" warning.
# It prints, for each patch, the packages that depend on it. Needs cargo and Python 3.11+.
set -euo pipefail

ROOT="$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)"
MANIFEST="$ROOT/Cargo.toml"
[[ -f "$MANIFEST" ]] || { echo "check-patches: no Cargo.toml in $ROOT" >&2; exit 2; }

OUT="$(mktemp -d "${TMPDIR:-/tmp}/check-patches.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

metadata() {
  cargo metadata --format-version 1 --locked --manifest-path "$MANIFEST" "$@" \
    >"$OUT/metadata.json" 2>"$OUT/stderr"
}
if ! metadata --offline; then
  # Not everything is in the local registry cache (a fresh machine): let cargo fetch the index.
  if ! metadata; then
    cat "$OUT/stderr" >&2
    if grep -qi "was not used in the crate graph" "$OUT/stderr"; then
      echo "check-patches: FAILED: a [patch] is not used in the crate graph (cargo's warning above)." >&2
    fi
    echo "check-patches: FAILED: cargo cannot resolve the workspace with the committed Cargo.lock" \
      "(see above). If Cargo.lock needs updating, update it, commit it and rerun this check:" \
      "an unused [patch] shows as [[patch.unused]] there." >&2
    exit 1
  fi
fi

python3 - "$ROOT" "$OUT/metadata.json" "$OUT/stderr" <<'PY'
import json
import os
import re
import sys
import tomllib

root, metadata_path, stderr_path = sys.argv[1:4]
with open(os.path.join(root, "Cargo.toml"), "rb") as f:
    manifest = tomllib.load(f)
with open(metadata_path) as f:
    metadata = json.load(f)
with open(stderr_path) as f:
    stderr = f.read()
lock_path = os.path.join(root, "Cargo.lock")
with open(lock_path, "rb") as f:
    lock = tomllib.load(f)

packages = {p["id"]: p for p in metadata["packages"]}
resolved = {n["id"] for n in metadata["resolve"]["nodes"]}
dependents = {}
for node in metadata["resolve"]["nodes"]:
    for dep in node["deps"]:
        dependents.setdefault(dep["pkg"], set()).add(packages[node["id"]]["name"])

patches = [
    (registry, key, spec)
    for registry, table in manifest.get("patch", {}).items()
    for key, spec in table.items()
]
problems = []
for registry, key, spec in patches:
    label = f"[patch.{registry}] {key}"
    if not isinstance(spec, dict):
        problems.append(f"{label}: a patch must be a table with a path or a git source")
        continue
    name = spec.get("package", key)
    if "path" in spec:
        want = os.path.realpath(os.path.join(root, spec["path"], "Cargo.toml"))
        source = spec["path"]
        matches = lambda p: p["source"] is None and os.path.realpath(p["manifest_path"]) == want
    elif "git" in spec:
        url = spec["git"].rstrip("/").removesuffix(".git")
        source = spec["git"]
        matches = lambda p: (p["source"] or "").startswith("git+") and (
            p["source"][4:].split("?")[0].split("#")[0].rstrip("/").removesuffix(".git") == url
        )
    else:
        problems.append(f"{label}: neither path nor git: this check does not know how to find it")
        continue
    used = [
        packages[i]
        for i in resolved
        if packages[i]["name"] == name and matches(packages[i])
    ]
    if not used:
        problems.append(
            f"{label} ({source}) is not used in the resolved crate graph: what depends on "
            f"{name} now asks for a version the patch does not provide, so the unpatched crate "
            f"is built and the patch's fix is lost. Move the patch to that version (see "
            f"vendor/README.md), or delete it if a release carries the fix."
        )
        continue
    for p in used:
        users = ", ".join(sorted(dependents.get(p["id"], ()))) or "nothing (a workspace member?)"
        print(f"check-patches: ok: {label} -> {name} {p['version']} ({source}), used by {users}")

for entry in lock.get("patch", {}).get("unused", []):
    problems.append(
        f"Cargo.lock lists [[patch.unused]] {entry.get('name')} {entry.get('version', '')}: "
        f"a patch cargo resolved but did not use"
    )
for line in stderr.splitlines():
    if re.search(r"was not used in the crate graph", line, re.IGNORECASE):
        problems.append(f"cargo: {line.strip()}")

if problems:
    print("check-patches: FAILED:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
print(f"check-patches: {len(patches)} patch(es), all in the crate graph")
PY
