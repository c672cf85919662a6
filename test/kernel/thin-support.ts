// Shared by the thin/driver kernel tests: small pools in throwaway homes, dmsetup as an
// independent oracle, the thin ids a pool holds (thin_dump, or a probe by loading tables), and a sweeper.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { DmError } from '../../src/ioctl/errors.js';
import { beforeAll } from 'vitest';
import { requireDeviceMapper, sweep as sweepDevices } from './support/env.js';
import { sectors } from '../../src/structs/units.js';
import { thinId, type DeviceName, deviceName } from '../../src/dm/names.js';
import { isThinPoolTarget } from '../../src/dm/targets.js';

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

/** One thin device of a pool's metadata, as thin_dump prints it. */
export interface ThinDumpDevice {
  devId: number;
  transaction: bigint;
  mappedBlocks: bigint;
}

/** A live pool's metadata read through a metadata snapshot by thin_dump (thin-provisioning-tools). */
export interface ThinDump {
  /** The superblock's transaction id (what set_transaction_id last committed). */
  transaction: bigint;
  devices: ThinDumpDevice[];
}

/** `/dev/<name>` of a block device given as `maj:min`, from sysfs (no udev in the guest). */
function blockDevicePath(majMin: string): string {
  const uevent = readFileSync(`/sys/dev/block/${majMin}/uevent`, 'utf8');
  const name = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
  if (!name) throw new Error(`no DEVNAME for block device ${majMin}`);
  return `/dev/${name}`;
}

/**
 * The metadata of the live pool `poolName`, read by an independent tool: `reserve_metadata_snap`
 * (the kernel commits and freezes a copy of its btree roots), `thin_dump -m --skip-mappings` of the
 * pool's metadata device, and `release_metadata_snap` always, also when the dump fails. The table
 * and the messages go through dmsetup, or through `dm` when given (fewer processes: the crash
 * tests read every pool they reopen; the reading itself is still thin_dump's).
 */
export function thinDumpOf(poolName: string, dm?: DeviceMapper): ThinDump {
  let metadataMajMin: string;
  if (dm) {
    const t = dm.table({ name: deviceName(poolName) })[0];
    if (!t || !isThinPoolTarget(t)) throw new Error(`${poolName} is not a thin-pool: ${t?.type ?? 'no table'}`);
    metadataMajMin = t.metadataDevice;
  } else {
    const table = dmsetup('table', poolName).split(/\s+/);
    if (table[2] !== 'thin-pool') throw new Error(`${poolName} is not a thin-pool: ${table.join(' ')}`);
    metadataMajMin = table[3]!;
  }
  const metadataDevice = blockDevicePath(metadataMajMin);
  const message = (msg: string) => (dm ? dm.message({ name: deviceName(poolName) }, 0n, msg) : dmsetup('message', poolName, '0', msg));
  message('reserve_metadata_snap');
  let xml: string;
  try {
    xml = execFileSync('thin_dump', ['-m', '--skip-mappings', metadataDevice], { encoding: 'utf8' });
  } finally {
    message('release_metadata_snap');
  }
  const sb = /<superblock\b[^>]*\btransaction="(\d+)"/.exec(xml);
  if (!sb) throw new Error(`thin_dump printed no superblock for ${poolName}:\n${xml}`);
  const devices: ThinDumpDevice[] = [];
  for (const m of xml.matchAll(/<device\b([^>]*)>/g)) {
    const attr = (key: string) => {
      const v = new RegExp(`\\b${key}="(\\d+)"`).exec(m[1]!)?.[1];
      if (v === undefined) throw new Error(`thin_dump: a device without ${key}: ${m[0]}`);
      return v;
    };
    devices.push({ devId: Number(attr('dev_id')), transaction: BigInt(attr('transaction')), mappedBlocks: BigInt(attr('mapped_blocks')) });
  }
  return { transaction: BigInt(sb[1]!), devices };
}

/** Every thin id the live pool `poolName` holds, ascending (thinDumpOf: not a probe). */
export function thinIdsOf(poolName: string, dm?: DeviceMapper): number[] {
  return thinDumpOf(poolName, dm)
    .devices.map((d) => d.devId)
    .sort((a, b) => a - b);
}
