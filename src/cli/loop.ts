// `devmapper loop ...`: loop devices as a losetup user expects them (losetup's output formats and
// exit codes), and --json for scripts. One record per command (command.ts).
import { readFileSync } from 'node:fs';
import { blockDeviceSizeBytes } from '../blk/index.js';
import { SysError } from '../ioctl/errors.js';
import {
  attachLoop,
  detachLoop,
  findLoopByFile,
  type LoopDevice,
  listLoops,
  loopStatus,
  releaseLoop,
  setLoopCapacity,
} from '../loop/index.js';
import { LoFlag } from '../structs/loop.js';
import { flag, JSON_OPTION, runGroup, str, type Command, type Group, type Invocation } from './command.js';
import { explain } from './errors.js';
import { json } from './output.js';
import { UsageError } from './usage.js';
import { writeErr } from './stdio.js';

/** The largest logical block size a loop device takes: the page size (4 KiB on the machines we know). */
const MAX_SECTOR_SIZE = 4096;

function bytes(text: string | undefined, what: string): bigint | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} '${text}' is not a number of bytes`);
  return BigInt(text);
}

function sectorSize(text: string | undefined): number | undefined {
  const n = bytes(text, '--sector-size');
  if (n === undefined) return undefined;
  if (n < 512n || n > BigInt(MAX_SECTOR_SIZE) || (n & (n - 1n)) !== 0n) {
    throw new UsageError(`--sector-size ${n}: must be a power of two from 512 to ${MAX_SECTOR_SIZE} bytes`);
  }
  return Number(n);
}

/** One loop device, the same shape in every command's --json. */
export interface LoopView {
  device: string;
  number: number;
  backingFile: string;
  offsetBytes: bigint;
  sizeLimitBytes: bigint;
  autoclear: boolean;
  readOnly: boolean;
  directIo: boolean;
  logicalBlockSizeBytes: number;
}

function sysfs(name: string, file: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${name}/${file}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function view(dev: { path: string; number: number }, backingFile?: string): LoopView {
  const info = loopStatus(dev.number);
  return {
    device: dev.path,
    number: dev.number,
    backingFile: backingFile ?? sysfs(`loop${dev.number}`, 'loop/backing_file') ?? info.lo_file_name,
    offsetBytes: info.lo_offset,
    sizeLimitBytes: info.lo_sizelimit,
    autoclear: (info.lo_flags & LoFlag.LO_FLAGS_AUTOCLEAR) !== 0,
    readOnly: (info.lo_flags & LoFlag.LO_FLAGS_READ_ONLY) !== 0,
    directIo: (info.lo_flags & LoFlag.LO_FLAGS_DIRECT_IO) !== 0,
    logicalBlockSizeBytes: Number(sysfs(`loop${dev.number}`, 'queue/logical_block_size') ?? 512),
  };
}

/** losetup -l's table: NAME SIZELIMIT OFFSET AUTOCLEAR RO BACK-FILE DIO LOG-SEC. */
export function formatRows(rows: readonly LoopView[]): string {
  const cells = rows.map((r) => [
    r.device,
    `${r.sizeLimitBytes}`,
    `${r.offsetBytes}`,
    r.autoclear ? '1' : '0',
    r.readOnly ? '1' : '0',
    r.backingFile,
    r.directIo ? '1' : '0',
    `${r.logicalBlockSizeBytes}`,
  ]);
  const head = ['NAME', 'SIZELIMIT', 'OFFSET', 'AUTOCLEAR', 'RO', 'BACK-FILE', 'DIO', 'LOG-SEC'];
  const width = head.map((h, k) => Math.max(h.length, ...cells.map((c) => (c[k] as string).length)));
  const leftAligned = new Set([0, 5]);
  const line = (c: readonly string[]): string =>
    c
      .map((v, k) => (leftAligned.has(k) ? v.padEnd(width[k] as number) : v.padStart(width[k] as number)))
      .join(' ')
      .trimEnd();
  return [head, ...cells].map((c) => `${line(c)}\n`).join('');
}

const isJson = (inv: Invocation): boolean => flag(inv.values, 'json');
const note = (text: string): void => writeErr(`devmapper loop: ${text}\n`);

async function attach(inv: Invocation): Promise<void> {
  const file = inv.positionals[0] as string;
  const offsetBytes = bytes(str(inv.values, 'offset'), '--offset');
  const sizeLimitBytes = bytes(str(inv.values, 'sizelimit'), '--sizelimit');
  const blockSizeBytes = sectorSize(str(inv.values, 'sector-size'));
  const opts = {
    directIo: flag(inv.values, 'direct-io'),
    autoclear: flag(inv.values, 'autoclear'),
    ...(offsetBytes !== undefined ? { offsetBytes } : {}),
    ...(sizeLimitBytes !== undefined ? { sizeLimitBytes } : {}),
    ...(blockSizeBytes !== undefined ? { blockSizeBytes } : {}),
  };
  const readOnly = flag(inv.values, 'read-only');
  let dev: LoopDevice;
  try {
    dev = await attachLoop(file, { ...opts, readOnly, keepOpen: true });
  } catch (err) {
    // losetup: a file it may not write (read-only file system, no write permission) is bound read-only.
    if (readOnly || !(err instanceof SysError) || (err.code !== 'EROFS' && err.code !== 'EACCES')) throw explain(err);
    dev = await attachLoop(file, { ...opts, readOnly: true, keepOpen: true }).catch((e: unknown) => {
      throw explain(e);
    });
    note(`${file} is not writable here (${err.code}): ${dev.path} is read-only, as losetup does`);
  }
  // Read while we still hold it: with autoclear the device goes when its last user closes it.
  const v = view(dev);
  releaseLoop(dev);
  if (opts.autoclear) {
    note(
      `${dev.path} was set to detach on last close; this command was its only user, so it is gone now ` +
        '(losetup behaves the same; mount or map it from a program that holds it open, or drop --autoclear)',
    );
  }
  inv.out(isJson(inv) ? json(v) : `${dev.path}\n`);
}

const commands: Command[] = [
  {
    name: 'attach',
    summary: 'bind FILE to a free loop device; prints the device (losetup -f --show)',
    usage: 'FILE [-r] [--direct-io] [--autoclear] [-o BYTES] [--sizelimit BYTES] [-b BYTES]',
    options: {
      'read-only': { type: 'boolean', short: 'r', help: 'read-only device (taken anyway when FILE is not writable, as losetup)' },
      'direct-io': { type: 'boolean', help: 'bypass the page cache for FILE' },
      autoclear: { type: 'boolean', help: 'detach on last close: with no other user the device goes when this command exits' },
      offset: { type: 'string', short: 'o', arg: 'BYTES', help: 'start this many bytes into FILE' },
      sizelimit: { type: 'string', arg: 'BYTES', help: 'use at most this many bytes of FILE' },
      'sector-size': {
        type: 'string',
        short: 'b',
        arg: 'BYTES',
        help: `logical sector size: a power of two from 512 to ${MAX_SECTOR_SIZE}`,
      },
    },
    positionals: { min: 1, max: 1, missing: 'file' },
    run: attach,
  },
  {
    name: 'detach',
    summary: 'unbind the devices (losetup -d): whatever file each is bound to',
    usage: 'DEV...',
    options: {},
    positionals: { min: 1, max: Number.POSITIVE_INFINITY, missing: 'loop device' },
    run: async (inv) => {
      const done: { device: string; detached: true }[] = [];
      for (const dev of inv.positionals) {
        await detachLoop(dev, { force: true }).catch((e: unknown) => {
          throw explain(e);
        });
        done.push({ device: dev, detached: true });
      }
      if (isJson(inv)) inv.out(json(done));
    },
  },
  {
    name: 'find',
    summary: 'the loop devices bound to FILE (losetup -j); none: prints nothing, exits 0',
    usage: 'FILE',
    options: {},
    positionals: { min: 1, max: 1, missing: 'file' },
    run: async (inv) => {
      const file = inv.positionals[0] as string;
      // losetup -j of a file that does not exist: no device is bound to it, exit 0 all the same.
      const found = await findLoopByFile(file).catch((e: unknown) => {
        if ((e as { code?: unknown }).code === 'ENOENT') return [];
        throw explain(e);
      });
      const bound = new Map(listLoops().map((l) => [l.number, l.backingFile]));
      if (isJson(inv)) return inv.out(json(found.map((d) => view(d, bound.get(d.number)))));
      for (const d of found) {
        const info = loopStatus(d.number);
        // losetup -j: "/dev/loop2: [0025]:5 (/tmp/w/lin.img)", st_dev in decimal as %04d.
        inv.out(`${d.path}: [${String(info.lo_device).padStart(4, '0')}]:${info.lo_inode} (${bound.get(d.number) ?? info.lo_file_name})\n`);
      }
    },
  },
  {
    name: 'ls',
    summary: 'every bound loop device (losetup -l)',
    usage: '',
    options: {},
    positionals: { min: 0, max: 0 },
    run: (inv) => {
      const rows = listLoops().map((l) => view({ path: l.path, number: l.number }, l.backingFile));
      if (isJson(inv)) inv.out(json(rows));
      else if (rows.length > 0) inv.out(formatRows(rows));
    },
  },
  {
    name: 'resize',
    summary: "re-read the backing file's size (losetup -c)",
    usage: 'DEV',
    options: {},
    positionals: { min: 1, max: 1, missing: 'loop device' },
    run: (inv) => {
      const dev = inv.positionals[0] as string;
      try {
        setLoopCapacity(dev);
        if (isJson(inv)) inv.out(json({ device: dev, sizeBytes: blockDeviceSizeBytes(dev) }));
      } catch (e) {
        throw explain(e);
      }
    },
  },
];

export const group: Group = {
  name: 'loop',
  summary: 'loop devices, as losetup (same output formats)',
  common: { json: JSON_OPTION },
  commands,
};

export function run(argv: string[]): Promise<number> {
  return runGroup(group, argv);
}
