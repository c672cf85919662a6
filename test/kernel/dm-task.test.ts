// The Go-style Task API (src/dm/task.ts) against the real kernel: one round trip per TaskType,
// each checked with dmsetup.
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import type { DeviceListEntry } from '../../src/dm/info.js';
import { AddNodeType, ErrBusy, ErrTaskRun, type Task, TaskType, taskCreate } from '../../src/dm/task.js';
import type { DmTargetVersion } from '../../src/structs/target-versions.js';
import type { DevT } from '../../src/structs/dev.js';
import type { LoopDevice } from '../../src/loop/index.js';
import {
  LoopScratch,
  caught,
  devString,
  dmName,
  dmsetupOk,
  kernelHooks,
  makePool,
  openDm,
  oracleInfo,
  oracleLines,
  oracleLs,
  TEST_PREFIX,
} from './support/env.js';
import { sectors } from '../../src/structs/units.js';

kernelHooks({ sweepEach: false });

async function run(dm: DeviceMapper, type: TaskType, setup: (t: Task) => void = () => {}): Promise<Task> {
  const t = taskCreate(type, dm);
  setup(t);
  await t.run();
  return t;
}

function rows(t: Task): string[] {
  const out: string[] = [];
  let next = 0;
  do {
    const [n, start, length, type, params] = t.getNextTarget(next);
    if (type === '') break;
    out.push(`${start} ${length} ${type}${params ? ` ${params}` : ''}`);
    next = n;
  } while (next !== 0);
  return out;
}

