// dm-thin below the pool manager: a pool over two loop devices, thin devices written to, and the
// pool's and thin's status lines as our parsers read them, equal to dmsetup's text read the same way.
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { parseThinPoolStatus, type ThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { parseThinStatus } from '../../src/dm/status/thin.js';
import { formatTableLine, parseTableLine } from '../../src/dm/targets.js';
import {
  createSnap,
  createThin,
  deleteThin,
  releaseMetadataSnap,
  reserveMetadataSnap,
  setTransactionId,
} from '../../src/dm/thin-messages.js';
import { DmError } from '../../src/ioctl/errors.js';
import {
  LoopScratch,
  activateThin,
  caught,
  devString,
  dmName,
  kernelHooks,
  makePool,
  openDm,
  oracleLines,
  type TestPool,
} from './support/env.js';
import { sectors } from '../../src/structs/units.js';
import { thinId, type DeviceName } from '../../src/dm/names.js';

kernelHooks({ sweepEach: false });

const MiB = 1024 * 1024;
const THIN_SECTORS = 65536n; // 32 MiB

/** The params of a one-target device's status line, from dmsetup. */
function oracleParams(name: string, type: string): string {
  const [line] = oracleLines('status', name);
  const m = new RegExp(`^0 \\d+ ${type} (.*)$`).exec(line ?? '');
  if (!m) throw new Error(`unexpected dmsetup status of ${name}: ${JSON.stringify(line)}`);
  return m[1]!;
}

function ourParams(dm: DeviceMapper, name: DeviceName): string {
  const st = dm.status({ name });
  expect(st).toHaveLength(1);
  return st[0]!.params;
}

function poolStatus(dm: DeviceMapper, pool: TestPool): Extract<ThinPoolStatus, { state: 'ok' }> {
  const s = parseThinPoolStatus(ourParams(dm, pool.name));
  if (s.state !== 'ok') throw new Error(`pool ${pool.name} is ${s.state}`);
  return s;
}

/** Writes `bytes` of a pattern to the device at `offset`, then fsync. */
function writePattern(path: string, bytes: number, offset: number, seed: number): void {
  const fd = openSync(path, 'r+');
  try {
    const chunk = Buffer.alloc(MiB);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31 + seed) & 0xff;
    for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done), offset + done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readBytes(path: string, bytes: number, offset: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(bytes);
    expect(readSync(fd, b, 0, bytes, offset)).toBe(bytes);
    return b;
  } finally {
    closeSync(fd);
  }
}

