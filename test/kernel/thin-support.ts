// Shared by the thin/driver kernel tests: small pools in throwaway homes, dmsetup as an
// independent oracle, a probe of which thin ids the kernel's pool holds, and a sweeper.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { DmError } from '../../src/ioctl/errors.js';
import { beforeAll } from 'vitest';
import { requireDeviceMapper, sweep as sweepDevices } from './support/env.js';
import { sectors } from '../../src/structs/units.js';
import { thinId, type DeviceName, deviceName } from '../../src/dm/names.js';

/**
 * Called at the top of each thin/driver test file: the tier's precondition as a failing hook, never
 * a skip (support/env.ts requireDeviceMapper says what is missing).
 */
export function requireKernelTier(): void {
  beforeAll(() => requireDeviceMapper());
}

/** Small sizes: 256 MiB sparse data, 16 MiB metadata, 64 MiB base; every dm name starts `dmtest-`. */
export const SMALL = ['dm.loopdatasize=256M', 'dm.loopmetadatasize=16M', 'dm.basesize=64M', 'dm.prefix=dmtest', 'dm.min_free_space=0%'];

export function newHome(tag = 'thin'): string {
  return mkdtempSync(join(tmpdir(), `dmtest-${tag}-`));
}

export function dmsetup(...args: string[]): string {
  return execFileSync('dmsetup', args, { encoding: 'utf8' }).trim();
}

/**
 * The thin ids the pool holds, found without changing it: a thin table for id N loads only if
 * the pool has N (else the target's constructor fails with ENODATA).
 */
export async function probeThinIds(dm: DeviceMapper, poolName: DeviceName, upTo: number): Promise<Set<number>> {
  const pool = dm.info({ name: poolName });
  if (!pool) throw new Error(`no pool ${poolName}`);
  const probe = deviceName(`dmtest-probe-${process.pid}`);
  const ids = new Set<number>();
  await dm.create(probe);
  try {
    for (let id = 0; id <= upTo; id++) {
      try {
        dm.loadTable({ name: probe }, [
          {
            type: 'thin',
            startSector: sectors(0n),
            lengthSectors: sectors(8n),
            poolDevice: `${pool.dev.major}:${pool.dev.minor}`,
            thinId: thinId(id),
          },
        ]);
        ids.add(id);
        dm.clearTable({ name: probe });
      } catch (e) {
        if (!(e instanceof DmError) || (e.code !== 'ENODATA' && e.code !== 'EINVAL')) throw e;
      }
    }
  } finally {
    await dm.remove({ name: probe });
  }
  return ids;
}

/** Remove every dm device named dmtest-* (dependents first), keeping the loop devices. */
export async function sweep(): Promise<void> {
  // The tier's one sweeper (support/env.ts): dependents first, suspended devices resumed first.
  await sweepDevices({ loops: false });
}
