// The library's log through the real binary against the real kernel: -vvv and DEVMAPPER_LOG=trace
// name each ioctl the command made (the device numbers checked against dmsetup), -v names an EBUSY
// retry and the mounts of a pool's layer, and a run without either leaves stderr empty.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BIN, LoopScratch, dmName, dmsetup, dmsetupOk, kernelHooks, RUN_DIR, type CliRun } from './support/env.js';

kernelHooks({ sweepEach: false });

/** The CLI with exactly this environment's DEVMAPPER_LOG (none unless given). */
function run(args: readonly string[], log?: string): CliRun {
  const env = { ...process.env };
  delete env.DEVMAPPER_LOG;
  if (log !== undefined) env.DEVMAPPER_LOG = log;
  const r = spawnSync(BIN, args, { encoding: 'utf8', env });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? -1 };
}

function ok(args: readonly string[], log?: string): CliRun {
  const r = run(args, log);
  if (r.status !== 0) throw new Error(`devmapper ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

const LINE = /^devmapper: (error|warn|info|debug|trace): \S.*$/;
const lines = (stderr: string): string[] => stderr.split('\n').filter((l) => l !== '');
/** The trace lines of ioctls, as [request, the rest]. */
const ioctls = (stderr: string): [string, string][] =>
  lines(stderr).flatMap((l) => {
    const m = /^devmapper: trace: ioctl (\S+)(.*)$/.exec(l);
    return m ? [[m[1] as string, m[2] as string] as [string, string]] : [];
  });
/** `dmsetup info -c`'s major:minor of a device: the oracle for the numbers the trace shows. */
const devOf = (name: string): string => dmsetupOk(['info', '-c', '--noheadings', '-o', 'major,minor', '--separator', ':', name]).trim();

let scratch: LoopScratch;
beforeAll(() => {
  mkdirSync(RUN_DIR, { recursive: true });
  scratch = new LoopScratch('log');
});
afterAll(async () => {
  await scratch?.cleanup();
});

describe('dm commands', () => {
  test('-vvv: dm create logs DM_DEV_CREATE, DM_TABLE_LOAD, DM_DEV_SUSPEND with the kernel’s answers; stdout as without it', () => {
    const name = dmName('log-a');
    const quiet = dmName('log-q');
    const plain = ok(['dm', 'create', quiet, '--table', '0 2048 zero']);
    expect(plain.stderr).toBe('');
    const r = ok(['-vvv', 'dm', 'create', name, '--uuid', `${name}-uuid`, '--table', '0 2048 zero']);
    expect(r.stdout).toBe(plain.stdout);
    for (const l of lines(r.stderr)) expect(l).toMatch(LINE);
    const calls = ioctls(r.stderr);
    expect(calls.map(([c]) => c)).toEqual(expect.arrayContaining(['DM_VERSION', 'DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_SUSPEND']));
    const order = calls.map(([c]) => c).filter((c) => ['DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_SUSPEND'].includes(c));
    expect(order).toEqual(['DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_SUSPEND']);
    const dev = devOf(name);
    const get = (c: string) => calls.find(([n]) => n === c)?.[1] ?? '';
    // event_nr carries the udev flags (libdevmapper's cookie) where the command sends them.
    expect(get('DM_DEV_CREATE')).toMatch(
      new RegExp(`^ name=${name} uuid=${name}-uuid flags=0( event_nr=\\d+)? result=ok reply_dev=${dev} reply_flags=\\S+$`),
    );
    // The load addresses the new device by its number (a rename meanwhile cannot redirect it); the
    // resume by name or number.
    const byDev = `(?: name=${name}| dev=${dev}| name=${name} dev=${dev}) flags=\\S+( event_nr=\\d+)? result=ok reply_dev=${dev}`;
    expect(get('DM_TABLE_LOAD')).toMatch(new RegExp(`^${byDev} reply_flags=\\S*DM_INACTIVE_PRESENT_FLAG`));
    // Resume: DM_DEV_SUSPEND without DM_SUSPEND_FLAG; the kernel answers with the live table present.
    expect(get('DM_DEV_SUSPEND')).toMatch(new RegExp(`^${byDev} reply_flags=\\S*DM_ACTIVE_PRESENT_FLAG`));
    expect(get('DM_DEV_SUSPEND')).not.toMatch(/flags=\S*DM_SUSPEND_FLAG.* result/);
    expect(dmsetupOk(['table', name])).toBe('0 2048 zero \n');
  });

  test('DEVMAPPER_LOG=trace: a refused ioctl names its errno before the command’s error; -vv has no ioctl lines', () => {
    const name = dmName('log-a');
    const r = run(['dm', 'create', name, '--table', '0 2048 zero'], 'trace');
    expect(r.status).toBe(1);
    const all = lines(r.stderr);
    const create = all.findIndex((l) => l.startsWith(`devmapper: trace: ioctl DM_DEV_CREATE name=${name} `));
    expect(all[create]).toMatch(/ result=EBUSY$/);
    expect(all.at(-1)).toMatch(/^devmapper dm: EBUSY: /);
    expect(create).toBeLessThan(all.length - 1);
    expect(dmsetup(['info', name]).status).toBe(0);

    const debug = ok(['-vv', 'dm', 'suspend', name]);
    expect(ioctls(debug.stderr)).toEqual([]);
    // DEVMAPPER_LOG=silent, and no setting at all: nothing on stderr.
    expect(ok(['dm', 'resume', name], 'silent').stderr).toBe('');
    expect(ok(['dm', 'remove', dmName('log-q')]).stderr).toBe('');
  });

  test('-v: each EBUSY retry of DM_DEV_REMOVE while another process holds the device open', async () => {
    const name = dmName('log-a');
    const fd = openSync(`/dev/mapper/${name}`, 'r');
    const env = { ...process.env };
    delete env.DEVMAPPER_LOG;
    const child = spawn(BIN, ['-v', 'dm', 'remove', name, '--retry'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // Closed once the first retry is logged (a loaded host may take long to start the CLI): the
    // next try succeeds.
    const deadline = Date.now() + 120_000;
    while (!stderr.includes('retrying DM_DEV_REMOVE') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    closeSync(fd);
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code, stderr).toBe(0);
    const all = lines(stderr);
    expect(all.length).toBeGreaterThan(0);
    expect(all[0]).toBe(`devmapper: info: device busy: retrying DM_DEV_REMOVE device=${name} attempt=1 of=25 delay_ms=10`);
    for (const l of all) expect(l).toMatch(/^devmapper: info: device busy: retrying DM_DEV_REMOVE /);
    expect(dmsetup(['info', name]).status).not.toBe(0);
  });
});

describe('loop commands', () => {
  test('DEVMAPPER_LOG=trace: attach logs LOOP_CTL_GET_FREE and LOOP_CONFIGURE on the device losetup reports; detach LOOP_CLR_FD', () => {
    const file = scratch.file('trace.img', 4 * 1024 * 1024);
    const r = ok(['loop', 'attach', file, '--json'], 'trace');
    const device = (JSON.parse(r.stdout) as { device: string }).device;
    const calls = ioctls(r.stderr);
    expect(calls[0]).toEqual(['LOOP_CTL_GET_FREE', ' device=/dev/loop-control result=ok']);
    expect(calls).toContainEqual(['LOOP_CONFIGURE', ` device=${device} result=ok`]);
    expect(lines(r.stderr)).toContain(`devmapper: debug: loop attached device=${device} file=${file} read_only=false autoclear=false`);
    const losetup = spawnSync('losetup', ['-j', file], { encoding: 'utf8' });
    expect(losetup.stdout.split(':')[0]).toBe(device);
    const d = ok(['loop', 'detach', device], 'trace');
    expect(ioctls(d.stderr)).toContainEqual(['LOOP_CLR_FD', ` device=${device} result=ok`]);
    expect(spawnSync('losetup', ['-j', file], { encoding: 'utf8' }).stdout).toBe('');
  });
});

describe('a pool and its layers', () => {
  const home = join(RUN_DIR, 'log-home');
  const prefix = `dmtest-${process.pid}-log`;
  const opts = ['dm.loopdatasize=128M', 'dm.loopmetadatasize=8M', 'dm.basesize=32M', 'dm.min_free_space=0%', `dm.prefix=${prefix}`].flatMap(
    (o) => ['--storage-opt', o],
  );
  const on = (...args: string[]): string[] => [...args, '--home', home];

  test('-v: pool open and its reconcile, the mount and the unmount, as the mount table has them', () => {
    const init = ok(['pool', 'init', '--home', home, ...opts], 'info');
    const poolName = /^pool +(\S+) /m.exec(init.stdout)?.[1];
    expect(poolName).toMatch(/-pool$/);
    expect(lines(init.stderr)).toContain(`devmapper: info: pool opened pool=${poolName} new=true mode=rw reconcile=none`);
    for (const l of lines(init.stderr)) expect(l).toMatch(/^devmapper: (info|warn): /);
    try {
      expect(ok(on('layer', 'create', 'l1')).stderr).toBe('');
      const m = ok(['-v', ...on('layer', 'mount', 'l1')]);
      const mnt = m.stdout.trim();
      const mounted = lines(m.stderr).find((l) => l.startsWith('devmapper: info: mounted '));
      expect(mounted).toMatch(new RegExp(`^devmapper: info: mounted device=/dev/mapper/${prefix}-\\S+-l1 target=${mnt} fs=ext4 `));
      expect(lines(m.stderr)).toContain(`devmapper: info: pool opened pool=${poolName} new=false mode=rw reconcile=none`);
      const entry = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .find((l) => l.split(' ')[4] === mnt);
      expect(entry, 'in the mount table').toBeDefined();
      const u = ok(['-v', ...on('layer', 'umount', 'l1')]);
      expect(lines(u.stderr)).toContain(`devmapper: info: unmounted target=${mnt} flags=0`);
    } finally {
      const down = run(on('pool', 'shutdown'));
      expect(down.status, down.stderr).toBe(0);
      expect(down.stderr).toBe('');
    }
  });
});
