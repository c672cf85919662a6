#!/usr/bin/env bash
# The package P3 measures, as a user has it: `npm pack` of this tree, installed with
# `npm install -g --prefix .vm/bench-build/p3-prefix` (its bin/devmapper is the link npm makes to
# the package's `bin`). Packs the current build (bench/run.sh builds first); builds when dist/ is
# missing or older than src/. The dependencies come from npm's cache when it has them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
project=$(cd "$here/.." && pwd -P)
prefix=$project/.vm/bench-build/p3-prefix
cd "$project"

if [[ ! -f dist/.built || -n $(find src -newer dist/.built -print -quit) ]]; then
  echo "bench: dist/ is missing or older than src/: npm run build" >&2
  npm run --silent build >&2
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/devmapper-pack.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# --ignore-scripts: `prepare` would build again what is built.
tarball=$(npm pack --silent --ignore-scripts --pack-destination "$scratch" | tail -n1)
rm -rf "$prefix"
mkdir -p "$prefix"
npm install -g --prefix "$prefix" --prefer-offline --no-audit --no-fund --loglevel=error "$scratch/$tarball" >&2
[[ -x $prefix/bin/devmapper ]] || { echo "bench: $prefix/bin/devmapper missing after the install" >&2; exit 1; }
echo "bench: installed $tarball into $prefix" >&2
