// listNames() and listView() against list() and `dmsetup ls` on a few hundred devices (made here,
// some with uuids and one with a UTF-8 name, all removed): the same reply read three ways.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceUuid, type DeviceName } from '../../src/dm/names.js';
import { devString, dmName, dmsetupOk, kernelHooks, openDm, RUN_PREFIX } from './support/env.js';

/** `dmsetup ls` with names as the kernel has them (its default mangling refuses a UTF-8 name). */
function oracleLs(): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of dmsetupOk(['ls', '--manglename', 'none']).split('\n')) {
    const r = /^(.*)\t\((\d+):(\d+)\)$/.exec(line);
    if (r) m.set(r[1]!, `${r[2]}:${r[3]}`);
  }
  return m;
}

kernelHooks({ sweepEach: false });

const COUNT = 300;
const UTF8_TAG = 'donn\u00e9es-\u6570\u636e';

describe('listNames and listView agree with list', () => {
  let dm: DeviceMapper;
  const names: DeviceName[] = Array.from({ length: COUNT }, (_, i) => dmName(`lv-${String(i).padStart(3, '0')}`));
  names.push(dmName(UTF8_TAG));
  const ours = (xs: readonly string[]) => xs.filter((n) => n.startsWith(RUN_PREFIX));

  beforeAll(async () => {
    dm = openDm();
    for (const [i, name] of names.entries()) {
      // Every third with a uuid: the uuid tail is in some records and not in others.
      const uuid = i % 3 === 0 ? deviceUuid(`${RUN_PREFIX}lv-uuid-${i}`) : undefined;
      await dm.create(name, { noNode: true, ...(uuid ? { uuid } : {}) });
    }
  }, 300_000);
  afterAll(async () => {
    // Without noNode: the rename test made a node for its device.
    for (const name of names) if (dm.info({ name })) await dm.remove({ name });
    expect(ours(dm.listNames())).toEqual([]);
    dm.close();
  }, 300_000);

  test('listNames: list()’s names, in the same order, and dmsetup’s', () => {
    const entries = dm.list();
    const listed = dm.listNames();
    expect(listed).toEqual(entries.map((e) => e.name));
    expect(ours(listed).sort()).toEqual(names.slice().sort());
    expect(ours([...oracleLs().keys()]).sort()).toEqual(ours(listed).sort());
  });

  test('listView: every field equals list()’s, with and without uuids', () => {
    for (const uuids of [false, true]) {
      const entries = dm.list({ uuids });
      const v = dm.listView({ uuids });
      expect(v.length).toBe(entries.length);
      expect([...v]).toEqual(entries);
      expect(v.names()).toEqual(entries.map((e) => e.name));
      entries.forEach((e, i) => {
        expect(v.name(i)).toBe(e.name);
        expect(v.dev(i)).toEqual(e.dev);
        expect(v.eventNr(i)).toBe(e.eventNr);
        expect(v.uuid(i)).toBe(e.uuid);
        expect(v.entry(i)).toEqual(e);
      });
      if (uuids) expect(entries.filter((e) => e.uuid?.startsWith(`${RUN_PREFIX}lv-uuid-`))).toHaveLength(Math.ceil(names.length / 3));
    }
  });

  test('listView: finds each device by name, the UTF-8 one too; dev as dmsetup ls says', () => {
    const v = dm.listView();
    const ls = oracleLs();
    for (const name of names) {
      const i = v.indexOf(name);
      expect(i).toBeGreaterThanOrEqual(0);
      expect(v.name(i)).toBe(name);
      expect(devString(v.dev(i))).toBe(ls.get(name));
    }
    expect(v.has(dmName(UTF8_TAG))).toBe(true);
    expect(v.indexOf(dmName('lv-missing'))).toBe(-1);
  });

  test('a view keeps its reply: later lists and a removed device do not change it', async () => {
    const v = dm.listView();
    const before = v.names();
    const gone = names[0]!;
    await dm.remove({ name: gone }, { noNode: true });
    expect(dm.listNames()).not.toContain(gone);
    dm.list();
    expect(v.names()).toEqual(before);
    expect(v.has(gone)).toBe(true);
    await dm.create(gone, { noNode: true, uuid: deviceUuid(`${RUN_PREFIX}lv-uuid-0`) });
    expect(dm.listNames()).toContain(gone);
  });

  test('listNames after a rename to a name of the same length: the new name, not the last list’s', async () => {
    const from = names[1]!;
    const to = dmName('lv-ren');
    expect(Buffer.byteLength(to)).toBe(Buffer.byteLength(from));
    expect(dm.listNames()).toContain(from);
    await dm.rename({ name: from }, to);
    try {
      const after = dm.listNames();
      expect(after).toContain(to);
      expect(after).not.toContain(from);
      expect(after).toEqual(dm.list().map((e) => e.name));
    } finally {
      await dm.rename({ name: to }, from);
    }
    expect(dm.listNames()).toContain(from);
  });
});
