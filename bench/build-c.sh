#!/usr/bin/env bash
# Builds the bench's C programs with the host's gcc into .vm/bench-build/ (git-ignored):
# dmraw (bare ioctls), dmlayers (the storage driver's layer cycle, bare system calls) and dmlib
# (libdevmapper). libdevmapper's headers come from Debian's
# libdevmapper-dev, fetched with `apt-get download` into a cache folder and unpacked there,
# never installed; the program links the host's libdevmapper.so.1.02.1 (fetched too if absent).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
project=$(cd "$here/.." && pwd -P)
out=$project/.vm/bench-build
cache=${DEVMAPPER_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/devmapper-bench}
mkdir -p "$out" "$cache"

command -v gcc >/dev/null || { echo "bench: gcc is needed to build bench/c/*.c" >&2; exit 1; }

apt_download() { # PKG... into the current folder; refresh stale package lists once
  apt-get download "$@" >download.log 2>&1 && return
  echo "bench: apt-get download $* failed; running apt-get update" >&2
  if ((EUID == 0)); then apt-get update -qq >&2 || true; else sudo -n apt-get update -qq >&2 || true; fi
  apt-get download "$@" >download.log 2>&1 || { cat download.log >&2; exit 1; }
}

# Unpacked packages: $cache/root (headers, and the .so when the host has none).
if [[ ! -f $cache/root/usr/include/libdevmapper.h ]]; then
  pkgs=(libdevmapper-dev)
  ldconfig -p 2>/dev/null | grep -q 'libdevmapper\.so\.1\.02\.1 ' || pkgs+=(libdevmapper1.02.1)
  echo "bench: fetching ${pkgs[*]} into $cache (first run only)" >&2
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  (cd "$tmp" && apt_download "${pkgs[@]}" && mkdir root && for d in ./*.deb; do dpkg-deb -x "$d" root; done)
  rm -rf "$cache/root" && mv "$tmp/root" "$cache/root" && rm -rf "$tmp"
fi

cflags=(-O2 -Wall -Wextra -Werror)
build() { # OUT SRC ARGS...: rebuild when the source is newer
  local bin=$1 src=$2; shift 2
  [[ -x $bin && $bin -nt $src && $bin -nt $here/c/bench.h ]] || gcc "${cflags[@]}" -o "$bin" "$src" "$@"
}
build "$out/dmraw" "$here/c/dmraw.c"
build "$out/dmlayers" "$here/c/dmlayers.c"
libdirs=()
for d in "$cache/root/lib/x86_64-linux-gnu" "$cache/root/usr/lib/x86_64-linux-gnu"; do
  [[ -e $d/libdevmapper.so.1.02.1 ]] && libdirs+=(-L "$d" "-Wl,-rpath,$d")
done
build "$out/dmlib" "$here/c/dmlib.c" -I "$cache/root/usr/include" "${libdirs[@]}" -l:libdevmapper.so.1.02.1
echo "bench: built $out/dmraw $out/dmlayers $out/dmlib" >&2
