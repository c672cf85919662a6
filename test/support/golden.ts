// The golden ioctl captures (test/golden, README there): typed records with the buffers
// padded back to `size`. A missing folder is a loud error: these tests never skip.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** test/golden in the repository, or $DEVMAPPER_GOLDEN. */
export const GOLDEN_DIR = process.env.DEVMAPPER_GOLDEN ?? resolve(projectRoot, 'test', 'golden');

export const IOCTL_FILES = ['udev-disabled.compact.jsonl', 'noudevsync.compact.jsonl', 'plain.compact.jsonl'] as const;
export type IoctlFile = (typeof IOCTL_FILES)[number];

export type FdKind = 'dm-control' | 'loop-control' | 'loop-block';

/** dm_before/dm_after as the capture tool printed them (flags/event_nr/dev as hex strings). */
export interface GoldenDmHeader {
  version: [number, number, number];
  data_size: number;
  data_start: number;
  target_count: number;
  open_count: number;
  flags: string;
  event_nr: string;
  dev: string;
  name: string;
  uuid: string;
}

interface RecordBase {
  file: IoctlFile;
  seq: number;
  pid: number;
  label: string;
  /** The command's `n` in commands.jsonl (the number before ':' in label). */
  n: number;
  argv: string;
  fd_path: string;
  fd_kind: FdKind;
  req: number;
  req_name: string;
  ioc: { dir: number; type: string; nr: number; size: number };
  ret: number;
  errno: number;
  errno_name: string;
}

export interface GoldenArgRecord extends RecordBase {
  kind: 'arg';
  arg: number;
}

export interface GoldenBufRecord extends RecordBase {
  kind: 'buf';
  size: number;
  /** Padded with zeros to `size`. */
  before: Uint8Array;
  after: Uint8Array;
  dm_before?: GoldenDmHeader;
  dm_after?: GoldenDmHeader;
}

export type GoldenRecord = GoldenArgRecord | GoldenBufRecord;

export interface GoldenCommand {
  n: number;
  mode: string;
  label: string;
  cmd: string;
  rc: number;
  stdout: string;
  stderr: string;
}

function requireDir(): void {
  if (!existsSync(join(GOLDEN_DIR, 'README.md'))) {
    throw new Error(
      `golden captures not found at ${GOLDEN_DIR} (test/golden in the repository, or $DEVMAPPER_GOLDEN). ` +
        'The golden tests never skip.',
    );
  }
}

function readJsonl(file: string): Record<string, unknown>[] {
  requireDir();
  return readFileSync(join(GOLDEN_DIR, file), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Hex with trailing zero bytes stripped -> exactly `size` bytes. */
export function padHex(hex: string, size: number): Uint8Array {
  const bytes = Buffer.from(hex, 'hex');
  if (bytes.length > size) throw new Error(`golden buffer of ${bytes.length} bytes exceeds its size ${size}`);
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

let cache: GoldenRecord[] | undefined;

/** Every ioctl record of the three capture files, in file order. */
export function loadRecords(): GoldenRecord[] {
  if (cache) return cache;
  const records: GoldenRecord[] = [];
  for (const file of IOCTL_FILES) {
    for (const raw of readJsonl(file)) {
      const label = String(raw.label);
      const base: RecordBase = {
        file,
        seq: Number(raw.seq),
        pid: Number(raw.pid),
        label,
        n: Number(label.split(':')[0]),
        argv: String(raw.argv),
        fd_path: String(raw.fd_path),
        fd_kind: raw.fd_kind as FdKind,
        req: Number(raw.req),
        req_name: String(raw.req_name),
        ioc: raw.ioc as RecordBase['ioc'],
        ret: Number(raw.ret),
        errno: Number(raw.errno),
        errno_name: String(raw.errno_name ?? ''),
      };
      if (typeof raw.before === 'string' && typeof raw.after === 'string') {
        const size = Number(raw.size);
        const rec: GoldenBufRecord = { ...base, kind: 'buf', size, before: padHex(raw.before, size), after: padHex(raw.after, size) };
        if (raw.dm_before) rec.dm_before = raw.dm_before as GoldenDmHeader;
        if (raw.dm_after) rec.dm_after = raw.dm_after as GoldenDmHeader;
        records.push(rec);
      } else {
        records.push({ ...base, kind: 'arg', arg: Number(raw.arg) });
      }
    }
  }
  cache = records;
  return records;
}

export function loadCommands(): GoldenCommand[] {
  return readJsonl('commands.jsonl') as unknown as GoldenCommand[];
}

export function command(n: number): GoldenCommand {
  const c = loadCommands().find((x) => x.n === n);
  if (!c) throw new Error(`no golden command ${n}`);
  return c;
}

/** The records of command n, in order. */
export function recordsOf(n: number): GoldenRecord[] {
  return loadRecords().filter((r) => r.n === n);
}

export function dmRecords(): GoldenBufRecord[] {
  return loadRecords().filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.fd_kind === 'dm-control');
}
