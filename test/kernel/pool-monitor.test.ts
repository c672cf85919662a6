// The pool's dm events as the kernel gives them, and `pool monitor`'s auto-extend against a real
// writer. (a) A layer of a 64 MiB loop-backed pool, mounted, takes 288 MiB (4.5x the pool) in
// fsynced chunks while `devmapper pool monitor` (its own process, no home lock, beside the
// DeviceSet that holds the pool) grows the data file: no write may fail. (b) With auto-extend off,
// a thin device is written block by block (O_DSYNC: a write returns once the pool mapped it) until
// the pool is out of data space: the low-water and mode events are reported, and their latency
// from the write that raised them is measured, through each of the kernel's waits (ARM_POLL +
// poll(2), and DM_DEV_WAIT).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants, existsSync, mkdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { DmEventStream } from '../../src/dm/events.js';
import { thinId, type DeviceName } from '../../src/dm/names.js';
import { parseThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { createThin } from '../../src/dm/thin-messages.js';
import { isThinPoolTarget } from '../../src/dm/targets.js';
import { setLoopCapacity } from '../../src/loop/index.js';
import { sectors } from '../../src/structs/units.js';
import { autoextendPolicy } from '../../src/thin/autoextend.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { PoolMonitor, type PoolMonitorEvent } from '../../src/thin/monitor.js';
import { BIN, LoopScratch, RUN_DIR, devString, dmName, dmsetupOk, kernelHooks } from './support/env.js';

kernelHooks({ sweepEach: false });

const MiB = 1024 * 1024;
const POOL_BYTES = 64 * MiB;
const BLOCK_SECTORS = 128; // 64 KiB
const BLOCK_BYTES = BLOCK_SECTORS * 512;

const scratch = new LoopScratch('pool-monitor');
afterAll(async () => {
  await scratch.cleanup();
});

/** The pool's status line, parsed (`ok` state required). */
function poolStatus(dm: DeviceMapper, name: string) {
  const st = parseThinPoolStatus(dm.status({ name: name as DeviceName })[0]!.params);
  if (st.state !== 'ok') throw new Error(`${name} is ${st.state}`);
  return st;
}

/** JSON lines of a child's stdout, each with the time (performance.now) it arrived. */
function lines(child: ChildProcessWithoutNullStreams): {
  events: (PoolMonitorEvent & { at: number })[];
  wait(pred: (e: PoolMonitorEvent) => boolean, ms: number): Promise<PoolMonitorEvent>;
} {
  const events: (PoolMonitorEvent & { at: number })[] = [];
  const waiters: { pred: (e: PoolMonitorEvent) => boolean; resolve: (e: PoolMonitorEvent) => void }[] = [];
  let rest = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    rest += chunk;
    let i = rest.indexOf('\n');
    while (i >= 0) {
      const e = { ...(JSON.parse(rest.slice(0, i)) as PoolMonitorEvent), at: performance.now() };
      rest = rest.slice(i + 1);
      events.push(e);
      for (const w of waiters.splice(0))
        if (w.pred(e)) w.resolve(e);
        else waiters.push(w);
      i = rest.indexOf('\n');
    }
  });
  return {
    events,
    wait: (pred, ms) =>
      new Promise((resolve, reject) => {
        const found = events.find(pred);
        if (found) return resolve(found);
        const t = setTimeout(() => reject(new Error(`no such event within ${ms} ms; got ${JSON.stringify(events)}`)), ms);
        waiters.push({
          pred,
          resolve: (e) => {
            clearTimeout(t);
            resolve(e);
          },
        });
      }),
  };
}

/**
 * A pool on two scratch loop files with the features pool-setup.ts gives (error_if_no_space: a full
 * pool fails writes at once), and thin id 1 on it, twice the pool's size.
 */
