// P4: layers through the storage driver: create(id) + get (activate, mount ext4) + put (unmount,
// deactivate) + remove (delete the thin id), per layer; median and p99 latency. The same steps as a
// shell loop of dmsetup + mount/umount commands (create_snap, set_transaction_id, create, mount,
// umount, remove, delete, set_transaction_id) on the bench pool's ext4 origin. Interleaved in chunks.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Driver } from '../src/driver/driver.js';
import type { BenchPool } from './pool.js';
import { BASE_SECTORS } from './pool.js';
import type { Report } from './report.js';
import { bash } from './run-process.js';
import { fmt, median, msSince, nowNs, percentile, ratio, scaled } from './stats.js';

const SHELL_LAYERS = `
pool=$1 pooldev=$2 origin=$3 first=$4 count=$5 tx=$6 len=$7 mnt=$8 name=bench-layer-$$
for ((i = first; i < first + count; i++)); do
  t0=$EPOCHREALTIME
  dmsetup message "$pool" 0 "create_snap $i $origin"
  dmsetup message "$pool" 0 "set_transaction_id $tx $((tx + 1))"; tx=$((tx + 1))
  dmsetup create "$name" --table "0 $len thin $pooldev $i"
  mount -t ext4 "/dev/mapper/$name" "$mnt"
  mkdir -p "$mnt/rootfs"
  umount "$mnt"
  dmsetup remove "$name"
  dmsetup message "$pool" 0 "delete $i"
  dmsetup message "$pool" 0 "set_transaction_id $tx $((tx + 1))"; tx=$((tx + 1))
  t1=$EPOCHREALTIME
  echo "us $(( \${t1/./} - \${t0/./} ))"
done
echo "tx $tx"
`;

/** Driver options: small loop files, and no discard before delete (the shell loop does none). */
const DRIVER_OPTIONS = [
  'dm.loopdatasize=1G',
  'dm.loopmetadatasize=64M',
  'dm.basesize=64M',
  'dm.prefix=bench',
  'dm.min_free_space=0%',
  'dm.blkdiscard=false',
];

export async function benchLayers(report: Report, pool: BenchPool): Promise<Record<string, number>> {
  const s = report.section('P4 layers: create + get (mount) + put + remove, ms per layer', [
    'program',
    'layers',
    'median',
    'p99',
    'vs dmsetup (median)',
  ]);
  const home = mkdtempSync(join(tmpdir(), 'dm-bench-driver-'));
  const mnt = join(home, 'shell-mnt');
  mkdirSync(mnt);
  const driver = await Driver.init(home, DRIVER_OPTIONS);
  const total = scaled(200);
  const chunk = Math.max(1, Math.round(total / 8));
  const warm = Math.max(1, Math.round(chunk / 5));
  const ours: number[] = [];
  const steps = { create: [] as number[], get: [] as number[], put: [] as number[], remove: [] as number[] };
  const shell: number[] = [];
  let layer = 0;
  let shellId = 1;
  let tx = 0;
  const runOurs = async (count: number, keep: boolean) => {
    for (let i = 0; i < count; i++, layer++) {
      const id = `layer-${layer}`;
      const t0 = nowNs();
      let t = nowNs();
      const lap = (k: keyof typeof steps) => {
        if (keep) steps[k].push(msSince(t));
        t = nowNs();
      };
      await driver.create(id, '');
      lap('create');
      await driver.get(id);
      lap('get');
      await driver.put(id);
      lap('put');
      await driver.remove(id);
      lap('remove');
      if (keep) ours.push(msSince(t0));
    }
  };
  const runShell = (count: number, keep: boolean) => {
    const out = bash(SHELL_LAYERS, [pool.name, pool.dev, `${pool.originId}`, `${shellId}`, `${count}`, `${tx}`, `${BASE_SECTORS}`, mnt]);
    shellId += count;
    for (const m of out.matchAll(/^us (\d+)$/gm)) if (keep) shell.push(Number(m[1]) / 1000);
    tx = Number(/^tx (\d+)$/m.exec(out)?.[1] ?? tx);
  };
  try {
    await runOurs(warm, false);
    runShell(warm, false);
    while (ours.length < total) {
      await runOurs(Math.min(chunk, total - ours.length), true);
      runShell(Math.min(chunk, total - shell.length), true);
    }
  } finally {
    await driver.cleanup();
    rmSync(home, { recursive: true, force: true });
  }
  const med = { ours: median(ours), ours99: percentile(ours, 99), shell: median(shell), shell99: percentile(shell, 99) };
  s.rows.push(['ours (Driver)', `${ours.length}`, fmt(med.ours), fmt(med.ours99), ratio(med.ours, med.shell)]);
  s.rows.push(['dmsetup + mount commands', `${shell.length}`, fmt(med.shell), fmt(med.shell99), '1.00']);
  s.notes.push(
    `Chunks of ${chunk} layers alternate between the two; a warm-up chunk of ${warm} each is dropped.`,
    `Ours per step (median ms): create ${fmt(median(steps.create))}, get ${fmt(median(steps.get))}, put ${fmt(median(steps.put))}, remove ${fmt(median(steps.remove))}. The driver also writes its metadata files (fsync) and the transaction intent; the shell loop keeps none.`,
    `Driver options: ${DRIVER_OPTIONS.join(' ')}.`,
  );
  return med;
}
