// `devmapper loop ...`: loop devices as a losetup user expects them (losetup's output formats),
// and --json for scripts.
import { readFileSync } from 'node:fs';
import { blockDeviceSizeBytes } from '../blk/index.js';
import {
  attachLoop,
  detachLoop,
  findLoopByFile,
  listLoops,
  loopStatus,
  releaseLoop,
  setLoopCapacity,
} from '../loop/index.js';
import { LoFlag } from '../structs/loop.js';
import { json } from './output.js';
import { noMorePositionals, parse, positional, UsageError } from './usage.js';

export const loopHelp = `devmapper loop <command> [options]   (every command takes --json)
  attach FILE [--read-only] [--direct-io] [--autoclear] [--offset BYTES] [--sizelimit BYTES]
              [--sector-size BYTES]          binds FILE to a free loop device; prints the device
  detach DEV...                              unbinds /dev/loopN (losetup -d)
  find FILE                                  the loop devices that back FILE (losetup -j)
  ls                                         every bound loop device (losetup -l)
  resize DEV                                 re-reads the backing file's size (losetup -c)`;


function bytes(text: string | undefined, what: string): bigint | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${what} '${text}' is not a number of bytes`);
  return BigInt(text);
}

/** One row of `losetup -l`, from sysfs and LOOP_GET_STATUS64. */
interface LoopRow {
  name: string;
  sizelimit: bigint;
  offset: bigint;
  autoclear: boolean;
  ro: boolean;
  backFile: string;
  dio: boolean;
  logSec: number;
}

function sysfs(name: string, file: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${name}/${file}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function row(dev: { path: string; number: number; backingFile: string }): LoopRow {
  const info = loopStatus(dev.number);
  const name = `loop${dev.number}`;
  return {
    name: dev.path,
    sizelimit: info.lo_sizelimit,
    offset: info.lo_offset,
    autoclear: (info.lo_flags & LoFlag.LO_FLAGS_AUTOCLEAR) !== 0,
    ro: (info.lo_flags & LoFlag.LO_FLAGS_READ_ONLY) !== 0,
    backFile: dev.backingFile,
    dio: (info.lo_flags & LoFlag.LO_FLAGS_DIRECT_IO) !== 0,
    logSec: Number(sysfs(name, 'queue/logical_block_size') ?? 512),
  };
}

/** losetup -l's table: NAME SIZELIMIT OFFSET AUTOCLEAR RO BACK-FILE DIO LOG-SEC. */
function formatRows(rows: readonly LoopRow[]): string {
  const cells = rows.map((r) => [r.name, `${r.sizelimit}`, `${r.offset}`, r.autoclear ? '1' : '0', r.ro ? '1' : '0',
    r.backFile, r.dio ? '1' : '0', `${r.logSec}`]);
  const head = ['NAME', 'SIZELIMIT', 'OFFSET', 'AUTOCLEAR', 'RO', 'BACK-FILE', 'DIO', 'LOG-SEC'];
  const width = head.map((h, k) => Math.max(h.length, ...cells.map((c) => (c[k] as string).length)));
  const leftAligned = new Set([0, 5]);
  const line = (c: readonly string[]): string =>
    c.map((v, k) => (leftAligned.has(k) ? v.padEnd(width[k] as number) : v.padStart(width[k] as number))).join(' ').trimEnd();
  return [head, ...cells].map((c) => `${line(c)}\n`).join('');
}

export async function run(argv: string[]): Promise<number> {
  const out = (t: string): boolean => process.stdout.write(t);
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    out(`${loopHelp}\n`);
    return command === undefined ? 2 : 0;
  }
  const common = { json: { type: 'boolean' } } as const;
  switch (command) {
    case 'attach': {
      const { values, positionals } = parse(rest, {
        ...common,
        'read-only': { type: 'boolean', short: 'r' },
        'direct-io': { type: 'boolean' },
        autoclear: { type: 'boolean' },
        offset: { type: 'string', short: 'o' },
        sizelimit: { type: 'string' },
        'sector-size': { type: 'string', short: 'b' },
      });
      const file = positional(positionals, 0, 'file');
      noMorePositionals(positionals, 1);
      const offsetBytes = bytes(values.offset, '--offset');
      const sizeLimitBytes = bytes(values.sizelimit, '--sizelimit');
      const blockSize = bytes(values['sector-size'], '--sector-size');
      const dev = await attachLoop(file, {
        readOnly: values['read-only'] ?? false,
        directIo: values['direct-io'] ?? false,
        autoclear: values.autoclear ?? false,
        ...(offsetBytes !== undefined ? { offsetBytes } : {}),
        ...(sizeLimitBytes !== undefined ? { sizeLimitBytes } : {}),
        ...(blockSize !== undefined ? { blockSizeBytes: Number(blockSize) } : {}),
      });
      // With autoclear the device lives while something holds it: like losetup, we let go at exit.
      releaseLoop(dev);
      out(values.json ? json({ device: dev.path, number: dev.number, major: dev.major, minor: dev.minor }) : `${dev.path}\n`);
      return 0;
    }
    case 'detach': {
      const { positionals } = parse(rest, common);
      if (positionals.length === 0) throw new UsageError('missing loop device');
      // The operator names the device: detach whatever it is bound to, as losetup -d does.
      for (const dev of positionals) await detachLoop(dev, { force: true });
      return 0;
    }
    case 'find': {
      const { values, positionals } = parse(rest, common);
      const file = positional(positionals, 0, 'file');
      noMorePositionals(positionals, 1);
      const found = await findLoopByFile(file);
      const bound = new Map(listLoops().map((l) => [l.number, l.backingFile]));
      if (values.json) out(json(found.map((d) => ({ device: d.path, backingFile: bound.get(d.number) }))));
      else
        for (const d of found) {
          const info = loopStatus(d.number);
          // losetup -j: "/dev/loop2: [0025]:5 (/tmp/w/lin.img)", st_dev in decimal as %04d.
          out(`${d.path}: [${String(info.lo_device).padStart(4, '0')}]:${info.lo_inode} (${bound.get(d.number) ?? info.lo_file_name})\n`);
        }
      return found.length > 0 ? 0 : 1;
    }
    case 'ls': {
      const { values, positionals } = parse(rest, common);
      noMorePositionals(positionals, 0);
      const rows = listLoops().map(row);
      if (values.json) out(json(rows));
      else if (rows.length > 0) out(formatRows(rows));
      return 0;
    }
    case 'resize': {
      const { values, positionals } = parse(rest, common);
      const dev = positional(positionals, 0, 'loop device');
      noMorePositionals(positionals, 1);
      setLoopCapacity(dev);
      const sizeBytes = blockDeviceSizeBytes(dev);
      if (values.json) out(json({ device: dev, sizeBytes }));
      return 0;
    }
    default:
      throw new UsageError(`unknown loop command '${command}' (devmapper loop --help)`);
  }
}
