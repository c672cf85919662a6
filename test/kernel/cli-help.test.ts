// The CLI's contract for help: `-h`, `--help` and `help X` on every command and subcommand, given
// the arguments that would make the command act, print the help generated from the command table,
// exit 0 and change nothing: dm devices (names, tables, state), loop devices and mounts are the
// same before and after, as dmsetup, losetup and the kernel's mount table see them.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { commandHelp, groupHelp, type Group } from '../../src/cli/command.js';
import { group as dm } from '../../src/cli/dm.js';
import { group as layer } from '../../src/cli/layer.js';
import { group as loop } from '../../src/cli/loop.js';
import { main } from '../../src/cli/main.js';
import { group as pool } from '../../src/cli/pool.js';
import { group as snapshotter } from '../../src/cli/snapshotter.js';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { createThin } from '../../src/dm/thin-messages.js';
import {
  activateThin,
  cli,
  linearOver,
  dmName,
  dmsetupOk,
  kernelHooks,
  LoopScratch,
  makePool,
  openDm,
  RUN_DIR,
  type TestPool,
} from './support/env.js';
import { thinId, type DeviceName } from '../../src/dm/names.js';

kernelHooks({ sweepEach: false });

let d: DeviceMapper;
let scratch: LoopScratch;
let pool0: TestPool;
let lin: DeviceName;
let thin: DeviceName;
let loopDev: string;
let spare: string;
const home = join(RUN_DIR, 'help-home');

beforeAll(async () => {
  d = openDm();
  scratch = new LoopScratch('cli-help');
  const l = await scratch.loop('lin.img', 8 * 1024 * 1024);
  loopDev = l.path;
  lin = dmName('help-lin');
  await d.create(lin, { table: linearOver(l, 2048n) });
  pool0 = await makePool(d, scratch, 'helppool');
  createThin(d, { name: pool0.name }, thinId(0));
  thin = (await activateThin(d, pool0, 'help-thin', 0, 4096n)).name;
  spare = scratch.file('spare.img', 1024 * 1024);
});

afterAll(async () => {
  for (const name of [thin, lin]) if (name && d.info({ name })) await d.remove({ name });
  d?.close();
  await scratch?.cleanup();
});

/** What a command that ran would have changed. */
function state(): Record<string, string> {
  return {
    info: dmsetupOk(['info', '-c', '--noheadings', '-o', 'name,attr,open,segments,events,uuid']),
    table: dmsetupOk(['table']),
    inactive: dmsetupOk(['table', '--inactive']),
    loops: spawnSync('losetup', ['-l', '-n'], { encoding: 'utf8' }).stdout,
    mounts: readFileSync('/proc/self/mountinfo', 'utf8'),
    home: String(existsSync(home)),
    socket: String(existsSync(join(RUN_DIR, 'help.sock'))),
  };
}

/** Arguments that make each command act, were it run. */
function actingArgs(g: Group, name: string): string[] {
  const h = ['--home', home];
  const table: Record<string, string[]> = {
    'dm create': [dmName('help-new'), '--table', '0 8 zero'],
    'dm load': [lin, '--table', `0 1024 linear ${loopDev} 0`],
    'dm clear': [lin],
    'dm suspend': [thin],
    'dm resume': [thin],
    'dm remove': [thin],
    'dm remove_all': [],
    'dm rename': [lin, dmName('help-renamed')],
    'dm message': [pool0.name, '0', 'create_thin', '5'],
    'dm wait': [lin, '0'],
    'dm setgeometry': [lin, '1', '2', '3', '0'],
    'dm mknodes': [],
    'loop attach': [spare],
    'loop detach': [loopDev],
    'loop resize': [loopDev],
    'pool init': [...h, '--storage-opt', 'dm.loopdatasize=64M'],
    'pool resize': ['1G', ...h],
    'pool shutdown': h,
    'layer create': ['x', ...h],
    'layer rm': ['x', ...h],
    'layer mount': ['x', ...h],
    'layer umount': ['x', ...h],
    'snapshotter serve': [...h, '--address', join(RUN_DIR, 'help.sock')],
  };
  return table[`${g.name} ${name}`] ?? [];
}

let out = '';
let err = '';
beforeEach(() => {
  out = '';
  err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((t: string | Uint8Array) => {
    out += String(t);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((t: string | Uint8Array) => {
    err += String(t);
    return true;
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe('help on every command changes nothing', () => {
  for (const g of [dm, loop, pool, layer, snapshotter]) {
    test(`${g.name} and each of its subcommands`, async () => {
      const before = state();
      for (const args of [
        [g.name, '--help'],
        [g.name, '-h'],
        [g.name, 'help'],
        ['help', g.name],
      ]) {
        out = '';
        expect(await main(args), args.join(' ')).toBe(0);
        expect(out).toBe(groupHelp(g));
      }
      for (const c of g.commands) {
        const acting = actingArgs(g, c.name);
        for (const args of [
          [g.name, c.name, ...acting, '--help'],
          [g.name, c.name, '-h', ...acting],
          [g.name, 'help', c.name],
          ['help', g.name, c.name],
        ]) {
          out = '';
          err = '';
          expect({ args, code: await main(args), err }).toEqual({ args, code: 0, err: '' });
          expect(out, args.join(' ')).toBe(commandHelp(g, c));
        }
        expect(state(), `${g.name} ${c.name}`).toEqual(before);
      }
    });
  }
});

describe('through the binary', () => {
  test('the command lines that once acted print help and leave every device as it was', () => {
    const before = state();
    for (const args of [
      ['dm', 'remove_all', '--help'],
      ['dm', 'remove', thin, '--help'],
      ['dm', 'suspend', thin, '--help'],
      ['dm', 'create', dmName('hz'), '--table', '0 8 zero', '--help'],
      ['dm', 'info', '--help'],
      ['loop', 'attach', '--help'],
      ['loop', 'attach', spare, '-h'],
      ['help', 'dm', 'remove'],
      ['snapshotter', 'serve', '--home', home, '--address', join(RUN_DIR, 'help.sock'), '--help'],
    ]) {
      const r = cli(args);
      expect({ args, status: r.status, stderr: r.stderr }).toEqual({ args, status: 0, stderr: '' });
      expect(r.stdout).toMatch(/^usage: devmapper (dm|loop|snapshotter) [\w-]+/);
    }
    expect(state()).toEqual(before);
  }, 600_000); // nine cold starts of the binary: slow in a loaded guest without a build
});
