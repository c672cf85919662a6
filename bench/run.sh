#!/usr/bin/env bash
# npm run bench: build the library (dist/, what the CLI runs from) and the C programs, then run
# bench/main.ts where device-mapper is: directly on a host that has it (as root), else in ONE
# user-mode-linux guest boot (scripts/vm/guest-run), so that every ratio compares one boot.
#   DEVMAPPER_BENCH_SCALE=0.3   less work per round (quick look); 1 by default
#   DEVMAPPER_BENCH_ONLY=p1,p2  some parts only (codec,p1,p2,p3,p4,p5,snapshotter), written to
#                               results/partial.md; `npm run bench -- snapshotter p1` says the same
#   DEVMAPPER_BENCH_TIMEOUT=3600 seconds the guest may run
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
project=$(cd "$here/.." && pwd -P)
cd "$project"
if (($#)); then DEVMAPPER_BENCH_ONLY=$(IFS=,; echo "$*"); export DEVMAPPER_BENCH_ONLY; fi

echo "bench: npm run build" >&2
if ! npm run --silent build >&2; then
  echo "bench: WARNING: npm run build failed; P3 measures whatever dist/ holds (or tsx if none)" >&2
fi
"$here/build-c.sh"
# The snapshotter part's Go server (containerd's own snapshotters) and client, built on the host
# (the guest has no network for the toolchain's packages).
if [[ ,${DEVMAPPER_BENCH_ONLY:-snapshotter}, == *,snapshotter,* ]]; then
  for prog in server client; do
    "$project/scripts/containerd/go" build "$here/containerd/$prog" "$project/.vm/bench-build/snapshotter-$prog" ||
      echo "bench: WARNING: cannot build bench/containerd/$prog: the snapshotter part will fail" >&2
  done
fi

DEVMAPPER_BENCH_HOST_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) (start)"
DEVMAPPER_BENCH_HOST_CPU="$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1) x $(nproc)"
export DEVMAPPER_BENCH_HOST_LOAD DEVMAPPER_BENCH_HOST_CPU
cmd=(node --import tsx "$here/main.ts")
if "$project/scripts/lib/has-dm" && [[ $EUID -eq 0 ]]; then
  "${cmd[@]}"
else
  echo "bench: no device-mapper here: one user-mode-linux guest boot" >&2
  "$project/scripts/vm/guest-run" --timeout "${DEVMAPPER_BENCH_TIMEOUT:-3600}" --mem "${DEVMAPPER_BENCH_GUEST_MEM:-3G}" -- "${cmd[@]}"
fi
echo "bench: host load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