async function barePool(dm: DeviceMapper, tag: string, blocks: number, lwm: number, metaBytes = 8 * MiB) {
  const metaFile = join(scratch.dir, `${tag}-meta.img`);
  const meta = await scratch.loop(`${tag}-meta.img`, metaBytes);
  const dataFile = join(scratch.dir, `${tag}-data.img`);
  const data = await scratch.loop(`${tag}-data.img`, blocks * BLOCK_BYTES);
  const poolName = dmName(`${tag}-pool`);
  const thinName = dmName(`${tag}-thin`);
  await dm.create(poolName, {
    table: [
      {
        type: 'thin-pool',
        startSector: sectors(0n),
        lengthSectors: sectors(BigInt((blocks * BLOCK_BYTES) / 512)),
        metadataDevice: devString(meta),
        dataDevice: devString(data),
        dataBlockSizeSectors: BLOCK_SECTORS,
        lowWaterMarkBlocks: BigInt(lwm),
        features: ['skip_block_zeroing', 'error_if_no_space'],
      },
    ],
  });
  createThin(dm, { name: poolName }, thinId(1));
  const pool = dm.info({ name: poolName })!;
  await dm.create(thinName, {
    table: [
      {
        type: 'thin',
        startSector: sectors(0n),
        lengthSectors: sectors(BigInt((2 * blocks * BLOCK_BYTES) / 512)),
        poolDevice: devString(pool.dev),
        thinId: thinId(1),
      },
    ],
  });
  return { poolName, thinName, data, dataFile, metaFile };
}

