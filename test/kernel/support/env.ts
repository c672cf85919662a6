// Shared by the dm-*/loop-* kernel tests: the precondition (a real device-mapper, or fail loudly),
// per-run names, loop devices on sparse files, dmsetup as an independent oracle, and a sweeper
// that removes whatever a failed test left behind so that one failure does not cascade.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { DeviceMapper, type DeviceMapperOptions } from '../../../src/dm/device-mapper.js';
import type { DeviceInfo } from '../../../src/dm/info.js';
import { removeByPrefix } from '../../../src/dm/teardown.js';
import { MNT_DETACH, sysUmount2 } from '../../../src/ioctl/libc.js';
import { mountTable } from '../../../src/thin/mount.js';
import type { DevT } from '../../../src/structs/dev.js';
import { attachLoop, detachLoop, listLoops, releaseLoop, type LoopDevice } from '../../../src/loop/index.js';
import { sectors } from '../../../src/structs/units.js';
import { deviceName, thinId, type DeviceName } from '../../../src/dm/names.js';

/** Every dm device and temp folder of the kernel tests starts with this (the sweeper's key). */
export const TEST_PREFIX = 'dmtest-';
/** This run's prefix: `dmtest-<pid>-`. */
export const RUN_PREFIX = `${TEST_PREFIX}${process.pid}-`;
/** This run's folder for backing files; loops backed by files under `<tmp>/dmtest-<n>/` are swept. */
export const RUN_DIR = join(tmpdir(), `${TEST_PREFIX}${process.pid}`);

/**
 * The kernel tier's precondition. It throws (the test fails) rather than skipping: a kernel suite
 * that silently ran nothing is the failure this tier exists to catch.
 */
export function requireDeviceMapper(): void {
  const missing = ['/dev/mapper/control', '/sys/class/misc/device-mapper', '/dev/loop-control'].filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new Error(
      `the kernel test tier needs a real device-mapper and loop devices, but ${missing.join(', ')} ` +
        'do not exist: run it inside the guest (scripts/vm/guest-run -- npx vitest run --project kernel) or as root on a kernel with dm-mod',
    );
  }
  if (process.getuid?.() !== 0) throw new Error('the kernel test tier must run as root');
}

/** A device name of this run: `dmtest-<pid>-<tag>`. */
export function dmName(tag: string): DeviceName {
  return deviceName(`${RUN_PREFIX}${tag}`);
}

/** Our library, without udev (the guest has none; on a udev host the oracle runs with it disabled too). */
export function openDm(opts: DeviceMapperOptions = {}): DeviceMapper {
  return DeviceMapper.open({ udev: 'off', ...opts });
}

export function devString(d: DevT): string {
  return `${d.major}:${d.minor}`;
}

export interface DmsetupResult {
  stdout: string;
  stderr: string;
  status: number;
}

