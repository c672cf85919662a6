// The CLI's dm and loop commands, run through the real binary against the real kernel: each
// output compared with what dmsetup and losetup print for the same devices.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createThin } from '../../src/dm/thin-messages.js';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import {
  BIN,
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
  waitFor,
  cli,
  cliOk,
} from './support/env.js';
import { thinId, type DeviceName } from '../../src/dm/names.js';

kernelHooks({ sweepEach: false });

let dm: DeviceMapper;
let scratch: LoopScratch;
let lin: DeviceName;
let ro: DeviceName;
let pool: TestPool;
let thin: DeviceName;
let loopPath: string;
/** No table; suspended; only an inactive table. */
let nt: DeviceName;
let sp: DeviceName;
let io: DeviceName;

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
  createThin(dm, { name: pool.name }, thinId(0));
  thin = (await activateThin(dm, pool, 'cli-thin', 0, 4096n)).name;
  nt = dmName('cli-nt');
  sp = dmName('cli-sp');
  io = dmName('cli-io');
  cliOk(['dm', 'create', nt, '--notable']);
  cliOk(['dm', 'create', sp, '--table', `0 512 linear ${loop.path} 3072`]);
  cliOk(['dm', 'suspend', sp]);
  cliOk(['dm', 'create', io, '--notable']);
  cliOk(['dm', 'load', io, '--table', '0 512 zero']);
});

afterAll(async () => {
  if (sp && dm?.info({ name: sp })) await dm.resume({ name: sp });
  for (const name of [nt, sp, io, thin]) if (name && dm?.info({ name })) await dm.remove({ name });
  dm?.close();
  await scratch?.cleanup();
});

const ours = (name: string) => ([lin, ro, pool.name, thin, nt, sp, io] as string[]).includes(name);
/** dmsetup's all-devices output, kept to this file's devices (lines start with the name). */
const onlyOurs = (text: string): string =>
  text
    .split('\n')
    .filter((l) => l === '' || ours(l.split(/[:\t ]/)[0] ?? ''))
    .join('\n');

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
    for (const name of [lin, ro, pool.name, thin, nt, sp, io]) expect(cliOk(['dm', 'info', name])).toBe(dmsetupOk(['info', name]));
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
  test('devices without a table, suspended, or with only an inactive table: every listing as dmsetup', () => {
    for (const name of [nt, sp, io]) {
      for (const cmd of [['table'], ['status'], ['table', '--inactive'], ['status', '--inactive'], ['deps'], ['deps', '-o', 'devname']]) {
        expect(cliOk(['dm', ...cmd, name]), `${cmd.join(' ')} ${name}`).toBe(dmsetupOk([...cmd, name]));
      }
    }
    // Every device: dmsetup prints `nt: ` alone for a device without the table asked for.
    for (const cmd of [
      ['table'],
      ['status'],
      ['table', '--inactive'],
      ['status', '--inactive'],
      ['deps'],
      ['deps', '-o', 'devname'],
      ['deps', '-o', 'devno'],
    ]) {
      const ourText = onlyOurs(cliOk(['dm', ...cmd]));
      expect(ourText, cmd.join(' ')).toBe(onlyOurs(dmsetupOk(cmd)));
      expect(ourText).toContain(`${nt}: `);
    }
    expect(onlyOurs(cliOk(['dm', 'info', '-c']))).toBe(onlyOurs(dmsetupOk(['info', '-c'])));
    expect(onlyOurs(cliOk(['dm', 'ls', '--target', 'linear']))).toBe(onlyOurs(dmsetupOk(['ls', '--target', 'linear'])));
    expect(cliOk(['dm', 'ls', '--tree'])).toBe(dmsetupOk(['ls', '--tree']));
    const utf8 = { ...process.env, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', DM_DISABLE_UDEV: '1' };
    const ours = spawnSync(BIN, ['dm', 'ls', '--tree'], { encoding: 'utf8', env: utf8 }).stdout;
    expect(ours).toContain('└─');
    expect(ours).toBe(spawnSync('dmsetup', ['ls', '--tree'], { encoding: 'utf8', env: utf8 }).stdout);
  });
  test('deps, deps -o devname', () => {
    for (const name of [lin, pool.name, thin, nt, sp, io]) {
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
      expect(r.stderr).toMatch(/^devmapper dm: .*\(try 'devmapper dm( [\w-]+)? --help'\)\n$/);
    }
    expect(dmsetup(['info', bad]).status).not.toBe(0);
  });
  test('operation errors exit 1 with one line, the errno name first', () => {
    const missing = dmName('cli-missing');
    const r = cli(['dm', 'remove', missing]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^devmapper dm: ENXIO: /);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli(['dm', 'info', missing]).status).toBe(1);
  });
  test('create of a name that exists says it exists', () => {
    const r = cli(['dm', 'create', lin, '--table', `0 2048 linear ${loopPath} 0`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^devmapper dm: EBUSY: device ${lin} already exists \\(.*\\)\n$`));
  });
  test('a target type the kernel lacks is named, as dm targets would show; nothing is left', () => {
    const name = dmName('cli-notarget');
    const r = cli(['dm', 'create', name, '--table', '0 8 nosuchtarget']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^devmapper dm: EINVAL: the kernel has no target type 'nosuchtarget' \(not in 'devmapper dm targets'/);
    expect(dmsetupOk(['targets'])).not.toMatch(/^nosuchtarget /m);
    expect(dmsetup(['info', name]).status).not.toBe(0);
  });
  test('a thin device on a thin id the pool lacks: ENODATA with what to do', () => {
    const name = dmName('cli-nothin');
    const r = cli(['dm', 'create', name, '--table', `0 2048 thin ${devString(pool.dev)} 99`]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `devmapper dm: ENODATA: the pool ${pool.name} has no thin device with id 99 (create it first: devmapper dm message ${pool.name} 0 create_thin 99)\n`,
    );
    expect(dmsetup(['info', name]).status).not.toBe(0);
  });
  test('remove of a busy pool names its holders; --retry does not wait for what waiting cannot free', () => {
    const r = cli(['dm', 'remove', pool.name]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^devmapper dm: EBUSY: device ${pool.name} is in use: held by ${thin} \\(remove ${thin} first\\)\n$`),
    );
    const retried = cli(['dm', 'remove', pool.name, '--retry']);
    expect(retried.status).toBe(1);
    expect(retried.stderr).toMatch(/held by .*; not retried: waiting cannot free it \(remove .* first\)\n$/);
  });
  test('remove --retry of a device held open says what it tried', () => {
    const fd = openSync(`/dev/mapper/${lin}`, 'r');
    try {
      const r = cli(['dm', 'remove', lin, '--retry']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `^devmapper dm: EBUSY: device ${lin} is in use: open count 1; tried 26 times over \\d+\\.\\d s \\(close what holds it open`,
        ),
      );
    } finally {
      closeSync(fd);
    }
    expect(dmsetup(['info', lin]).status).toBe(0);
  });
});