/** A PoolMonitor's events as they come, each with its time (performance.now), and a wait for one. */
function collect() {
  const got: (PoolMonitorEvent & { at: number })[] = [];
  const waiters: (() => void)[] = [];
  return {
    got,
    onEvent: (e: PoolMonitorEvent) => {
      got.push({ ...e, at: performance.now() });
      for (const w of waiters.splice(0)) w();
    },
    async until(pred: (e: PoolMonitorEvent) => boolean, ms: number): Promise<PoolMonitorEvent & { at: number }> {
      const end = performance.now() + ms;
      while (!got.some(pred)) {
        if (performance.now() > end) throw new Error(`no such event; got ${JSON.stringify(got)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return got.find(pred)!;
    },
  };
}

describe('pool monitor auto-extends a loop-backed pool under a writer', () => {
  const home = join(RUN_DIR, 'monitor-home');
  const mnt = join(RUN_DIR, 'monitor-mnt');
  const OPTS = [
    `dm.loopdatasize=${POOL_BYTES / MiB}M`,
    'dm.loopmetadatasize=16M',
    'dm.basesize=512M',
    'dm.min_free_space=0%',
    `dm.prefix=dmtest-${process.pid}-mon`,
  ];

  test('a writer takes 4.5x the pool with no I/O error while the monitor extends it', async () => {
    mkdirSync(mnt, { recursive: true });
    const set = await DeviceSet.open(home, OPTS);
    let child: ChildProcessWithoutNullStreams | undefined;
    try {
      await set.addDevice('layer');
      await set.mountDevice('layer', mnt);
      const before = set.status();
      expect(before.data.totalBytes).toBe(BigInt(POOL_BYTES));
      // The monitor runs beside the DeviceSet, which holds the home's lock.
      child = spawn(BIN, [
        'pool',
        'monitor',
        '--home',
        home,
        '--storage-opt',
        OPTS[4]!,
        '--autoextend-threshold',
        '50',
        '--autoextend-percent',
        '100',
        '--interval',
        '1',
      ]);
      const out = lines(child);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      // A cold start under load (a stale build runs the sources through tsx) may take a while.
      const start = await out
        .wait((e) => e.event === 'start', 90_000)
        .catch((e: Error) => {
          throw new Error(`${e.message}; stderr: ${stderr}`);
        });
      expect(start).toMatchObject({ event: 'start', mechanism: 'poll', threshold: 50, percent: 100, mode: 'rw' });

      const total = 288 * MiB;
      const chunk = Buffer.alloc(MiB, 0x5a);
      const fh = await open(join(mnt, 'fill'), 'w');
      const t0 = performance.now();
      try {
        for (let off = 0; off < total; off += chunk.length) {
          await fh.write(chunk, 0, chunk.length, off);
          // Every 4 MiB on the pool: a block the pool could not map fails here, not in the page cache.
          if ((off + chunk.length) % (4 * MiB) === 0) await fh.datasync();
        }
        await fh.datasync();
      } finally {
        await fh.close();
      }
      const seconds = (performance.now() - t0) / 1000;
      const after = set.status();
      const extends_ = out.events.filter((e) => e.event === 'extend');
      console.log(
        `pool-monitor (a): ${total / MiB} MiB in ${seconds.toFixed(1)} s; ${extends_.length} extends: ` +
          extends_
            .map((e) =>
              e.event === 'extend'
                ? `${e.fromBytes / MiB}->${e.toBytes / MiB} MiB at ${e.percent}% (${e.reason}${e.limitedBy ? `, limited by ${e.limitedBy}` : ''})`
                : '',
            )
            .join(', ') +
          `; ${out.events.filter((e) => e.event === 'no-room').length} no-room, ${out.events.filter((e) => e.event === 'low-water').length} low-water`,
      );
      expect(extends_.length).toBeGreaterThan(0);
      expect(after.data.usedBytes).toBeGreaterThanOrEqual(BigInt(total));
      expect(after.data.totalBytes).toBe(BigInt((extends_.at(-1) as { toBytes: number }).toBytes));
      // dmsetup's view: the pool's length and mode.
      const w = dmsetupOk(['status', set.poolName]).trim().split(' ');
      expect(BigInt(w[1]!) * 512n).toBe(after.data.totalBytes);
      expect(w[7]).toBe('rw');
      // The guest's /tmp is a small tmpfs: the last step may be cut to its room (and later ones
      // refused, `no-room`), but nothing may fail.
      expect(out.events.filter((e) => e.event === 'error')).toEqual([]);
      for (const e of extends_) if (e.event === 'extend' && e.limitedBy === null) expect(e.toBytes).toBe(e.fromBytes * 2);

      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => child?.on('exit', (c) => r(c)));
      expect(code, stderr).toBe(0);
      expect(out.events.at(-1)).toMatchObject({ event: 'stop', reason: 'closed' });
      // It held the full pool's writes while it ran (no error_if_no_space), and put the feature back.
      expect(out.events.find((e) => e.event === 'no-space-mode')).toMatchObject({ mode: 'queue' });
      expect(dmsetupOk(['table', set.poolName])).toContain('error_if_no_space');
    } finally {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      try {
        await set.unmountDevice('layer');
      } finally {
        await set.shutdown();
        await set.close();
        rmSync(home, { recursive: true, force: true });
      }
    }
  }, 240_000);
});

describe('the kernel events of a pool that runs out of data space (auto-extend off)', () => {
  const BLOCKS = 256; // 16 MiB
  const LWM = 32;

  for (const mechanism of ['poll', 'wait'] as const) {
    test(`${mechanism}: low water mark and out_of_data_space reported within a second of the write`, async () => {
      const dm = DeviceMapper.open({ udev: 'off' });
      const tag = `mon-${mechanism}`;
      let mon: PoolMonitor | undefined;
      let running: Promise<unknown> | undefined;
      const poolName = dmName(`${tag}-pool`);
      try {
        const { thinName, data, dataFile } = await barePool(dm, tag, BLOCKS, LWM);
        const { onEvent, until } = collect();
        mon = new PoolMonitor(dm, poolName, {
          policy: autoextendPolicy(100, 20),
          intervalMs: 60_000, // the timer never fires here: every report comes from a kernel event
          mechanism,
          onEvent,
        });
        running = mon.run();
        await until((e) => e.event === 'start', 5000);

        // One 64 KiB block a write, each a block the pool maps anew; O_DSYNC: the write returns after it.
        const fh = await open(`/dev/mapper/${thinName}`, constants.O_WRONLY | constants.O_DSYNC);
        const starts: number[] = [];
        let failedAt = -1;
        let failure: unknown;
        try {
          const block = Buffer.alloc(BLOCK_BYTES, 0xa5);
          for (let i = 0; i <= BLOCKS; i++) {
            starts.push(performance.now());
            try {
              await fh.write(block, 0, BLOCK_BYTES, i * BLOCK_BYTES);
            } catch (e) {
              failedAt = i;
              failure = e;
              break;
            }
          }
        } finally {
          await fh.close().catch(() => {});
        }
        // Block BLOCKS (the first past the pool) is the one the full pool refuses.
        expect(failedAt, String(failure)).toBe(BLOCKS);
        expect((failure as NodeJS.ErrnoException).code).toMatch(/^(EIO|ENOSPC)$/);

        const low = (await until((e) => e.event === 'low-water', 2000)) as PoolMonitorEvent & { at: number };
        const mode = (await until((e) => e.event === 'mode' && e.to === 'out_of_data_space', 2000)) as PoolMonitorEvent & { at: number };
        // dm-thin's check_low_water_mark: the allocation that finds free <= low_water_blocks, i.e. the
        // write of block BLOCKS - LWM (free blocks before it: LWM).
        const lowWrite = starts[BLOCKS - LWM]!;
        const fullWrite = starts[BLOCKS]!;
        expect(low).toMatchObject({ part: 'data', kernelEvent: true, lowWaterMarkBlocks: LWM });
        expect(low.at).toBeGreaterThan(lowWrite);
        expect(mode.at).toBeGreaterThan(fullWrite);
        const lowMs = low.at - lowWrite;
        const modeMs = mode.at - fullWrite;
        console.log(
          `pool-monitor (b, ${mechanism}): low-water event ${lowMs.toFixed(1)} ms after its write; out_of_data_space ${modeMs.toFixed(1)} ms after the refused write`,
        );
        expect(poolStatus(dm, poolName).mode).toBe('out_of_data_space');

        // Growing the data device puts the pool back to rw at resume (dm-thin: check_for_data_space),
        // an event the monitor reports; it also ends a DM_DEV_WAIT in flight.
        truncateSync(dataFile, 2 * BLOCKS * BLOCK_BYTES);
        setLoopCapacity(data);
        const t = dm.table({ name: poolName })[0]!;
        if (!isThinPoolTarget(t)) throw new Error('not a thin-pool');
        dm.loadTable({ name: poolName }, [{ ...t, lengthSectors: sectors(BigInt((2 * BLOCKS * BLOCK_BYTES) / 512)) }]);
        await dm.suspend({ name: poolName });
        await dm.resume({ name: poolName });
        await until((e) => e.event === 'mode' && e.from === 'out_of_data_space' && e.to === 'rw', 2000);
        expect(poolStatus(dm, poolName).mode).toBe('rw');
      } finally {
        mon?.stop();
        await running;
        // A DM_DEV_WAIT cannot be cancelled and holds the pool (a remove would wait on it): the pool's
        // next event ends it. Switching the pool to read-only is one (set_pool_mode).
        if (mechanism === 'wait' && dm.info({ name: poolName })) {
          const t = dm.table({ name: poolName })[0];
          if (t && isThinPoolTarget(t)) {
            dm.loadTable({ name: poolName }, [{ ...t, features: [...t.features, 'read_only'] }]);
            await dm.suspend({ name: poolName });
            await dm.resume({ name: poolName });
          }
        }
        dm.close();
      }
    }, 120_000);
  }
});

describe('auto-extend out of out_of_data_space', () => {
  test('a write to the full pool waits while the monitor grows it, then is taken; the pool is back to rw', async () => {
    const BLOCKS = 256;
    const dm = DeviceMapper.open({ udev: 'off' });
    // No low water mark and a timer that never fires: the mode change is the one event.
    const { poolName, thinName, dataFile } = await barePool(dm, 'mon-ood', BLOCKS, 0);
    const c = collect();
    const mon = new PoolMonitor(dm, poolName, { policy: autoextendPolicy(80, 50), intervalMs: 600_000, onEvent: c.onEvent });
    const running = mon.run();
    try {
      await c.until((e) => e.event === 'start', 5000);
      // The monitor holds writes of a full pool (error_if_no_space dropped) for as long as it runs.
      expect(c.got.find((e) => e.event === 'no-space-mode')).toMatchObject({ mode: 'queue' });
      expect(dmsetupOk(['table', poolName])).not.toContain('error_if_no_space');
      const fh = await open(`/dev/mapper/${thinName}`, constants.O_WRONLY | constants.O_DSYNC);
      const block = Buffer.alloc(BLOCK_BYTES, 0x3c);
      const failed: number[] = [];
      try {
        for (let i = 0; i < BLOCKS + 64; i++) {
          try {
            await fh.write(block, 0, BLOCK_BYTES, i * BLOCK_BYTES);
          } catch (e) {
            expect((e as NodeJS.ErrnoException).code).toMatch(/^(EIO|ENOSPC)$/);
            failed.push(i);
            // The monitor grows the pool on the mode change; the same write is then taken.
            await c.until((x) => x.event === 'mode' && x.from === 'out_of_data_space' && x.to === 'rw', 5000);
            await fh.write(block, 0, BLOCK_BYTES, i * BLOCK_BYTES);
          }
        }
      } finally {
        await fh.close();
      }
      // No write failed: the first past the pool waited in the pool's queue (out_of_data_space) for the extension.
      expect(failed).toEqual([]);
      expect(c.got.some((e) => e.event === 'mode' && e.to === 'out_of_data_space')).toBe(true);
      const ext = c.got.filter((e) => e.event === 'extend');
      // 50 % of 16 MiB: 24 MiB (384 blocks), more than back to 80 % (320 blocks).
      expect(ext).toMatchObject([
        { part: 'data', reason: 'event', fromBytes: BLOCKS * BLOCK_BYTES, toBytes: 384 * BLOCK_BYTES, file: dataFile },
      ]);
      expect(statSync(dataFile).size).toBe(384 * BLOCK_BYTES);
      const st = poolStatus(dm, poolName);
      expect(st.mode).toBe('rw');
      expect(st.totalDataBlocks).toBe(384n);
      expect(st.usedDataBlocks).toBe(BigInt(BLOCKS + 64));
    } finally {
      mon.stop();
      await running;
    }
    // Put back at stop.
    expect(dmsetupOk(['table', poolName])).toContain('error_if_no_space');
    expect(c.got.filter((e) => e.event === 'no-space-mode').map((e) => (e as { mode: string }).mode)).toEqual(['queue', 'error']);
    dm.close();
  }, 120_000);
});

describe('auto-extend of metadata', () => {
  test('a 64 KiB metadata device over the threshold is grown at start; the pool takes the new size', async () => {
    const dm = DeviceMapper.open({ udev: 'off' });
    // 16 metadata blocks, 10 used by a fresh pool (measured in the guest): 62.5 %.
    const { poolName, thinName, metaFile } = await barePool(dm, 'mon-meta', 256, 0, 64 * 1024);
    const before = poolStatus(dm, poolName);
    expect(before.totalMetadataBlocks).toBe(16n);
    expect(before.usedMetadataBlocks * 100n).toBeGreaterThan(50n * before.totalMetadataBlocks);
    const c = collect();
    const mon = new PoolMonitor(dm, poolName, { policy: autoextendPolicy(50, 100), intervalMs: 600_000, onEvent: c.onEvent });
    const running = mon.run();
    try {
      const ext = await c.until((e) => e.event === 'extend', 10_000);
      // 100 % of 64 KiB: 128 KiB, more than back to 50 % (2 x used blocks).
      expect(ext).toMatchObject({ part: 'metadata', reason: 'start', fromBytes: 64 * 1024, toBytes: 128 * 1024, file: metaFile });
      expect(statSync(metaFile).size).toBe(128 * 1024);
      const after = poolStatus(dm, poolName);
      expect(after.totalMetadataBlocks).toBe(32n);
      expect(after.mode).toBe('rw');
      // The grown pool maps new blocks: metadata use climbs, nothing fails.
      const fh = await open(`/dev/mapper/${thinName}`, constants.O_WRONLY | constants.O_DSYNC);
      try {
        const block = Buffer.alloc(BLOCK_BYTES, 0x11);
        for (let i = 0; i < 64; i++) await fh.write(block, 0, BLOCK_BYTES, i * BLOCK_BYTES);
      } finally {
        await fh.close();
      }
      expect(poolStatus(dm, poolName).usedDataBlocks).toBe(64n);
      expect(c.got.filter((e) => e.event === 'error')).toEqual([]);
    } finally {
      mon.stop();
      await running;
      dm.close();
    }
  }, 120_000);
});

describe('DmEventStream', () => {
  test('close() ends a poll in flight at once; a timeout answers timeout', async () => {
    const dm = DeviceMapper.open({ udev: 'off' });
    const meta = await scratch.loop('es-meta.img', 8 * MiB);
    const data = await scratch.loop('es-data.img', 16 * MiB);
    const poolName = dmName('es-pool');
    try {
      await dm.create(poolName, {
        table: [
          {
            type: 'thin-pool',
            startSector: sectors(0n),
            lengthSectors: sectors(BigInt((16 * MiB) / 512)),
            metadataDevice: devString(meta),
            dataDevice: devString(data),
            dataBlockSizeSectors: BLOCK_SECTORS,
            lowWaterMarkBlocks: 0n,
            features: [],
          },
        ],
      });
      const s = DmEventStream.open({ name: poolName });
      expect(s.mechanism).toBe('poll');
      const t0 = performance.now();
      expect(await s.next(100)).toEqual({ type: 'timeout' });
      expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
      const pending = s.next();
      setTimeout(() => s.close(), 50);
      expect(await pending).toEqual({ type: 'closed' });
      expect(await s.next()).toEqual({ type: 'closed' });
    } finally {
      dm.close();
    }
  });

  test('a removed device rejects with ENXIO', async () => {
    expect(existsSync('/dev/mapper/control')).toBe(true);
    let err: unknown;
    try {
      DmEventStream.open({ name: dmName('no-such-device') });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ENXIO' });
  });
});