/** dmsetup with udev disabled (it then makes and removes /dev/mapper nodes itself); never throws. */
export function dmsetup(args: readonly string[], opts: { input?: string } = {}): DmsetupResult {
  const r = spawnSync('dmsetup', args, {
    encoding: 'utf8',
    input: opts.input ?? '',
    env: { ...process.env, DM_DISABLE_UDEV: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? -1 };
}

/** dmsetup that must succeed; its stdout. */
export function dmsetupOk(args: readonly string[], opts: { input?: string } = {}): string {
  const r = dmsetup(args, opts);
  if (r.status !== 0) throw new Error(`dmsetup ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** One device as `dmsetup info -c` reports it. */
export interface OracleInfo {
  name: string;
  major: number;
  minor: number;
  /** libdevmapper's attr: [L-][I-][s-][rw]... */
  attr: string;
  open: number;
  segments: number;
  events: number;
  uuid: string;
}

const INFO_FIELDS = 'name,major,minor,attr,open,segments,events,uuid';

function parseInfoRow(line: string): OracleInfo {
  // The uuid is last and may hold the separator; names of our tests never do.
  const [name, major, minor, attr, open, segments, events, ...uuid] = line.split('\t');
  if (name === undefined || events === undefined) throw new Error(`unexpected dmsetup info row ${JSON.stringify(line)}`);
  return {
    name,
    major: Number(major),
    minor: Number(minor),
    attr: attr ?? '',
    open: Number(open),
    segments: Number(segments),
    events: Number(events),
    uuid: uuid.join('\t'),
  };
}

/** `dmsetup info -c` of one device, or null when dmsetup finds none. */
export function oracleInfo(name: string): OracleInfo | null {
  const r = dmsetup(['info', '-c', '--noheadings', '--separator', '\t', '-o', INFO_FIELDS, name]);
  if (r.status !== 0) {
    if (/does not exist|No such device/.test(r.stderr)) return null;
    throw new Error(`dmsetup info ${name}: ${r.stderr.trim()}`);
  }
  return parseInfoRow(r.stdout.replace(/\n$/, ''));
}

/** `dmsetup info -c` of every device. */
export function oracleInfoAll(): OracleInfo[] {
  const out = dmsetupOk(['info', '-c', '--noheadings', '--separator', '\t', '-o', INFO_FIELDS]);
  if (out.trim() === 'No devices found') return [];
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map(parseInfoRow);
}

/** `dmsetup ls`: name -> "maj:min". */
export function oracleLs(): Map<string, string> {
  const out = dmsetupOk(['ls']);
  const m = new Map<string, string>();
  if (out.trim() === 'No devices found') return m;
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const r = /^(.*)\t\((\d+):(\d+)\)$/.exec(line);
    if (!r) throw new Error(`unexpected dmsetup ls line ${JSON.stringify(line)}`);
    m.set(r[1]!, `${r[2]}:${r[3]}`);
  }
  return m;
}

/** `dmsetup table|status NAME` as lines without dmsetup's trailing space. */
export function oracleLines(cmd: 'table' | 'status', name: string, extra: string[] = []): string[] {
  return dmsetupOk([cmd, ...extra, name])
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/ $/, ''));
}

/** Sparse files and loop devices of one test file, under RUN_DIR. */
export class LoopScratch {
  readonly dir: string;
  private readonly held: LoopDevice[] = [];

  constructor(tag: string) {
    this.dir = join(RUN_DIR, tag);
    mkdirSync(this.dir, { recursive: true });
  }

  /** A sparse file of `sizeBytes` (content zero). */
  file(name: string, sizeBytes: number): string {
    const path = join(this.dir, name);
    writeFileSync(path, '');
    truncateSync(path, sizeBytes);
    return path;
  }

  /** A sparse file attached to a loop device through our src/loop. */
  async loop(name: string, sizeBytes: number): Promise<LoopDevice> {
    const dev = await attachLoop(this.file(name, sizeBytes));
    this.held.push(dev);
    return dev;
  }

  async cleanup(): Promise<void> {
    for (const d of this.held) releaseLoop(d);
    this.held.length = 0;
    await detachTestLoops(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Detaches every loop device whose backing file lies under `dir` (default: any `<tmp>/dmtest-*` folder). */
export async function detachTestLoops(dir?: string): Promise<void> {
  const tmp = tmpdir();
  const ours = (file: string): boolean => {
    if (dir !== undefined) return file.startsWith(`${dir}/`);
    if (!file.startsWith(`${tmp}/`)) return false;
    return (file.slice(tmp.length + 1).split('/')[0] ?? '').startsWith(TEST_PREFIX);
  };
  for (const loop of listLoops()) {
    const file = loop.backingFile.replace(/ \(deleted\)$/, '');
    if (!ours(file)) continue;
    try {
      await detachLoop(loop.number, existsSync(file) ? { expectBackingFile: file } : { force: true });
    } catch {
      // Detached meanwhile, or still held by a dm table we could not remove: reported by the caller's checks.
    }
  }
}

/**
 * Removes every dm device named `dmtest-*` (any run), after detaching any mount of them, with the
 * library's removeByPrefix (dependents first, suspended devices resumed first), `dmsetup remove
 * --force` as the fallback. Then the loop devices of test files, and stale
 * /dev/mapper/dmtest-* nodes. `loops: false` keeps the loop devices (a file's shared ones between
 * its tests). Returns the names it could not remove.
 */
export async function sweep(opts: { loops?: boolean } = {}): Promise<string[]> {
  const dm = openDm();
  const failed: string[] = [];
  try {
    const left = dm.list().filter((d) => d.name.startsWith(TEST_PREFIX));
    // A test that failed with a file system still mounted would keep its device busy: detach those
    // mounts first (lazily, as umount -l), deepest first.
    const ourDevs = new Set(left.map((d) => devString(d.dev)));
    for (const m of mountTable()
      .filter((e) => ourDevs.has(e.majorMinor))
      .reverse()) {
      try {
        sysUmount2(m.mountPoint, MNT_DETACH);
      } catch {
        // Gone meanwhile.
      }
    }
    // The library's teardown: holders first, suspended devices resumed first; dmsetup's forced
    // remove (an error table swapped in) as the fallback.
    const result = await removeByPrefix(dm, TEST_PREFIX, {
      fallback: (name) => dmsetup(['remove', '--force', name]).status === 0,
    });
    for (const f of result.failed) failed.push(f.name);
    for (const d of dm.list()) if (d.name.startsWith(TEST_PREFIX) && !failed.includes(d.name)) failed.push(d.name);
  } finally {
    dm.close();
  }
  if (opts.loops ?? true) await detachTestLoops();
  try {
    for (const n of readdirSync('/dev/mapper'))
      if (n.startsWith(TEST_PREFIX) && !failed.includes(n)) rmSync(join('/dev/mapper', n), { force: true });
  } catch {
    // No /dev/mapper: nothing to clean.
  }
  return failed;
}

/** A linear table over `dev` (a loop device) of `lengthSectors` from `offsetSectors`. */
export function linearOver(dev: { major: number; minor: number }, lengthSectors: bigint, offsetSectors = 0n) {
  return [
    {
      type: 'linear' as const,
      startSector: sectors(0n),
      lengthSectors: sectors(lengthSectors),
      device: `${dev.major}:${dev.minor}`,
      offsetSectors: sectors(offsetSectors),
    },
  ];
}

/** The message `fn` throws, with its class: for asserting on errors by shape. */
export async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error, got none');
}

/** Polls `cond` until it holds or `timeoutMs` passes. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The hooks every dm-/loop- kernel test file installs: the precondition and a sweep before the
 * file, a sweep after each test (unless the file keeps devices across tests), and a final sweep
 * that fails the file if anything of ours is left.
 */
export function kernelHooks(opts: { sweepEach?: boolean } = {}): void {
  beforeAll(async () => {
    requireDeviceMapper();
    await sweep();
  });
  if (opts.sweepEach ?? true) {
    afterEach(async () => {
      await sweep({ loops: false });
    });
  }
  afterAll(async () => {
    const left = await sweep();
    if (left.length > 0) throw new Error(`the sweeper could not remove ${left.join(', ')}`);
    rmSync(RUN_DIR, { recursive: true, force: true });
  });
}

/** A thin-pool over two fresh loop devices (metadata's first 4 KiB zeroed, as a new pool needs). */
export interface TestPool {
  name: DeviceName;
  dev: DevT;
  meta: LoopDevice;
  data: LoopDevice;
  lengthSectors: bigint;
  blockSectors: number;
}

export async function makePool(
  dm: DeviceMapper,
  scratch: LoopScratch,
  tag: string,
  opts: { dataBytes?: number; metaBytes?: number; blockSectors?: number; features?: string[] } = {},
): Promise<TestPool> {
  const dataBytes = opts.dataBytes ?? 64 * 1024 * 1024;
  const meta = await scratch.loop(`${tag}-meta.img`, opts.metaBytes ?? 8 * 1024 * 1024);
  const data = await scratch.loop(`${tag}-data.img`, dataBytes);
  const fd = openSync(meta.path, 'r+');
  try {
    writeSync(fd, Buffer.alloc(4096), 0, 4096, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const blockSectors = opts.blockSectors ?? 128;
  const lengthSectors = sectors(BigInt(dataBytes / 512));
  const name = dmName(`${tag}-pool`);
  const info = await dm.create(name, {
    table: [
      {
        type: 'thin-pool',
        startSector: sectors(0n),
        lengthSectors,
        metadataDevice: devString(meta),
        dataDevice: devString(data),
        dataBlockSizeSectors: blockSectors,
        lowWaterMarkBlocks: 0n,
        features: opts.features ?? [],
      },
    ],
  });
  return { name, dev: info.dev, meta, data, lengthSectors, blockSectors };
}

/** A thin device `id` of `pool` (the id must exist: createThin first). */
export async function activateThin(dm: DeviceMapper, pool: TestPool, tag: string, id: number, lengthSectors: bigint): Promise<DeviceInfo> {
  return dm.create(dmName(tag), {
    table: [
      {
        type: 'thin',
        startSector: sectors(0n),
        lengthSectors: sectors(lengthSectors),
        poolDevice: devString(pool.dev),
        thinId: thinId(id),
      },
    ],
  });
}

/** The project's CLI, run as a real process (argument arrays, never a shell). */
export const BIN = join(import.meta.dirname, '../../../bin/devmapper');

export interface CliRun {
  stdout: string;
  stderr: string;
  status: number;
}

export function cli(args: readonly string[]): CliRun {
  const r = spawnSync(BIN, args, { encoding: 'utf8' });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? -1 };
}

/** cli() that must exit 0: its stdout. */
export function cliOk(args: readonly string[]): string {
  const r = cli(args);
  if (r.status !== 0) throw new Error(`devmapper ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}