describe('devmapper dm --json', () => {
  test('create, suspend, resume, rename, remove print the device; the same shape as info --json', () => {
    const name = dmName('cli-json');
    const created = JSON.parse(cliOk(['dm', 'create', name, '--table', '0 64 zero', '--json'])) as Record<string, unknown>;
    const [info] = JSON.parse(cliOk(['dm', 'info', name, '--json'])) as Record<string, unknown>[];
    expect(Object.keys(created).sort()).toEqual(Object.keys(info ?? {}).sort());
    expect(created).toMatchObject({ name, readAheadSectors: expect.stringMatching(/^\d+$/) });
    expect(JSON.parse(cliOk(['dm', 'suspend', name, '--json']))).toMatchObject({ name, suspended: true });
    expect(JSON.parse(cliOk(['dm', 'resume', name, '--json']))).toMatchObject({ name, suspended: false });
    const renamed = `${name}-r`;
    expect(JSON.parse(cliOk(['dm', 'rename', name, renamed, '--json']))).toMatchObject({ name: renamed });
    expect(JSON.parse(cliOk(['dm', 'remove', renamed, '--json']))).toMatchObject({ name: renamed, removed: true, deferredRemove: false });
    expect(dmsetup(['info', renamed]).status).not.toBe(0);
  });
  test('table --json of a device without a table: an empty target list', () => {
    expect(JSON.parse(cliOk(['dm', 'table', nt, '--json']))).toEqual([{ name: nt, targets: [] }]);
    expect(JSON.parse(cliOk(['dm', 'deps', nt, '--json']))).toEqual([{ name: nt, deps: [] }]);
  });
});

