#!/usr/bin/env bash
# Profiling aid, run inside the guest: scripts/vm/guest-run -- bench/profile.sh OUTDIR
# System call counts (strace -c -f) and CPU profiles (node --cpu-prof) of our snapshot cycle, our
# list, and the cold CLI, beside the raw C program's counts.
set -uo pipefail
out=${1:?OUTDIR}; mkdir -p "$out"
b=.vm/bench-build
tsx=(node --import tsx bench/profile.ts)
echo "== strace -c: 200 cycles ours (with node)"; strace -f -c -o "$out/strace-ours-cycle.txt" "${tsx[@]}" cycle 200 node
echo "== strace -c: 20 cycles ours (setup baseline)"; strace -f -c -o "$out/strace-ours-cycle-base.txt" "${tsx[@]}" cycle 20 node
node --import tsx -e "
import('./bench/pool.ts').then(async ({ createPool, destroyPool }) => {
  const { DeviceMapper } = await import('./src/dm/device-mapper.ts');
  const dm = DeviceMapper.open({ udev: 'off' });
  const p = await createPool(dm, 'bench-prof-c', { mkfs: false });
  const { execFileSync } = await import('node:child_process');
  execFileSync('strace', ['-f', '-c', '-o', '$out/strace-raw-cycle.txt', '$b/dmraw', 'cycle', p.name, p.dev, '0', '1', '200', '/dev/mapper'], { stdio: 'inherit' });
  execFileSync('strace', ['-f', '-c', '-o', '$out/strace-lib-cycle.txt', '$b/dmlib', 'cycle', p.name, p.dev, '0', '1', '200'], { stdio: 'inherit' });
  await destroyPool(dm, p); dm.close();
});"
echo "== ours vs dmraw, interleaved: time, page faults and context switches a cycle"; "${tsx[@]}" compare 6 200
echo "== cpu-prof: 300 cycles"; node --cpu-prof --cpu-prof-dir="$out/prof-cycle" --import tsx bench/profile.ts cycle 300 node
echo "== cpu-prof: list 1000 x 200"; node --cpu-prof --cpu-prof-dir="$out/prof-list" --import tsx bench/profile.ts list 1000 200
echo "== cold CLI"; for _ in 1 2 3; do
  /usr/bin/time -f "dm ls %e s" ./bin/devmapper dm ls >/dev/null; /usr/bin/time -f "node -e 0 %e s" node -e 0; done
strace -f -c -o "$out/strace-cli.txt" ./bin/devmapper dm ls >/dev/null
strace -f -c -o "$out/strace-node0.txt" node -e 0
strace -f -e trace=openat,execve -o "$out/strace-cli-files.txt" ./bin/devmapper dm ls >/dev/null
node --cpu-prof --cpu-prof-dir="$out/prof-cli" ./bin/devmapper dm ls >/dev/null
echo "done"