describe('Task API round trips against the kernel', () => {
  let dm: DeviceMapper;
  let scratch: LoopScratch;
  let loop: LoopDevice;
  const name = dmName('task');

  beforeAll(async () => {
    dm = openDm();
    scratch = new LoopScratch('task');
    loop = await scratch.loop('a.img', 8 * 1024 * 1024);
  });
  afterAll(async () => {
    dm?.close();
    await scratch?.cleanup();
  });

  test('DeviceVersion and DeviceListVersions equal dmsetup version / targets', async () => {
    const v = await run(dm, TaskType.DeviceVersion);
    expect(`Driver version:    ${v.getDriverVersion()}`).toBe(/^Driver version:.*$/m.exec(dmsetupOk(['version']))![0]);
    const lv = await run(dm, TaskType.DeviceListVersions);
    const ours = (lv.getResult() as DmTargetVersion[]).map((x) => `${x.name} v${x.version.join('.')}`);
    expect(ours).toEqual(
      dmsetupOk(['targets'])
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.trim().replace(/\s+/, ' ')),
    );
  });

  test('DeviceCreate (with a target, uuid, read-only) and DeviceInfo', async () => {
    await run(dm, TaskType.DeviceCreate, (t) => {
      t.setName(name);
      t.setUuid(`${TEST_PREFIX}${process.pid}-task`);
      t.setRo();
      t.addTarget(0, 128, 'linear', `${devString(loop)} 0`);
    });
    const info = (await run(dm, TaskType.DeviceInfo, (t) => t.setName(name))).getInfo();
    const o = oracleInfo(name)!;
    expect(info).toMatchObject({
      exists: 1,
      liveTable: 1,
      inactiveTable: 0,
      suspended: 0,
      readOnly: 1,
      targetCount: 1,
      major: o.major,
      minor: o.minor,
      openCount: 0,
    });
    expect(o.attr.slice(0, 4)).toBe('L--r');
    expect(statSync(`/dev/mapper/${name}`).isBlockDevice()).toBe(true);
    const missing = (await run(dm, TaskType.DeviceInfo, (t) => t.setName(dmName('task-none')))).getInfo();
    expect(missing.exists).toBe(0);
  });

  test('DeviceTable, DeviceStatus, DeviceDeps, DeviceList', async () => {
    expect(rows(await run(dm, TaskType.DeviceTable, (t) => t.setName(name)))).toEqual(oracleLines('table', name));
    expect(rows(await run(dm, TaskType.DeviceStatus, (t) => t.setName(name)))).toEqual(oracleLines('status', name));
    const deps = (await run(dm, TaskType.DeviceDeps, (t) => t.setName(name))).getResult() as DevT[];
    expect(deps.map(devString)).toEqual([devString(loop)]);
    const list = (await run(dm, TaskType.DeviceList)).getResult() as DeviceListEntry[];
    const ls = oracleLs();
    expect(list.filter((d) => d.name.startsWith(TEST_PREFIX)).map((d) => [d.name, devString(d.dev)])).toEqual(
      [...ls.entries()].filter(([n]) => n.startsWith(TEST_PREFIX)),
    );
  });

  test('DeviceReload, DeviceClear, DeviceSuspend, DeviceResume', async () => {
    const reload = await run(dm, TaskType.DeviceReload, (t) => {
      t.setName(name);
      t.addTarget(0, 128, 'zero', '');
    });
    expect(reload.getInfo().inactiveTable).toBe(1);
    expect(oracleLines('table', name, ['--inactive'])).toEqual(['0 128 zero']);
    expect((await run(dm, TaskType.DeviceClear, (t) => t.setName(name))).getInfo().inactiveTable).toBe(0);
    expect(oracleInfo(name)!.attr.slice(0, 2)).toBe('L-');
    await run(dm, TaskType.DeviceReload, (t) => {
      t.setName(name);
      t.addTarget(0, 128, 'zero', '');
    });
    expect((await run(dm, TaskType.DeviceSuspend, (t) => t.setName(name))).getInfo().suspended).toBe(1);
    expect(oracleInfo(name)!.attr.slice(0, 3)).toBe('LIs');
    const resumed = (await run(dm, TaskType.DeviceResume, (t) => t.setName(name))).getInfo();
    expect(resumed).toMatchObject({ suspended: 0, inactiveTable: 0, liveTable: 1 });
    expect(oracleLines('table', name)).toEqual(['0 128 zero']);
  });

  test('DeviceSetGeometry, DeviceRename, DeviceWaitevent', async () => {
    await run(dm, TaskType.DeviceSetGeometry, (t) => {
      t.setName(name);
      t.setGeometry(2, 4, 16, 0);
    });
    const before = oracleInfo(name)!.events;
    const to = dmName('task-renamed');
    await run(dm, TaskType.DeviceRename, (t) => {
      t.setName(name);
      t.setNewName(to);
    });
    expect(oracleInfo(name)).toBeNull();
    expect(oracleInfo(to)!.events).toBe(before + 1);
    expect(statSync(`/dev/mapper/${to}`).isBlockDevice()).toBe(true);
    // Already past `before`: returns at once with the new number.
    const w = await run(dm, TaskType.DeviceWaitevent, (t) => {
      t.setName(to);
      t.setEventNr(before);
    });
    expect(w.getInfo().eventNr).toBe(before + 1);
    await run(dm, TaskType.DeviceRename, (t) => {
      t.setName(to);
      t.setNewName(name);
    });
  });

  test('DeviceTargetMsg to a thin-pool; EBUSY as ErrBusy', async () => {
    const pool = await makePool(dm, scratch, 'taskpool', { dataBytes: 16 * 1024 * 1024, metaBytes: 4 * 1024 * 1024 });
    const msg = await run(dm, TaskType.DeviceTargetMsg, (t) => {
      t.setName(pool.name);
      t.setSector(0);
      t.setMessage('set_transaction_id 0 5');
    });
    expect(msg.getMessageResponse()).toBe('');
    expect(oracleLines('status', pool.name)[0]).toMatch(/ thin-pool 5 /);
    const busy = await caught(() => run(dm, TaskType.DeviceCreate, (t) => t.setName(pool.name)));
    expect(busy).toBeInstanceOf(ErrBusy);
    expect(busy).toBeInstanceOf(ErrTaskRun);
    expect(busy).toMatchObject({ code: 'EBUSY' });
    await run(dm, TaskType.DeviceRemove, (t) => t.setName(pool.name));
    expect(oracleInfo(pool.name)).toBeNull();
  });

  test('DeviceCreate with AddNodeOnCreate, DeviceMknodes, DeviceRemove', async () => {
    const bare = dmName('task-bare');
    await run(dm, TaskType.DeviceCreate, (t) => {
      t.setName(bare);
      t.setAddNode(AddNodeType.AddNodeOnCreate);
    });
    expect(statSync(`/dev/mapper/${bare}`).isBlockDevice()).toBe(true);
    await dm.remove({ name: bare }, { noNode: true }); // the kernel's device goes, the node stays stale
    await run(dm, TaskType.DeviceMknodes);
    expect(() => statSync(`/dev/mapper/${bare}`)).toThrow(/ENOENT/);
    await run(dm, TaskType.DeviceRemove, (t) => t.setName(name));
    expect(oracleInfo(name)).toBeNull();
    expect(() => statSync(`/dev/mapper/${name}`)).toThrow(/ENOENT/);
  });

  test('DeviceRemoveAll (only when every device present is a test device)', async () => {
    const foreign = dm.list().filter((d) => !d.name.startsWith(TEST_PREFIX));
    if (foreign.length > 0) throw new Error(`refusing DM_REMOVE_ALL: foreign devices ${foreign.map((d) => d.name).join(', ')}`);
    await dm.create(dmName('task-all-1'), { table: [{ type: 'zero', startSector: sectors(0n), lengthSectors: sectors(8n) }] });
    await dm.create(dmName('task-all-2'));
    await run(dm, TaskType.DeviceRemoveAll);
    expect(oracleLs().size).toBe(0);
    expect(dm.list()).toEqual([]);
  });
});