describe('devmapper help and version', () => {
  test('dm --help lists info -u UUID and deps -o devno; --version', () => {
    const help = cliOk(['dm', '--help']);
    expect(help).toMatch(/devmapper dm info \[NAME \| -u UUID\] \[-c\]/);
    expect(help).toMatch(/devmapper dm deps \[NAME\] \[-o devno\|devname\]/);
    expect(cliOk(['--version'])).toMatch(/^devmapper \d+\.\d+\.\d+\n$/);
    const byUuid = JSON.parse(cliOk(['dm', 'info', '-u', `${ro}-uuid`, '--json'])) as { name: string }[];
    expect(byUuid.map((i) => i.name)).toEqual([ro]);
    expect(cliOk(['dm', 'deps', '-o', 'devno', lin])).toBe(dmsetupOk(['deps', '-o', 'devno', lin]));
  });
});

describe('devmapper loop against losetup', () => {
  test('attach, ls, find, resize, detach', () => {
    const file = scratch.file('cli-loop.img', 4 * 1024 * 1024);
    const dev = cliOk(['loop', 'attach', file]).trim();
    expect(dev).toMatch(/^\/dev\/loop\d+$/);
    try {
      expect(cliOk(['loop', 'find', file])).toBe(execFileSync('losetup', ['-j', file], { encoding: 'utf8' }));
      const ls = cliOk(['loop', 'ls'])
        .split('\n')
        .filter((l) => l.startsWith(`${dev} `));
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

  test('find with no match: nothing, exit 0, as losetup -j', () => {
    const file = scratch.file('cli-unbound.img', 1024 * 1024);
    const ours = cli(['loop', 'find', file]);
    const theirs = spawnSync('losetup', ['-j', file], { encoding: 'utf8' });
    expect({ status: ours.status, stdout: ours.stdout, stderr: ours.stderr }).toEqual({
      status: theirs.status,
      stdout: theirs.stdout,
      stderr: '',
    });
    expect(ours.status).toBe(0);
    expect(JSON.parse(cliOk(['loop', 'find', file, '--json']))).toEqual([]);
  });
  test('a file on a read-only file system is bound read-only, as losetup does', () => {
    const dir = join(scratch.dir, 'ro-fs');
    mkdirSync(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]);
    try {
      execFileSync('truncate', ['-s', '1M', join(dir, 'r.img')]);
      execFileSync('mount', ['-o', 'remount,ro', dir]);
      const r = cli(['loop', 'attach', join(dir, 'r.img'), '--json']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/^devmapper loop: .*r\.img is not writable here \(EROFS\): \/dev\/loop\d+ is read-only, as losetup does\n$/);
      const v = JSON.parse(r.stdout) as { device: string; readOnly: boolean; offsetBytes: string; logicalBlockSizeBytes: string };
      expect(v).toMatchObject({ readOnly: true, offsetBytes: '0', logicalBlockSizeBytes: '512' });
      try {
        const losetup = execFileSync('losetup', ['-l', '-n', '-O', 'RO', v.device], { encoding: 'utf8' }).trim();
        expect(losetup).toBe('1');
        const ls = JSON.parse(cliOk(['loop', 'ls', '--json'])) as { device: string }[];
        expect(ls.find((l) => l.device === v.device)).toEqual(v);
      } finally {
        expect(JSON.parse(cliOk(['loop', 'detach', v.device, '--json']))).toEqual([{ device: v.device, detached: true }]);
      }
    } finally {
      execFileSync('umount', [dir]);
    }
  });
  test('attach --autoclear says the device went with its only user', async () => {
    const file = scratch.file('cli-autoclear.img', 1024 * 1024);
    const r = cli(['loop', 'attach', file, '--autoclear']);
    expect(r.status).toBe(0);
    const dev = r.stdout.trim();
    expect(dev).toMatch(/^\/dev\/loop\d+$/);
    expect(r.stderr).toMatch(
      new RegExp(`^devmapper loop: ${dev} was set to detach on last close; this command was its only user, so it is gone now`),
    );
    await waitFor(() => execFileSync('losetup', ['-j', file], { encoding: 'utf8' }) === '', `${dev} detached by autoclear`);
  });
  test('attach --help prints the help and attaches nothing', () => {
    const before = execFileSync('losetup', ['-l', '-n'], { encoding: 'utf8' });
    const r = cli(['loop', 'attach', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: devmapper loop attach FILE /);
    expect(execFileSync('losetup', ['-l', '-n'], { encoding: 'utf8' })).toBe(before);
  });
});
