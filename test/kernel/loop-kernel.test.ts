// Loop devices in the guest's kernel (the host tier covers the host's): attach, find, capacity,
// detach, and a loop device under a dm table.
import { statfsSync, truncateSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { blockDeviceSizeBytes } from '../../src/blk/index.js';
import { attachLoop, detachLoop, findLoopByFile, listLoops, loopStatus, setLoopCapacity } from '../../src/loop/index.js';
import { LoFlag } from '../../src/structs/loop.js';
import { LoopScratch, caught, devString, dmName, kernelHooks, linearOver, openDm } from './support/env.js';

kernelHooks();

const TMPFS_MAGIC = 0x01021994;

describe('loop devices in the guest kernel', () => {
  let scratch: LoopScratch;

  beforeAll(() => {
    scratch = new LoopScratch('loop');
  });
  afterAll(async () => {
    await scratch?.cleanup();
  });

  test('attach, find, capacity, grow, detach', async () => {
    const file = scratch.file('grow.img', 4 * 1024 * 1024);
    const dev = await attachLoop(file);
    try {
      expect(listLoops().find((l) => l.number === dev.number)?.backingFile).toBe(file);
      expect((await findLoopByFile(file)).map((d) => d.number)).toEqual([dev.number]);
      expect(blockDeviceSizeBytes(dev.path)).toBe(4n * 1024n * 1024n);
      expect(loopStatus(dev).lo_file_name).toBe(file);
      truncateSync(file, 8 * 1024 * 1024);
      expect(blockDeviceSizeBytes(dev.path)).toBe(4n * 1024n * 1024n);
      setLoopCapacity(dev);
      expect(blockDeviceSizeBytes(dev.path)).toBe(8n * 1024n * 1024n);
    } finally {
      await detachLoop(dev);
    }
    expect(await findLoopByFile(file)).toEqual([]);
  });

  test('direct I/O: refused with a clear error on tmpfs (nothing stays attached), honoured elsewhere', async () => {
    const file = scratch.file('dio.img', 1024 * 1024);
    if (statfsSync(scratch.dir).type === TMPFS_MAGIC) {
      const err = await caught(() => attachLoop(file, { directIo: true }));
      expect(err).toMatchObject({ code: 'EINVAL', syscall: 'LOOP_SET_DIRECT_IO' });
      expect(await findLoopByFile(file)).toEqual([]);
    } else {
      const dev = await attachLoop(file, { directIo: true });
      try {
        expect(loopStatus(dev).lo_flags & LoFlag.LO_FLAGS_DIRECT_IO).not.toBe(0);
      } finally {
        await detachLoop(dev);
      }
    }
  });

  test('a loop device under a dm table: busy while the table holds it, detach after remove', async () => {
    const file = scratch.file('under.img', 2 * 1024 * 1024);
    const dev = await attachLoop(file);
    const dm = openDm();
    try {
      const name = dmName('on-loop');
      await dm.create(name, { table: linearOver(dev, 4096n) });
      expect(dm.deps({ name }).map(devString)).toEqual([devString(dev)]);
      await dm.remove({ name });
      await detachLoop(dev);
      expect(await findLoopByFile(file)).toEqual([]);
    } finally {
      dm.close();
    }
  });
});
