// The Task API of Docker's Go devmapper package over the replay: the same ioctls as the typed API,
// that package's names and errors.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/dm/errors.js';
import {
  AddNodeType,
  ErrBusy,
  ErrInvalidAddNode,
  ErrNilCookie,
  ErrTaskAddTarget,
  ErrTaskGetInfo,
  ErrTaskRun,
  ErrTaskSetName,
  ErrTaskSetSector,
  TaskType,
  taskCreate,
} from '../../src/dm/task.js';
import { ReplayTransport, replayDeviceMapper, type ReplaySession } from '../support/replay.js';

async function withReplay(ns: number[], run: (s: ReplaySession) => Promise<void>): Promise<ReplaySession> {
  const s = replayDeviceMapper(ReplayTransport.of(...ns));
  await run(s);
  s.finish();
  return s;
}

describe('Task API', () => {
  it("keeps the Go package's TaskType order", () => {
    expect(TaskType.DeviceCreate).toBe(0);
    expect(TaskType.DeviceInfo).toBe(6);
    expect(TaskType.DeviceTargetMsg).toBe(17);
    expect(TaskType.DeviceSetGeometry).toBe(18);
    expect(AddNodeType.AddNodeOnCreate).toBe(1);
  });

  it('#19 DeviceCreate with a target, cookie, getInfo', () =>
    withReplay([19], async ({ dm, nodes }) => {
      const t = taskCreate(TaskType.DeviceCreate, dm);
      t.setName('lin0');
      t.addTarget(0, 2048, 'linear', '/dev/loop2 0');
      const cookie = { value: 7 };
      t.setCookie(cookie, 0);
      expect(cookie.value).toBe(0);
      await t.run();
      expect(t.getInfo()).toEqual({
        exists: 1,
        suspended: 0,
        liveTable: 1,
        inactiveTable: 0,
        openCount: 0,
        eventNr: 0,
        major: 254,
        minor: 0,
        readOnly: 0,
        targetCount: 1,
      });
      expect(nodes.ops).toEqual(['add lin0 254:0']);
      expect(t.getDriverVersion()).toBe('4.47.0');
    }));

  it('#23 DeviceCreate read-only (setRo) with a uuid', () =>
    withReplay([23], async ({ dm }) => {
      const t = taskCreate(TaskType.DeviceCreate, dm);
      t.setName('lin2');
      t.setUuid('DMGOLD-lin2-uuid');
      t.setRo();
      t.addTarget(0n, 1024n, 'linear', '/dev/loop2 2048');
      await t.run();
      expect(t.getInfo()).toMatchObject({ readOnly: 1, minor: 1 });
    }));

  it('#35 DeviceInfo, #59 DeviceInfo of a missing device (exists 0)', () =>
    withReplay([35, 59], async ({ dm }) => {
      const t = taskCreate(TaskType.DeviceInfo, dm);
      t.setName('lin0');
      await t.run();
      expect(t.getInfo()).toMatchObject({ exists: 1, liveTable: 1, major: 254, minor: 0 });
      const missing = taskCreate(TaskType.DeviceInfo, dm);
      missing.setName('nosuchdev');
      await missing.run();
      expect(missing.getInfo().exists).toBe(0);
    }));

  it('#62 DeviceTable and #72 DeviceStatus iterate with getNextTarget', async () => {
    await withReplay([62], async ({ dm }) => {
      const t = taskCreate(TaskType.DeviceTable, dm);
      t.setName('big0');
      await t.run();
      const rows: string[] = [];
      let next = 0;
      do {
        const [n, start, length, type, params] = t.getNextTarget(next);
        rows.push(`${start} ${length} ${type} ${params}`);
        next = n;
      } while (next !== 0);
      expect(rows).toHaveLength(2000);
      expect(rows[1999]).toBe('1999 1 linear 7:2 1999');
    });
    await withReplay([72], async ({ dm }) => {
      const t = taskCreate(TaskType.DeviceStatus, dm);
      t.setName('thin0');
      await t.run();
      expect(t.getNextTarget(0)).toEqual([0, 0n, 2097152n, 'thin', '0 -']);
    });
  });

  it('#68 DeviceTargetMsg, #69 EEXIST as ErrTaskRun with the DmError as cause', () =>
    withReplay([68, 69], async ({ dm }) => {
      const t = taskCreate(TaskType.DeviceTargetMsg, dm);
      t.setName('pool');
      t.setSector(0);
      t.setMessage('create_thin 0');
      await t.run();
      expect(t.getMessageResponse()).toBe('');
      const again = taskCreate(TaskType.DeviceTargetMsg, dm);
      again.setName('pool');
      again.setMessage('create_thin 0');
      const err = await again.run().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ErrTaskRun);
      expect(err).toMatchObject({ code: 'EEXIST' });
      expect((err as Error).cause).toMatchObject({ command: 'DM_TARGET_MSG', device: 'pool' });
    }));

  it('#86 DeviceRemove of a busy device -> ErrBusy (also an ErrTaskRun); #88 remove', () =>
    withReplay([86, 88], async ({ dm }) => {
      const busy = taskCreate(TaskType.DeviceRemove, dm);
      busy.setName('pool');
      const err = await busy.run().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ErrBusy);
      expect(err).toBeInstanceOf(ErrTaskRun);
      const t = taskCreate(TaskType.DeviceRemove, dm);
      t.setName('snap1');
      await t.run();
    }));

  it('#41 DeviceSuspend, #43 DeviceResume, #53 DeviceRename, #25 DeviceReload, #48 DeviceClear', async () => {
    await withReplay([41, 43, 53], async ({ dm }) => {
      const s = taskCreate(TaskType.DeviceSuspend, dm);
      s.setName('lin0');
      await s.run();
      expect(s.getInfo().suspended).toBe(1);
      const r = taskCreate(TaskType.DeviceResume, dm);
      r.setName('lin0');
      await r.run();
      expect(r.getInfo().suspended).toBe(0);
      const n = taskCreate(TaskType.DeviceRename, dm);
      n.setName('lin0');
      n.setNewName('lin1');
      await n.run();
    });
    await withReplay([25, 48], async ({ dm }) => {
      const l = taskCreate(TaskType.DeviceReload, dm);
      l.setName('empty0');
      l.addTarget(0, 1024, 'zero', '');
      await l.run();
      expect(l.getInfo().inactiveTable).toBe(1);
      const c = taskCreate(TaskType.DeviceClear, dm);
      c.setName('lin0');
      await c.run();
    });
  });

  it('#1 DeviceVersion, #2 DeviceListVersions, #29 DeviceList, #39 DeviceDeps, #52 DeviceWaitevent, #51 DeviceSetGeometry', () =>
    withReplay([1, 2, 29, 39, 52, 51], async ({ dm }) => {
      const v = taskCreate(TaskType.DeviceVersion, dm);
      await v.run();
      expect(v.getDriverVersion()).toBe('4.47.0');
      const lv = taskCreate(TaskType.DeviceListVersions, dm);
      await lv.run();
      expect(lv.getResult()).toContainEqual({ name: 'thin-pool', version: [1, 22, 0] });
      const ls = taskCreate(TaskType.DeviceList, dm);
      await ls.run();
      expect((ls.getResult() as unknown[]).length).toBe(3);
      const d = taskCreate(TaskType.DeviceDeps, dm);
      d.setName('lin0');
      await d.run();
      expect(d.getResult()).toEqual([{ major: 7, minor: 2 }]);
      const w = taskCreate(TaskType.DeviceWaitevent, dm);
      w.setName('lin0');
      w.setEventNr(99);
      await w.run();
      expect(w.getInfo().eventNr).toBe(0);
      const g = taskCreate(TaskType.DeviceSetGeometry, dm);
      g.setName('lin0');
      g.setGeometry(1, 64, 32, 0);
      await g.run();
    }));

  it('#95 DeviceRemoveAll', () =>
    withReplay([95], async ({ dm, nodes }) => {
      for (const n of ['lin1', 'empty0', 'lin2']) nodes.nodes.set(n, { major: 254, minor: 0 });
      await taskCreate(TaskType.DeviceRemoveAll, dm).run();
      expect(nodes.list()).toEqual([]);
    }));

  it("setters refuse bad input with the Go package's errors, before anything is sent", () =>
    withReplay([35], async ({ dm, replay }) => {
      const t = taskCreate(TaskType.DeviceCreate, dm);
      expect(() => t.setName('a/b')).toThrow(ErrTaskSetName);
      expect(() => t.setName('x'.repeat(128))).toThrow(ErrTaskSetName);
      try {
        t.setName('a/b');
      } catch (e) {
        expect((e as Error).cause).toBeInstanceOf(InvalidArgumentError);
      }
      expect(() => t.setSector(-1)).toThrow(ErrTaskSetSector);
      expect(() => t.setCookie(null, 0)).toThrow(ErrNilCookie);
      expect(() => t.setAddNode(5 as AddNodeType)).toThrow(ErrInvalidAddNode);
      expect(() => t.addTarget(0, 8, 'thin', '/dev/mapper/pool 16777216')).toThrow(ErrTaskAddTarget);
      expect(() => t.addTarget(0, 8, 'linear', '/dev/loop0')).toThrow(/linear target parameters/);
      expect(() => t.getInfo()).toThrow(ErrTaskGetInfo);
      expect(replay.calls.map((c) => c.command)).toEqual(['DM_VERSION']);
      // finish() would flag the unused DEV_STATUS: use it.
      const i = taskCreate(TaskType.DeviceInfo, dm);
      i.setName('lin0');
      await i.run();
    }));
});
