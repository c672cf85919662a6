// Replies bigger than the first buffer: a table of 2,000 targets and a list of 1,000 devices, which
// the kernel answers with DM_BUFFER_FULL_FLAG until the buffer has grown enough.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { formatTableLine, type Target } from '../../src/dm/targets.js';
import { FaultInjectingTransport } from '../../src/ioctl/fault.js';
import { libcTransport } from '../../src/ioctl/libc.js';
import type { LoopDevice } from '../../src/loop/index.js';
import { DmCmd, dmRequest } from '../../src/structs/dm-ioctl.js';
import { LoopScratch, devString, dmName, dmsetupOk, kernelHooks, openDm, oracleLines, oracleLs, RUN_PREFIX } from './support/env.js';
import { sectors } from '../../src/structs/units.js';
import { deviceUuid } from '../../src/dm/names.js';

kernelHooks();

describe('buffer growth against the kernel', () => {
  let scratch: LoopScratch;
  let loop: LoopDevice;
  let t: FaultInjectingTransport;
  let dm: DeviceMapper;

  beforeAll(async () => {
    scratch = new LoopScratch('scale');
    loop = await scratch.loop('a.img', 16 * 1024 * 1024);
  });
  afterAll(async () => {
    dm?.close();
    await scratch?.cleanup();
  });

  test('a table of 2,000 linear targets: load, table and status round trip, equal to dmsetup', async () => {
    // A fresh instance: its buffers start at 16 KiB, so the growth is this test's.
    t = new FaultInjectingTransport(libcTransport);
    dm = openDm({ transport: t });
    const name = dmName('big-table');
    const targets: Target[] = Array.from({ length: 2000 }, (_, i) => ({
      type: 'linear' as const,
      startSector: sectors(BigInt(i * 8)),
      lengthSectors: sectors(8n),
      device: devString(loop),
      // Reversed, so that an off-by-one in any target shows.
      offsetSectors: sectors(BigInt((1999 - i) * 8)),
    }));
    await dm.create(name, { table: targets });
    const status = dmRequest(DmCmd.DM_TABLE_STATUS);
    const before = t.count(status);
    const back = dm.table({ name });
    // 2,000 specs of 40 bytes + params do not fit 16 KiB: at least one DM_BUFFER_FULL retry.
    expect(t.count(status) - before).toBeGreaterThan(1);
    expect(back).toEqual(targets);
    const theirs = oracleLines('table', name);
    expect(theirs).toHaveLength(2000);
    expect(back.map(formatTableLine)).toEqual(theirs);
    const st = dm.status({ name });
    expect(st).toHaveLength(2000);
    expect(st.map((s) => `${s.startSector} ${s.lengthSectors} ${s.type}${s.params ? ` ${s.params}` : ''}`)).toEqual(
      oracleLines('status', name),
    );
    expect(dm.info({ name })).toMatchObject({ targetCount: 2000 });
    // The grown size is remembered: the next read needs one ioctl.
    const again = t.count(status);
    dm.table({ name });
    expect(t.count(status) - again).toBe(1);
    // Inactive table of the same size.
    dm.loadTable(
      { name },
      targets
        .slice()
        .reverse()
        .map((x, i) => ({ ...x, startSector: sectors(BigInt(i * 8)) })),
    );
    expect(dm.table({ name }, { inactive: true })).toHaveLength(2000);
    await dm.remove({ name });
  });

  test('1,000 devices: created through our API, all listed (with uuids), equal to dmsetup ls; removed', async () => {
    t = new FaultInjectingTransport(libcTransport);
    dm?.close();
    dm = openDm({ transport: t });
    const names = Array.from({ length: 1000 }, (_, i) => dmName(`many-${String(i).padStart(4, '0')}`));
    const started = Date.now();
    for (const [i, name] of names.entries()) {
      await dm.create(name, {
        uuid: deviceUuid(`${RUN_PREFIX}many-uuid-${i}`),
        noNode: true,
        table: [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(8n) }],
      });
    }
    const createMs = Date.now() - started;
    const listReq = dmRequest(DmCmd.DM_LIST_DEVICES);
    const before = t.count(listReq);
    const listed = dm.list({ uuids: true }).filter((d) => d.name.startsWith(RUN_PREFIX));
    expect(t.count(listReq) - before).toBeGreaterThan(1); // grew past 16 KiB
    expect(listed.map((d) => d.name).sort()).toEqual(names.slice().sort());
    for (const d of listed) expect(d.uuid).toBe(`${RUN_PREFIX}many-uuid-${Number(d.name.slice(-4))}`);
    const ls = oracleLs();
    const theirs = [...ls.keys()].filter((n) => n.startsWith(RUN_PREFIX)).sort();
    expect(theirs).toEqual(names.slice().sort());
    for (const d of listed) expect(ls.get(d.name)).toBe(devString(d.dev));
    expect(
      dmsetupOk(['info', '-c', '--noheadings', '-o', 'name'])
        .split('\n')
        .filter((l) => l.startsWith(RUN_PREFIX)),
    ).toHaveLength(1000);
    const removeStart = Date.now();
    for (const name of names) await dm.remove({ name }, { noNode: true });
    const removeMs = Date.now() - removeStart;
    expect(dm.list().filter((d) => d.name.startsWith(RUN_PREFIX))).toEqual([]);
    console.log(`1,000 devices: create+load+resume ${createMs} ms, remove ${removeMs} ms`);
  });
});
