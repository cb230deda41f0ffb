#!/usr/bin/env bash
# Tests tools/check-patches.sh on throwaway workspaces: one binary depending on `itoa = "1"` from
# crates.io, patched by a local crate named itoa. Each case states what the check must do.
#
#   bash tools/check-patches.test.sh
set -euo pipefail

CHECK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/check-patches.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/check-patches-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
failures=0

# workspace DIR PATCH_VERSION [LOCK=fresh|before-patch]: a workspace whose [patch.crates-io]
# itoa points at a local crate of PATCH_VERSION, with Cargo.lock generated after the patch was
# added (fresh, as a developer would commit it) or before (a patch added without updating it).
workspace() {
  local dir="$1" version="$2" lock="${3:-fresh}"
  mkdir -p "$dir/app/src" "$dir/patched-itoa/src"
  printf '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nitoa = "1"\n' \
    >"$dir/app/Cargo.toml"
  echo 'fn main() { println!("{}", itoa::Buffer::new().format(1)); }' >"$dir/app/src/main.rs"
  printf '[package]\nname = "itoa"\nversion = "%s"\nedition = "2021"\n' "$version" \
    >"$dir/patched-itoa/Cargo.toml"
  echo 'pub struct Buffer;' >"$dir/patched-itoa/src/lib.rs"
  printf '[workspace]\nmembers = ["app"]\nresolver = "2"\n' >"$dir/Cargo.toml"
  [[ "$lock" == fresh ]] || lockfile "$dir"
  printf '\n[patch.crates-io]\nitoa = { path = "patched-itoa" }\n' >>"$dir/Cargo.toml"
  [[ "$lock" != fresh ]] || lockfile "$dir"
}

lockfile() {
  cargo generate-lockfile --quiet --offline --manifest-path "$1/Cargo.toml" 2>/dev/null ||
    cargo generate-lockfile --quiet --manifest-path "$1/Cargo.toml"
}

# expect pass|fail NAME DIR [TEXT]: runs the check on DIR; on fail, its output must contain TEXT.
expect() {
  local want="$1" name="$2" dir="$3" text="${4:-}" got
  if bash "$CHECK" "$dir" >"$dir.out" 2>&1; then got=pass; else got=fail; fi
  if [[ "$got" != "$want" ]]; then
    echo "FAIL $name: expected the check to $want, it did $got:"
    sed 's/^/    /' "$dir.out"
    failures=$((failures + 1))
  elif [[ -n "$text" ]] && ! grep -qF -- "$text" "$dir.out"; then
    echo "FAIL $name: the output does not say \"$text\":"
    sed 's/^/    /' "$dir.out"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

# A patch the graph uses (1.99.0 satisfies `itoa = "1"`): passes and names who uses it.
workspace "$WORK/used" 1.99.0
expect pass "a used patch passes" "$WORK/used" "itoa 1.99.0 (patched-itoa), used by app"

# The case this check exists for: what depends on the crate moved to a version the patch does not
# provide. Cargo builds the registry's crate, only warns, and records [[patch.unused]].
workspace "$WORK/unused" 0.4.99
grep -q '^\[\[patch.unused\]\]' "$WORK/unused/Cargo.lock" ||
  { echo "FAIL setup: cargo did not record [[patch.unused]] in Cargo.lock"; failures=$((failures + 1)); }
expect fail "an unused patch fails" "$WORK/unused" \
  "[patch.crates-io] itoa (patched-itoa) is not used in the resolved crate graph"
expect fail "an unused patch fails: Cargo.lock's record is named" "$WORK/unused" \
  "Cargo.lock lists [[patch.unused]] itoa 0.4.99"

# The same, with a Cargo.lock that predates the patch: cargo cannot resolve with --locked.
workspace "$WORK/stale" 0.4.99 before-patch
expect fail "an unused patch with a stale Cargo.lock fails" "$WORK/stale" \
  "a [patch] is not used in the crate graph"

if ((failures)); then
  echo "check-patches.test: $failures case(s) failed" >&2
  exit 1
fi
echo "check-patches.test: all cases passed"
