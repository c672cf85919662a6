// Our dmsetup-style output against what dmsetup printed for the same devices (golden commands.jsonl).
import { describe, expect, test } from 'vitest';
import {
  formatDeps,
  formatInfo,
  formatInfoColumns,
  formatLs,
  formatTargetLines,
  formatTargets,
  formatTree,
  localeIsUtf8,
  type InfoView,
} from '../../src/cli/dmsetup-format.js';
import { command } from '../support/golden.js';
import { deviceName, deviceUuid } from '../../src/dm/names.js';

const stdout = (n: number): string => command(n).stdout;

const dev = (major: number, minor: number) => ({ major, minor });
const info = (over: Partial<InfoView>): InfoView => ({
  name: deviceName('lin0'),
  uuid: '',
  dev: dev(254, 0),
  openCount: 0,
  eventNr: 0,
  targetCount: 1,
  readOnly: false,
  suspended: false,
  liveTable: true,
  inactiveTable: false,
  deferredRemove: false,
  readAheadSectors: 256,
  ...over,
});

describe('dmsetup formats', () => {
  test('targets (2)', () => {
    const list = [
      { name: 'zero', version: [1, 1, 0] },
      { name: 'thin-pool', version: [1, 22, 0] },
      { name: 'thin', version: [1, 22, 0] },
      { name: 'striped', version: [1, 6, 0] },
      { name: 'linear', version: [1, 4, 0] },
      { name: 'error', version: [1, 5, 0] },
    ];
    expect(formatTargets(list)).toBe(stdout(2));
  });
  test('ls empty (4), ls (29), ls --target (30)', () => {
    expect(formatLs([])).toBe(stdout(4));
    const devs = [
      { name: deviceName('lin2'), dev: dev(254, 1) },
      { name: deviceName('lin0'), dev: dev(254, 0) },
      { name: deviceName('empty0'), dev: dev(254, 2) },
    ];
    expect(formatLs(devs)).toBe(stdout(29));
    expect(
      formatLs(
        devs.filter((d) => d.name !== 'empty0'),
        true,
      ),
    ).toBe(stdout(30));
  });
  test('info: inactive table (26), live (35), read-only with uuid (37), suspended (42)', () => {
    expect(formatInfo(info({ name: deviceName('empty0'), dev: dev(254, 2), targetCount: 0, liveTable: false, inactiveTable: true }))).toBe(
      stdout(26),
    );
    expect(formatInfo(info({}))).toBe(stdout(35));
    expect(formatInfo(info({ name: deviceName('lin2'), dev: dev(254, 1), readOnly: true, uuid: deviceUuid('DMGOLD-lin2-uuid') }))).toBe(
      stdout(37),
    );
    expect(formatInfo(info({ suspended: true }))).toBe(stdout(42));
  });
  test('info -c (36)', () => {
    expect(
      formatInfoColumns([
        info({ name: deviceName('lin2'), dev: dev(254, 1), readOnly: true, uuid: deviceUuid('DMGOLD-lin2-uuid') }),
        info({}),
        info({ name: deviceName('empty0'), dev: dev(254, 2) }),
      ]),
    ).toBe(stdout(36));
  });
  test('table and status lines (27, 33, 66, 72, 82)', () => {
    const l = (s: number, n: number, type: string, params: string) => ({ startSector: BigInt(s), lengthSectors: BigInt(n), type, params });
    expect(formatTargetLines([l(0, 1024, 'zero', '')])).toBe(stdout(27));
    expect(
      formatTargetLines([l(0, 1024, 'zero', '')], 'empty0: ') +
        formatTargetLines([l(0, 2048, 'linear', '7:2 0')], 'lin0: ') +
        formatTargetLines([l(0, 1024, 'linear', '7:2 2048')], 'lin2: '),
    ).toBe(stdout(33));
    expect(formatTargetLines([l(0, 2097152, 'thin-pool', '0 1649/16384 0/16384 - rw discard_passdown queue_if_no_space - 1024 ')])).toBe(
      stdout(66),
    );
    expect(formatTargetLines([l(0, 2097152, 'thin', '0 -')])).toBe(stdout(72));
  });
  test('deps (39, 40, 84)', () => {
    expect(formatDeps([dev(7, 2)])).toBe(stdout(39));
    expect(formatDeps([dev(7, 2)], ['loop2'])).toBe(stdout(40));
    expect(formatDeps([dev(254, 4)])).toBe(stdout(84));
  });
  test('ls --tree (31, 85)', () => {
    const list = [
      { name: 'big0', dev: dev(254, 3) },
      { name: deviceName('empty0'), dev: dev(254, 2) },
      { name: 'lin1', dev: dev(254, 0) },
      { name: deviceName('lin2'), dev: dev(254, 1) },
      { name: 'pool', dev: dev(254, 4) },
      { name: 'snap1', dev: dev(254, 6) },
      { name: 'thin0', dev: dev(254, 5) },
    ];
    const deps: Record<string, ReturnType<typeof dev>[]> = {
      '254:3': [dev(7, 2)],
      '254:2': [],
      '254:0': [dev(7, 2)],
      '254:1': [dev(7, 2)],
      '254:4': [dev(7, 1), dev(7, 0)],
      '254:6': [dev(254, 4)],
      '254:5': [dev(254, 4)],
    };
    expect(formatTree(list, (d) => deps[`${d.major}:${d.minor}`] ?? [])).toBe(stdout(85));
  });
});

describe('locale', () => {
  test('UTF-8 codeset as the C library reads it', () => {
    expect(localeIsUtf8({ LANG: 'C.UTF-8' })).toBe(true);
    expect(localeIsUtf8({ LANG: 'en_US.utf8' })).toBe(true);
    expect(localeIsUtf8({ LC_ALL: 'C', LANG: 'C.UTF-8' })).toBe(false);
    expect(localeIsUtf8({})).toBe(false);
  });
  test('the tree in box characters', () => {
    const tree = formatTree(
      [
        { name: 'thin', dev: dev(254, 1) },
        { name: 'pool', dev: dev(254, 0) },
      ],
      (d) => (d.minor === 1 && d.major === 254 ? [dev(254, 0)] : d.major === 254 ? [dev(7, 1), dev(7, 0)] : []),
      true,
    );
    expect(tree).toBe('thin (254:1)\n └─pool (254:0)\n    ├─ (7:1)\n    └─ (7:0)\n');
  });
});
