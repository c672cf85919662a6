// The CLI's dm and loop commands, run through the real binary against the real kernel: each
// output compared with what dmsetup and losetup print for the same devices.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createThin } from '../../src/dm/thin-messages.js';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import {
  LoopScratch,
  activateThin,
  devString,
  dmName,
  dmsetup,
  dmsetupOk,
  kernelHooks,
  makePool,
  openDm,
  type TestPool,
  cli,
  cliOk,
} from './support/env.js';

kernelHooks({ sweepEach: false });



let dm: DeviceMapper;
let scratch: LoopScratch;
let lin: string;
let ro: string;
let pool: TestPool;
let thin: string;
let loopPath: string;

beforeAll(async () => {
  dm = openDm();
  scratch = new LoopScratch('cli');
  const loop = await scratch.loop('lin.img', 8 * 1024 * 1024);
  loopPath = loop.path;
  lin = dmName('cli-lin');
  ro = dmName('cli-ro');
  // Made through the CLI itself; what follows reads them back through both.
  cliOk(['dm', 'create', lin, '--table', `0 2048 linear ${loop.path} 0`]);
  cliOk(['dm', 'create', ro, '--uuid', `${ro}-uuid`, '--readonly', '--table', `0 1024 linear ${devString(loop)} 2048`]);
  pool = await makePool(dm, scratch, 'clipool');
  createThin(dm, { name: pool.name }, 0);
  thin = (await activateThin(dm, pool, 'cli-thin', 0, 4096n)).name;
});

afterAll(async () => {
  dm?.close();
  await scratch?.cleanup();
});

const ours = (name: string) => [lin, ro, pool.name, thin].includes(name);
/** dmsetup's all-devices output, kept to this file's devices (lines start with the name). */
const onlyOurs = (text: string): string =>
  text.split('\n').filter((l) => l === '' || ours(l.split(/[:\t ]/)[0] ?? '')).join('\n');

describe('devmapper dm against dmsetup', () => {
  test('version: the driver line', () => {
    expect(cliOk(['dm', 'version']).split('\n')[1]).toBe(dmsetupOk(['version']).split('\n')[1]);
  });
  test('targets and target-version', () => {
    expect(cliOk(['dm', 'targets'])).toBe(dmsetupOk(['targets']));
    expect(cliOk(['dm', 'target-version', 'thin-pool', 'linear'])).toBe(dmsetupOk(['target-version', 'thin-pool', 'linear']));
  });
  test('ls, ls --target, ls --tree', () => {
    expect(onlyOurs(cliOk(['dm', 'ls']))).toBe(onlyOurs(dmsetupOk(['ls'])));
    expect(onlyOurs(cliOk(['dm', 'ls', '--target', 'linear']))).toBe(onlyOurs(dmsetupOk(['ls', '--target', 'linear'])));
    expect(cliOk(['dm', 'ls', '--tree'])).toBe(dmsetupOk(['ls', '--tree']));
  });
  test('info NAME, info -c', () => {
    for (const name of [lin, ro, pool.name, thin]) expect(cliOk(['dm', 'info', name])).toBe(dmsetupOk(['info', name]));
    expect(onlyOurs(cliOk(['dm', 'info', '-c']))).toBe(onlyOurs(dmsetupOk(['info', '-c'])));
  });
  test('table and status, one device and all', () => {
    for (const name of [lin, ro, pool.name, thin]) {
      expect(cliOk(['dm', 'table', name])).toBe(dmsetupOk(['table', name]));
      expect(cliOk(['dm', 'status', name])).toBe(dmsetupOk(['status', name]));
    }
    expect(onlyOurs(cliOk(['dm', 'table']))).toBe(onlyOurs(dmsetupOk(['table'])));
    expect(onlyOurs(cliOk(['dm', 'status', '--target', 'thin']))).toBe(onlyOurs(dmsetupOk(['status', '--target', 'thin'])));
  });
  test('deps, deps -o devname', () => {
    for (const name of [lin, pool.name, thin]) {
      expect(cliOk(['dm', 'deps', name])).toBe(dmsetupOk(['deps', name]));
      expect(cliOk(['dm', 'deps', '-o', 'devname', name])).toBe(dmsetupOk(['deps', '-o', 'devname', name]));
    }
  });
  test('--json gives the same facts', () => {
    const infos = JSON.parse(cliOk(['dm', 'info', lin, '--json'])) as { name: string; dev: { major: number; minor: number } }[];
    const [maj, min] = dmsetupOk(['info', '-c', '--noheadings', '-o', 'major,minor', lin]).trim().split(':').map(Number);
    expect(infos[0]).toMatchObject({ name: lin, dev: { major: maj, minor: min } });
  });
  test('load, suspend, resume, clear, rename, setuuid, message, remove: seen by dmsetup', () => {
    cliOk(['dm', 'load', lin, '--table', `0 4096 linear ${loopPath} 0`]);
    expect(dmsetupOk(['table', '--inactive', lin]).trim()).toMatch(/^0 4096 linear \d+:\d+ 0$/);
    cliOk(['dm', 'clear', lin]);
    expect(dmsetupOk(['info', lin])).toMatch(/Tables present: +LIVE\n/);
    cliOk(['dm', 'suspend', lin, '--noflush', '--nolockfs']);
    expect(dmsetupOk(['info', lin])).toMatch(/State: +SUSPENDED/);
    cliOk(['dm', 'resume', lin]);
    expect(dmsetupOk(['info', lin])).toMatch(/State: +ACTIVE/);
    const renamed = `${lin}-r`;
    cliOk(['dm', 'rename', lin, renamed]);
    cliOk(['dm', 'rename', renamed, '--setuuid', `${renamed}-uuid`]);
    expect(dmsetupOk(['info', renamed])).toMatch(new RegExp(`UUID: ${renamed}-uuid`));
    cliOk(['dm', 'rename', renamed, lin]);
    cliOk(['dm', 'message', pool.name, '0', 'create_thin', '7']);
    expect(dmsetup(['message', pool.name, '0', 'create_thin', '7']).status).not.toBe(0); // EEXIST: it exists
    cliOk(['dm', 'message', pool.name, '0', 'delete', '7']);
    const tmp = dmName('cli-tmp');
    cliOk(['dm', 'create', tmp, '--notable']);
    expect(dmsetupOk(['info', tmp])).toMatch(/Tables present: +None/);
    cliOk(['dm', 'remove', tmp]);
    expect(dmsetup(['info', tmp]).status).not.toBe(0);
  });
});

