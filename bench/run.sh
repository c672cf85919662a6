#!/usr/bin/env bash
# npm run bench: build the library (dist/, what the CLI runs from), the C programs and the installed
# package P3 measures, then run bench/main.ts where device-mapper is: directly on a host that has it
# (as root), else in user-mode-linux guest boots (scripts/vm/guest-run), one per repeat, so that
# every ratio compares programs of one boot.
#   npm run bench -- [--repeat N] [PART...]
#   --repeat N                  N boots (default 1); the figures of all boots side by side at the
#                               end (bench/boots.ts -> results/repeat.md or repeat-partial.md)
#   PART: codec p1 p2 p3 p4 p5 snapshotter (default all; on DEVMAPPER_GUEST_KERNEL=qemu: p1 p2)
#   DEVMAPPER_BENCH_SCALE=0.3   less work per round (quick look); 1 by default
#   DEVMAPPER_BENCH_ONLY=p1,p2  the same as naming parts; results/partial.md
#   DEVMAPPER_BENCH_TIMEOUT=3600 seconds a boot may run
#   DEVMAPPER_GUEST_KERNEL=qemu the QEMU/TCG guest with 2 virtual CPUs (an SMP kernel); scale 0.3
#                               unless DEVMAPPER_BENCH_SCALE says otherwise
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
project=$(cd "$here/.." && pwd -P)
cd "$project"
repeat=1
parts=()
while (($#)); do
  case $1 in
    --repeat) repeat=${2:?--repeat N}; shift 2 ;;
    --repeat=*) repeat=${1#--repeat=}; shift ;;
    -*) echo "bench: unknown option $1 (npm run bench -- [--repeat N] [PART...])" >&2; exit 2 ;;
    *) parts+=("$1"); shift ;;
  esac
done
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "bench: --repeat wants a positive count, not '$repeat'" >&2; exit 2; }
if ((${#parts[@]})); then DEVMAPPER_BENCH_ONLY=$(IFS=,; echo "${parts[*]}"); export DEVMAPPER_BENCH_ONLY; fi
if [[ ${DEVMAPPER_GUEST_KERNEL:-uml} == qemu && -z ${DEVMAPPER_BENCH_ONLY:-} ]]; then
  export DEVMAPPER_BENCH_ONLY=p1,p2 # TCG runs everything ~10x slower: the SMP picture is P1 and P2
fi
if [[ ${DEVMAPPER_GUEST_KERNEL:-uml} == qemu ]]; then
  # A snapshot cycle takes ~0.25 s there (RCU grace periods under TCG): fewer cycles a round.
  export DEVMAPPER_BENCH_SCALE=${DEVMAPPER_BENCH_SCALE:-0.3}
fi
want() { [[ -z ${DEVMAPPER_BENCH_ONLY:-} || ,$DEVMAPPER_BENCH_ONLY, == *,$1,* ]]; }

echo "bench: npm run build" >&2
if ! npm run --silent build >&2; then
  echo "bench: WARNING: npm run build failed; P3 measures whatever dist/ holds (or tsx if none)" >&2
fi
"$here/build-c.sh"
want p3 && "$here/install-package.sh"
# The snapshotter part's Go server (containerd's own snapshotters) and client, built on the host
# (the guest has no network for the toolchain's packages).
if want snapshotter; then
  for prog in server client; do
    "$project/scripts/containerd/go" build "$here/containerd/$prog" "$project/.vm/bench-build/snapshotter-$prog" ||
      echo "bench: WARNING: cannot build bench/containerd/$prog: the snapshotter part will fail" >&2
  done
fi

# P3 where the bench runs from, on its own kernel and disk (no guest running yet).
want p3 && node --import tsx "$here/p3-host.ts"

DEVMAPPER_BENCH_HOST_CPU="$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1) x $(nproc)"
export DEVMAPPER_BENCH_HOST_CPU
cmd=(node --import tsx "$here/main.ts")
results=$here/results
rm -f "$results"/boots/boot-*.json
for ((boot = 1; boot <= repeat; boot++)); do
  DEVMAPPER_BENCH_HOST_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) (start)"
  export DEVMAPPER_BENCH_HOST_LOAD DEVMAPPER_BENCH_BOOT=$boot
  ((repeat == 1)) || echo "bench: boot $boot of $repeat" >&2
  if "$project/scripts/lib/has-dm" && [[ $EUID -eq 0 ]]; then
    "${cmd[@]}"
  else
    echo "bench: no device-mapper here: a ${DEVMAPPER_GUEST_KERNEL:-uml} guest boot" >&2
    "$project/scripts/vm/guest-run" --timeout "${DEVMAPPER_BENCH_TIMEOUT:-3600}" --mem "${DEVMAPPER_BENCH_GUEST_MEM:-3G}" -- "${cmd[@]}"
  fi
  echo "bench: host load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
if ((repeat > 1)); then
  out=$results/repeat${DEVMAPPER_BENCH_ONLY:+-partial}.md
  node --import tsx "$here/boots.ts" "$out" "$results"/boots/boot-*.json
  echo "bench: wrote $out" >&2
fi
