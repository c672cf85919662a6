// `devmapper pool` and `devmapper layer` through the real binary against the real kernel, each
// command in its own process: the pool and the mounts must outlive the process that made them,
// and what the CLI reports must agree with dmsetup and the kernel's mount table.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { listLoops } from '../../src/loop/index.js';
import { cli, cliOk, dmsetup, dmsetupOk, kernelHooks, oracleLs, RUN_DIR, type CliRun } from './support/env.js';

kernelHooks({ sweepEach: false });

const HOME = join(RUN_DIR, 'cli-home');
const PREFIX = `dmtest-${process.pid}-cli`;
const INIT_OPTS = [
  'dm.loopdatasize=256M',
  'dm.loopmetadatasize=16M',
  'dm.basesize=64M',
  'dm.min_free_space=0%',
  `dm.prefix=${PREFIX}`,
].flatMap((o) => ['--storage-opt', o]);

/** A command on HOME (the options recorded by `pool init` are not repeated). */
const on = (...args: string[]): string[] => [...args, '--home', HOME];

interface StatusJson {
  poolName: string;
  transactionId: string;
  blockSizeBytes: string;
  baseSizeBytes: string;
  data: { usedBytes: string; totalBytes: string };
  metadata: { usedBytes: string; totalBytes: string };
  dataFile: string;
}
interface LayerJson {
  id: string;
  thinId: number;
  sizeBytes: string;
  mappedSectors: string;
  active: boolean;
  mounted: string[];
}
const poolStatus = (): StatusJson => JSON.parse(cliOk(on('pool', 'status', '--json'))) as StatusJson;
const layers = (): LayerJson[] => JSON.parse(cliOk(on('layer', 'ls', '--json'))) as LayerJson[];
const mountedAt = (path: string): boolean =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
const ourLoops = () => listLoops().filter((l) => l.backingFile.startsWith(`${HOME}/`));
/** One line on stderr: the message (usage errors end with main's `(try 'devmapper X --help')`). */
function expectOneLine(r: CliRun, code: number, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^devmapper( \w+)?: /);
  expect(lines[0]).toMatch(pattern);
}

let poolName: string;

beforeAll(() => {
  mkdirSync(RUN_DIR, { recursive: true });
});