describe('devmapper dm errors', () => {
  test('usage errors exit 2 with one line and create nothing', () => {
    const bad = dmName('cli-bad');
    for (const args of [
      ['dm', 'frobnicate'],
      ['dm', 'create'],
      ['dm', 'create', bad, '--table', '0 x linear /dev/loop0 0'],
      ['dm', 'create', bad, '--table', `0 2048 linear ${loopPath} 0`, '--bogus'],
      ['dm', 'message', bad, 'notasector', 'hello'],
    ]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^devmapper dm: .*\(try 'devmapper dm --help'\)\n$/);
    }
    expect(dmsetup(['info', bad]).status).not.toBe(0);
  });
  test('operation errors exit 1 with the errno name', () => {
    const missing = dmName('cli-missing');
    const r = cli(['dm', 'remove', missing]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ENXIO/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const busy = cli(['dm', 'create', lin, '--table', `0 2048 linear ${loopPath} 0`]);
    expect(busy.status).toBe(1);
    expect(busy.stderr).toMatch(/EBUSY/);
    expect(cli(['dm', 'info', missing]).status).toBe(1);
  });
});

describe('devmapper loop against losetup', () => {
  test('attach, ls, find, resize, detach', () => {
    const file = scratch.file('cli-loop.img', 4 * 1024 * 1024);
    const dev = cliOk(['loop', 'attach', file]).trim();
    expect(dev).toMatch(/^\/dev\/loop\d+$/);
    try {
      expect(cliOk(['loop', 'find', file])).toBe(execFileSync('losetup', ['-j', file], { encoding: 'utf8' }));
      const ls = cliOk(['loop', 'ls']).split('\n').filter((l) => l.startsWith(`${dev} `));
      const losetup = execFileSync('losetup', ['-l', dev], { encoding: 'utf8' }).split('\n')[1];
      expect(ls[0]?.split(/\s+/)).toEqual(losetup?.split(/\s+/));
      execFileSync('truncate', ['-s', '8M', file]);
      cliOk(['loop', 'resize', dev]);
      expect(execFileSync('blockdev', ['--getsize64', dev], { encoding: 'utf8' }).trim()).toBe(String(8 * 1024 * 1024));
    } finally {
      cliOk(['loop', 'detach', dev]);
    }
    expect(execFileSync('losetup', ['-j', file], { encoding: 'utf8' })).toBe('');
  });
});
