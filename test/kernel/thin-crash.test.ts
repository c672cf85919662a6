// kill -9 at every step of pool initialisation, snapshot (inactive and active origin) and delete,
// then reopen and check the invariant: the pool's thin ids equal the metadata's, the transaction
// ids match, no intent is left, no device is left suspended, and the pool keeps working.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { sysUmount2 } from '../../src/ioctl/libc.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { isMounted } from '../../src/thin/mount.js';
import { TX_STEP_NAMES as CRASH_POINTS } from '../../src/thin/crash-points.js';
import { requireKernelTier, dmsetup, newHome, probeThinIds, SMALL, sweep } from './thin-support.js';

requireKernelTier();

const child = resolve(import.meta.dirname, 'thin-crash-child.ts');
const tx = (op: string) => CRASH_POINTS.map((p) => `${op}:${p}`);
const CASES: [string, string[]][] = [
  ['init', [...tx('create'), 'base:created', 'base:activated', 'base:formatted', 'base:initialized']],
  ['create', tx('snapshot')],
  ['snapshot-active', ['snapshot:origin-suspended', ...tx('snapshot')]],
  ['delete', ['delete:intent-written', 'delete:discarded', 'delete:deactivated', ...tx('delete').slice(1)]],
];

const leftBehind: string[] = [];

describe('kill -9 at every step', () => {
  let dm: DeviceMapper;
  beforeAll(async () => {
    dm = DeviceMapper.open({ udev: 'off' });
    await sweep();
  });
  afterAll(async () => {
    await sweep();
    dm.close();
    console.log(`crash points (before reconcile):\n${leftBehind.join('\n')}`);
  });

  for (const [op, points] of CASES) {
    for (const point of points) {
      test(`${op} @ ${point}`, async () => {
        const home = newHome('crash');
        try {
          if (op !== 'init') {
            const s = await DeviceSet.open(home, SMALL);
            await s.addDevice('a', '');
            await s.shutdown();
          }
          const r = spawnSync(process.execPath, ['--import', 'tsx', child, home, op, point], { encoding: 'utf8' });
          expect(r.stdout).not.toContain('completed');
          expect(r.signal).toBe('SIGKILL');

          // What the crash left, before any recovery.
          const store = MetadataStore.open(join(home, 'metadata'));
          const state = store.readPoolState();
          const metaIds = [...store.readDevices().values()].map((d) => d.deviceId).sort();
          const pools = dm.list().filter((d) => d.name.startsWith('dmtest-') && d.name.endsWith('-pool'));
          expect(pools).toHaveLength(1);
          const poolName = pools[0]!.name;
          const kernelIds = [...(await probeThinIds(dm, poolName, 8))].sort();
          const poolTx = dmsetup('status', poolName).split(' ')[3];
          const suspended = dm
            .list()
            .filter((d) => d.name.startsWith('dmtest-') && dm.info({ name: d.name })?.suspended)
            .map((d) => d.name.replace(/^.*-/, ''));
          leftBehind.push(
            `${op} @ ${point}: kernel ids [${kernelIds}] metadata ids [${metaIds}] pool txid ${poolTx} metadata txid ${state?.transactionId ?? '-'}` +
              ` intent ${store.readIntent()?.op ?? '-'}${suspended.length ? ` suspended ${suspended}` : ''}`,
          );

          // Recovery.
          const set = await DeviceSet.open(home, SMALL);
          const recIds = set
            .deviceRecords()
            .map((d) => d.deviceId)
            .sort();
          expect([...(await probeThinIds(dm, set.poolName, 8))].sort()).toEqual(recIds);
          expect(BigInt(dmsetup('status', set.poolName).split(' ')[3]!)).toBe(set.transactionId);
          expect(existsSync(join(home, 'metadata', 'transaction-metadata'))).toBe(false);
          expect(dm.list().filter((d) => d.name.startsWith('dmtest-') && dm.info({ name: d.name })?.suspended)).toEqual([]);
          expect(set.deviceRecords().find((d) => d.hash === '')?.initialized).toBe(true);
          if (op === 'delete') expect(set.hasDevice('a')).toBe(false);
          // Still usable: a new snapshot, mounted.
          await set.addDevice('after', '');
          const mp = join(home, 'm', 'after');
          execFileSync('mkdir', ['-p', mp]);
          await set.mountDevice('after', mp);
          await set.unmountDevice('after');
          const mA = join(home, 'm', 'a');
          if (isMounted(mA)) sysUmount2(mA, 0);
          await set.shutdown();
        } finally {
          const mA = join(home, 'm', 'a');
          if (isMounted(mA)) sysUmount2(mA, 0);
          await sweep();
          rmSync(home, { recursive: true, force: true });
        }
      });
    }
  }
});