describe('thin-pool and thin against the kernel, checked with dmsetup', () => {
  let dm: DeviceMapper;
  let scratch: LoopScratch;
  let pool: TestPool;

  beforeAll(async () => {
    dm = openDm();
    scratch = new LoopScratch('thin');
    pool = await makePool(dm, scratch, 'thin', { dataBytes: 64 * MiB, metaBytes: 8 * MiB });
  });
  afterAll(async () => {
    dm?.close();
    await scratch?.cleanup();
  });

  test('a fresh pool: status as dmsetup reads it, nothing used, transaction 0, no held root', () => {
    const ours = poolStatus(dm, pool);
    expect(parseThinPoolStatus(oracleParams(pool.name, 'thin-pool'))).toEqual(poolStatus(dm, pool));
    expect(ours).toMatchObject({ transactionId: 0n, usedDataBlocks: 0n, heldMetadataRoot: null, mode: 'rw', needsCheck: false });
    expect(ours.totalDataBlocks).toBe(pool.lengthSectors / BigInt(pool.blockSectors));
  });

  test('the pool table round trip: what we loaded, what we read, what dmsetup reads, the same target', () => {
    const ours = dm.table({ name: pool.name });
    expect(ours).toEqual([
      {
        type: 'thin-pool',
        startSector: sectors(0n),
        lengthSectors: pool.lengthSectors,
        metadataDevice: devString(pool.meta),
        dataDevice: devString(pool.data),
        dataBlockSizeSectors: pool.blockSectors,
        lowWaterMarkBlocks: 0n,
        features: [],
      },
    ]);
    const theirs = oracleLines('table', pool.name).map(parseTableLine);
    expect(theirs).toEqual(ours);
    // Feature words survive too: a second pool with features, read back by both.
    expect(dm.deps({ name: pool.name }).map(devString).sort()).toEqual([devString(pool.meta), devString(pool.data)].sort());
  });

  test('create_thin, write data, fsync: pool used blocks and thin mapped sectors, ours == dmsetup', async () => {
    createThin(dm, { name: pool.name }, thinId(1));
    const thin = await activateThin(dm, pool, 'thin-1', 1, THIN_SECTORS);
    const path = `/dev/mapper/${dmName('thin-1')}`;
    const empty = parseThinStatus(ourParams(dm, dmName('thin-1')));
    expect(empty).toEqual({ state: 'ok', mappedSectors: 0n, highestMappedSector: null });
    writePattern(path, 4 * MiB, 0, 1);
    writePattern(path, 1 * MiB, 16 * MiB, 2);
    const thinOurs = parseThinStatus(ourParams(dm, dmName('thin-1')));
    expect(thinOurs).toEqual(parseThinStatus(oracleParams(dmName('thin-1'), 'thin')));
    if (thinOurs.state !== 'ok') throw new Error('thin status not ok');
    expect(thinOurs.mappedSectors).toBe(BigInt((5 * MiB) / 512));
    expect(thinOurs.highestMappedSector).toBe(BigInt((17 * MiB) / 512) - 1n);
    const p1 = poolStatus(dm, pool);
    expect(parseThinPoolStatus(oracleParams(pool.name, 'thin-pool'))).toEqual(poolStatus(dm, pool));
    expect(p1.usedDataBlocks).toBe(BigInt((5 * MiB) / 512 / pool.blockSectors));
    expect(p1.usedMetadataBlocks).toBeGreaterThan(0n);
    expect(readBytes(path, 16, 0)).toEqual(Buffer.from(Array.from({ length: 16 }, (_, i) => (i * 31 + 1) & 0xff)));
    // The thin's table round trip.
    expect(dm.table({ name: dmName('thin-1') }).map(formatTableLine)).toEqual(oracleLines('table', dmName('thin-1')));
    expect(dm.table({ name: dmName('thin-1') })).toEqual([
      { type: 'thin', startSector: sectors(0n), lengthSectors: THIN_SECTORS, poolDevice: devString(pool.dev), thinId: thinId(1) },
    ]);
    expect(dm.deps({ name: dmName('thin-1') })).toEqual([pool.dev]);
    expect(thin.liveTable).toBe(true);
  });

  test('set_transaction_id: the new id in the status; a wrong old id is EINVAL and changes nothing', async () => {
    const before = poolStatus(dm, pool).transactionId;
    setTransactionId(dm, { name: pool.name }, before, before + 1n);
    expect(poolStatus(dm, pool).transactionId).toBe(before + 1n);
    expect(parseThinPoolStatus(oracleParams(pool.name, 'thin-pool')).state === 'ok').toBe(true);
    expect(parseThinPoolStatus(oracleParams(pool.name, 'thin-pool'))).toMatchObject({ transactionId: before + 1n });
    const err = await caught(() => setTransactionId(dm, { name: pool.name }, before + 7n, before + 8n));
    expect(err).toBeInstanceOf(DmError);
    expect(err).toMatchObject({ code: 'EINVAL', command: 'DM_TARGET_MSG' });
    expect((err as Error).message).toContain(pool.name);
    expect(poolStatus(dm, pool).transactionId).toBe(before + 1n);
  });

  test('reserve_metadata_snap: a held metadata root in the status (ours == dmsetup); release clears it', () => {
    reserveMetadataSnap(dm, { name: pool.name });
    const held = poolStatus(dm, pool);
    expect(held.heldMetadataRoot).not.toBeNull();
    expect(held.heldMetadataRoot!).toBeGreaterThan(0n);
    expect(parseThinPoolStatus(oracleParams(pool.name, 'thin-pool'))).toEqual(poolStatus(dm, pool));
    releaseMetadataSnap(dm, { name: pool.name });
    expect(poolStatus(dm, pool).heldMetadataRoot).toBeNull();
    expect(parseThinPoolStatus(oracleParams(pool.name, 'thin-pool'))).toMatchObject({ heldMetadataRoot: null });
  });

  test('create_snap of a suspended origin: the snapshot shares the data, then diverges (copy on write)', async () => {
    const origin = dmName('thin-1');
    await dm.suspend({ name: origin });
    try {
      createSnap(dm, { name: pool.name }, thinId(2), thinId(1));
    } finally {
      await dm.resume({ name: origin });
    }
    await activateThin(dm, pool, 'snap-2', 2, THIN_SECTORS);
    const snap = dmName('snap-2');
    const snapStatus = parseThinStatus(ourParams(dm, snap));
    expect(snapStatus).toEqual(parseThinStatus(oracleParams(snap, 'thin')));
    expect(snapStatus).toEqual(parseThinStatus(ourParams(dm, origin)));
    const usedBefore = poolStatus(dm, pool).usedDataBlocks;
    writePattern(`/dev/mapper/${snap}`, 1 * MiB, 0, 9);
    expect(poolStatus(dm, pool).usedDataBlocks).toBe(usedBefore + BigInt(MiB / 512 / pool.blockSectors));
    expect(readBytes(`/dev/mapper/${origin}`, 4, 0)).toEqual(Buffer.from([1, 32, 63, 94]));
    expect(readBytes(`/dev/mapper/${snap}`, 4, 0)).toEqual(Buffer.from([9, 40, 71, 102]));
  });

  test('delete: the snapshot id goes, its blocks are freed, and a thin table for it no longer loads (ENODATA)', async () => {
    const snap = dmName('snap-2');
    const usedBefore = poolStatus(dm, pool).usedDataBlocks;
    await dm.remove({ name: snap });
    deleteThin(dm, { name: pool.name }, thinId(2));
    expect(poolStatus(dm, pool).usedDataBlocks).toBe(usedBefore - BigInt(MiB / 512 / pool.blockSectors));
    const probe = dmName('probe');
    await dm.create(probe);
    const err = await caught(() =>
      dm.loadTable({ name: probe }, [
        { type: 'thin', startSector: sectors(0n), lengthSectors: sectors(8n), poolDevice: devString(pool.dev), thinId: thinId(2) },
      ]),
    );
    expect(err).toMatchObject({ code: 'ENODATA', command: 'DM_TABLE_LOAD' });
    await dm.remove({ name: probe });
  });

  test('a pool with features: table words survive the round trip; the status reports them', async () => {
    const p2 = await makePool(dm, scratch, 'feat', {
      dataBytes: 16 * MiB,
      metaBytes: 4 * MiB,
      blockSectors: 256,
      features: ['skip_block_zeroing', 'error_if_no_space'],
    });
    const t = dm.table({ name: p2.name });
    expect(t).toEqual(oracleLines('table', p2.name).map(parseTableLine));
    expect(t[0]).toMatchObject({ type: 'thin-pool', dataBlockSizeSectors: 256, features: ['skip_block_zeroing', 'error_if_no_space'] });
    const s = parseThinPoolStatus(ourParams(dm, p2.name));
    expect(s).toEqual(parseThinPoolStatus(oracleParams(p2.name, 'thin-pool')));
    expect(s).toMatchObject({ state: 'ok', noSpaceBehaviour: 'error', totalDataBlocks: BigInt((16 * MiB) / 512 / 256) });
    await dm.remove({ name: p2.name });
  });
});