describe('devmapper pool', () => {
  test('init makes the pool; status agrees with dmsetup status', () => {
    const text = cliOk(['pool', 'init', '--home', HOME, ...INIT_OPTS]);
    expect(text).toMatch(/^pool +dmtest-\d+-cli-\d+:\d+-\d+-pool \(ok, rw\)$/m);
    expect(text).toMatch(/^data +\S+ \S+ +256\.0 MiB +\d+\.\d%$/m);
    expect(readFileSync(join(HOME, 'storage-opts'), 'utf8')).toContain(`dm.prefix=${PREFIX}`);
    const s = poolStatus();
    poolName = s.poolName;
    // <start> <len> thin-pool <txid> <used meta>/<total meta> <used data>/<total data> ...
    const w = dmsetupOk(['status', poolName]).trim().split(' ');
    expect(w[2]).toBe('thin-pool');
    expect(s.transactionId).toBe(w[3]);
    expect(`${BigInt(s.metadata.usedBytes) / 4096n}/${BigInt(s.metadata.totalBytes) / 4096n}`).toBe(w[4]);
    // The pool's data block size, as its table has it (<start> <len> thin-pool <meta> <data> <block sectors> ...).
    const table = dmsetupOk(['table', poolName]).trim().split(' ');
    expect(s.blockSizeBytes).toBe(String(BigInt(table[5] as string) * 512n));
    expect(s).not.toHaveProperty('sectorSizeBytes');
    expect(s.baseSizeBytes).toBe(String(64 * 2 ** 20));
    const block = BigInt(s.blockSizeBytes);
    expect(`${BigInt(s.data.usedBytes) / block}/${BigInt(s.data.totalBytes) / block}`).toBe(w[5]);
    expect(s.data.totalBytes).toBe(String(256 * 2 ** 20));
    expect(s.dataFile).toBe(join(HOME, 'devicemapper', 'data'));
    expect(ourLoops()).toHaveLength(2);
  });

  test('layers across processes: create, mount, write, umount, snapshot, status, rm', () => {
    cliOk(on('layer', 'create', 'l1'));
    const mnt1 = cliOk(on('layer', 'mount', 'l1')).trim();
    expect(mnt1).toBe(join(HOME, 'mnt', 'l1'));
    expect(mountedAt(mnt1)).toBe(true); // the mount outlived the process that made it
    writeFileSync(join(mnt1, 'hello'), 'from l1');
    expect(cliOk(on('layer', 'mount', 'l1')).trim()).toBe(mnt1); // again: already there, no second mount
    const l1 = layers().find((l) => l.id === 'l1');
    expect(l1).toMatchObject({ active: true, mounted: [mnt1], thinId: 1, sizeBytes: String(64 * 2 ** 20) });
    expect(cliOk(on('layer', 'ls'))).toMatch(new RegExp(`^l1 +1 +64\\.0 MiB +\\S+ MiB +\\S+ (?:[KMG]i)?B +yes +${mnt1}$`, 'm'));

    cliOk(on('layer', 'umount', 'l1')); // a later process finds the mount in the mount table
    expect(mountedAt(mnt1)).toBe(false);
    expect(dmsetup(['info', `${poolName.replace(/-pool$/, '')}-l1`]).status).not.toBe(0); // deactivated
    expectOneLine(cli(on('layer', 'umount', 'l1')), 1, /EINVAL: device "l1" is not mounted/);

    cliOk(on('layer', 'create', 'l2', '--parent', 'l1'));
    const mnt2 = join(RUN_DIR, 'cli-mnt-l2');
    expect(cliOk(on('layer', 'mount', 'l2', mnt2)).trim()).toBe(mnt2);
    expect(readFileSync(join(mnt2, 'hello'), 'utf8')).toBe('from l1');
    writeFileSync(join(mnt2, 'two'), 'x'.repeat(1 << 20));
    const st = JSON.parse(cliOk(on('layer', 'status', 'l2', '--json'))) as LayerJson;
    expect(st).toMatchObject({ id: 'l2', thinId: 2, active: true, mounted: [mnt2] });
    const thinStatus = dmsetupOk(['status', `${poolName.replace(/-pool$/, '')}-l2`])
      .trim()
      .split(' ');
    expect(thinStatus[3]).toBe(st.mappedSectors); // <start> <len> thin <mapped sectors> <highest>
    expect(cliOk(on('layer', 'status', 'l2'))).toMatch(new RegExp(`^mounted on +${mnt2}$`, 'm'));

    expectOneLine(cli(on('layer', 'rm', 'l2')), 1, /EBUSY.*mounted on/);
    expect(mountedAt(mnt2)).toBe(true);
    expectOneLine(cli(on('layer', 'mount', 'l2', join(RUN_DIR, 'elsewhere'))), 1, /EBUSY: device \S+-l2 is busy: already mounted on/);
    cliOk(on('layer', 'umount', 'l2'));
    expect(JSON.parse(cliOk(on('layer', 'rm', 'l2', '--json')))).toEqual({ id: 'l2', removed: true });
    expect(layers().map((l) => l.id)).toEqual(['l1']);
  });

  test('operation errors: exit 1, one line with the errno name', () => {
    expectOneLine(cli(on('layer', 'rm', 'nosuch')), 1, /ENOENT: unknown device "nosuch"/);
    expectOneLine(cli(on('layer', 'create', 'l1')), 1, /EEXIST/);
    expectOneLine(cli(on('layer', 'create', 'l3', '--parent', 'nosuch')), 1, /ENOENT/);
    expectOneLine(
      cli(on('pool', 'resize', '128M')),
      2,
      /^devmapper pool: SIZE 128\.0 MiB \(134217728 bytes\): the pool's data is 256\.0 MiB already; it can only grow/,
    );
    const odd = cli(on('pool', 'resize', '600000001'));
    expectOneLine(
      odd,
      2,
      /^devmapper pool: SIZE 572\.2 MiB \(600000001 bytes\) is not a multiple of the pool's block size 64\.0 KiB \(e\.g\. \d+ or \d+\) \(try 'devmapper pool resize --help'\)$/,
    );
    expect(odd.stderr).not.toMatch(/resizePool|\d+n\b/);
    expect(poolStatus().data.totalBytes).toBe(String(256 * 2 ** 20));
    const other = join(RUN_DIR, 'cli-nopool');
    expectOneLine(cli(['layer', 'ls', '--home', other]), 1, /ENOENT: no pool in .*pool init/);
    expect(existsSync(other)).toBe(false);
  });

  test('layer umount of a mount a shell is in: says a process uses it, not to run layer umount', async () => {
    const mnt = cliOk(on('layer', 'mount', 'l1')).trim();
    // exec: the process we kill is the one whose working directory holds the mount.
    const shell = spawn('sh', ['-c', 'cd "$0" && exec sleep 60', mnt], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const r = cli(on('layer', 'umount', 'l1'));
      expectOneLine(
        r,
        1,
        /^devmapper layer: EBUSY: .*\(a process uses the mount \(a shell cd'd into it, an open file\): find it with 'fuser -vm PATH'/,
      );
      expect(r.stderr).not.toMatch(/'devmapper layer umount ID'/);
      const down = cli(on('pool', 'shutdown'));
      expectOneLine(down, 1, /^devmapper pool: EBUSY: .*\(a process uses the mount .*'fuser -vm PATH'/);
    } finally {
      shell.kill();
      await new Promise((r) => shell.once('exit', r));
    }
    cliOk(on('layer', 'umount', 'l1'));
    expect(mountedAt(mnt)).toBe(false);
  });

  test('resize grows the data file and the pool', () => {
    cliOk(on('pool', 'resize', '512M'));
    expect(poolStatus().data.totalBytes).toBe(String(512 * 2 ** 20));
    expect(dmsetupOk(['table', poolName])).toMatch(/^0 1048576 thin-pool /);
  });

  test('shutdown unmounts and removes everything but the data; init finds the layers again', () => {
    const mnt1 = cliOk(on('layer', 'mount', 'l1')).trim();
    expect(cliOk(on('pool', 'shutdown'))).toBe(`unmounted l1 from ${mnt1}\n`);
    expect(mountedAt(mnt1)).toBe(false);
    expect([...oracleLs().keys()].filter((n) => n.startsWith(PREFIX))).toEqual([]);
    expect(ourLoops()).toEqual([]);
    expectOneLine(cli(on('layer', 'ls')), 1, /ENXIO: the pool .* is not active/);

    cliOk(on('pool', 'init')); // the recorded options: same prefix, same pool name
    expect(poolStatus().poolName).toBe(poolName);
    expect(poolStatus().data.totalBytes).toBe(String(512 * 2 ** 20));
    expect(layers().map((l) => l.id)).toEqual(['l1']);
    const again = cliOk(on('layer', 'mount', 'l1')).trim();
    expect(readFileSync(join(again, 'hello'), 'utf8')).toBe('from l1');
    cliOk(on('pool', 'shutdown'));
    expect(ourLoops()).toEqual([]);
    // Again: nothing to do, exit 0 (stop scripts run it twice).
    const again2 = cli(on('pool', 'shutdown'));
    expect(again2.status, again2.stderr).toBe(0);
    expect(again2.stdout).toMatch(/^pool \S+ of .* is not active: nothing to shut down\n$/);
    expect(JSON.parse(cliOk(on('pool', 'shutdown', '--json')))).toMatchObject({ poolName, active: false, unmounted: [] });
  });
});

describe('usage errors', () => {
  test('exit 2 with one line, and nothing created', () => {
    const fresh = join(RUN_DIR, 'cli-never');
    const dmBefore = [...oracleLs().keys()].sort();
    const loopsBefore = listLoops().map((l) => l.path);
    for (const args of [
      ['frobnicate'],
      ['pool'],
      ['pool', 'frob', '--home', fresh],
      ['pool', 'init', '--home', fresh, '--bogus'],
      ['pool', 'init', '--home', fresh, 'extra'],
      ['pool', 'init', '--home', fresh, '--storage-opt', 'dm.basesize=huge'],
      ['pool', 'init', '--home', fresh, '--storage-opt', 'dm.nosuchkey=1'],
      ['pool', 'init', '--home', fresh, '--storage-opt', 'basesize'],
      ['pool', 'resize', '--home', fresh],
      ['pool', 'resize', '12 parsecs', '--home', fresh],
      ['layer', 'create', '--home', fresh],
      ['layer', 'create', 'a/b', '--home', fresh],
      ['layer', 'create', 'x', '--parent', '.hidden', '--home', fresh],
      ['layer', 'mount', '--home', fresh],
      ['layer', 'rm', 'x', 'y', '--home', fresh],
      ['layer', 'list', '--home', fresh],
      ['demo', '--bogus'],
      ['demo', '--storage-opt', 'dm.loopdatasize=lots'],
    ]) {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stdout).toBe(args.length === 1 && args[0] === 'pool' ? r.stdout : '');
      if (args.length > 1) expectOneLine(r, 2, /./);
    }
    expect(existsSync(fresh)).toBe(false);
    expect([...oracleLs().keys()].sort()).toEqual(dmBefore);
    expect(listLoops().map((l) => l.path)).toEqual(loopsBefore);
  });
});
