// The pool manager's own metadata: one JSON file per device, the pool state (next thin id and
// transaction id) and the open transaction's intent, in <home>/devicemapper/metadata/.
//
// Every write is atomic and durable: a temp file in the same folder, fsync, rename over the
// target, fsync of the folder, so a crash leaves either the old or the new file, never a torn one.
// Temp files left by a crash (`.tmp-*`) are stale by construction and removed on open.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hasLoneSurrogate, THIN_ID_MAX, type ThinId } from '../dm/names.js';
import { type Bytes, bytes } from '../structs/units.js';
import { fsyncDir, makeDirs } from './dirs.js';
import { InvalidHashError, MetadataError } from './errors.js';

/** The base device's hash: "" in the API (as in Docker), stored as the file `base`. */
export const BASE_HASH = '';
export const POOL_STATE_FILE = 'deviceset-metadata';
export const INTENT_FILE = 'transaction-metadata';
const BASE_FILE = 'base';
const TMP_PREFIX = '.tmp-';
// 'pool' too: a device named `<stem>-pool` would be the pool's own name.
const RESERVED = new Set([BASE_FILE, 'pool', POOL_STATE_FILE, INTENT_FILE]);
/** A hash must fit a dm name (DM_NAME_LEN - 1) on its own; the full name is checked in naming.ts. */
export const HASH_MAX_BYTES = 127;

// C0, DEL and C1 control characters, and every Unicode white space (JavaScript's \s): a hash
// becomes a file name, a dm name and a column of `dmsetup ls` / `devmapper layer ls`, where a
// newline or tab splits a row and an escape sequence rewrites the terminal. Docker's ids are hex and
// containerd's keys hold '/', already refused; neither needs any of these.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const WHITESPACE = /\s/;
const NAMED: Readonly<Record<string, string>> = { '\t': 'a tab', '\n': 'a newline', '\r': 'a carriage return', ' ': 'a space' };

function describeChar(c: string, kind: string): string {
  const code = `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
  return `contains ${NAMED[c] ?? kind} (${code})`;
}

/**
 * A user device hash: 1..127 bytes of well-formed UTF-16, no '/', NUL, other control character
 * or white space; not '.', '..', a dot-file or a reserved file name.
 */
export function validateHash(hash: string): string {
  if (typeof hash !== 'string') throw new InvalidHashError(String(hash), 'not a string');
  if (hash === '') throw new InvalidHashError(hash, 'is empty');
  // Its UTF-8 would hold U+FFFD instead: 'a\uD800' and 'a\uFFFD' would be one file and one dm name.
  if (hasLoneSurrogate(hash)) throw new InvalidHashError(hash, 'has a lone surrogate (not valid UTF-16)');
  const bytes = Buffer.byteLength(hash);
  if (bytes > HASH_MAX_BYTES) throw new InvalidHashError(hash, `is ${bytes} bytes, at most ${HASH_MAX_BYTES}`);
  if (hash.includes('/')) throw new InvalidHashError(hash, "contains '/'");
  if (hash.includes('\0')) throw new InvalidHashError(hash, 'contains a NUL byte');
  const control = CONTROL.exec(hash)?.[0];
  if (control !== undefined) throw new InvalidHashError(hash, describeChar(control, 'a control character'));
  const space = WHITESPACE.exec(hash)?.[0];
  if (space !== undefined) throw new InvalidHashError(hash, describeChar(space, 'a space character'));
  if (hash.startsWith('.')) throw new InvalidHashError(hash, "starts with '.'");
  if (RESERVED.has(hash)) throw new InvalidHashError(hash, 'is a reserved metadata file name');
  return hash;
}

/** One thin device as the metadata knows it. */
export interface DeviceRecord {
  hash: string;
  deviceId: ThinId;
  sizeBytes: Bytes;
  /** The pool transaction that created it. */
  transactionId: bigint;
  /** The base device: formatted. Others: true. */
  initialized: boolean;
  /** Deletion deferred because the device was busy (dm.use_deferred_deletion). */
  deleted: boolean;
  /** The base device: the file system mkfs made on it (what dm.fs was when the pool was made). */
  filesystem?: 'ext4' | 'xfs';
}

export interface PoolState {
  nextDeviceId: ThinId;
  transactionId: bigint;
  /** The dm name prefix the home's names were made with, when not dm.prefix's default (a Docker home: `docker`). */
  devicePrefix?: string;
  /**
   * Fields another writer keeps in this file (Docker's BaseDeviceUUID, BaseDeviceFilesystem),
   * carried over verbatim; undefined keeps those of the file being replaced.
   */
  foreign?: Readonly<Record<string, unknown>>;
}

/** The pool state file's own fields; every other one is carried over (PoolState.foreign). */
const POOL_STATE_FIELDS = new Set(['next_device_id', 'transaction_id', 'device_prefix']);

export type IntentOp = 'create' | 'snapshot' | 'delete';

/** The open transaction, written before the first message is sent to the pool. */
export interface Intent {
  op: IntentOp;
  hash: string;
  thinId: ThinId;
  /** snapshot: the origin's thin id and hash. */
  originId?: ThinId;
  originHash?: string;
  /** create/snapshot: the new device's size. */
  sizeBytes?: Bytes;
  /** create/snapshot: the pool answered the message with success (the id is ours to delete). */
  created?: boolean;
  oldTransactionId: bigint;
  newTransactionId: bigint;
}

const u64 = (v: bigint): number | string => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString());

/** Sizes stay JSON numbers on disk (the format Docker's metadata has): exact up to 2^53 bytes. */
function jsonSize(path: string, b: Bytes): number {
  if (b > BigInt(Number.MAX_SAFE_INTEGER)) throw new MetadataError(path, `size ${b} is past what the metadata's JSON numbers hold exactly`);
  return Number(b);
}

export class MetadataStore {
  /**
   * The fields of the pool state file that writePoolState carries over (device_prefix and the
   * foreign ones), as this store last read or wrote them; undefined until it has. The home's lock
   * makes this store the file's only writer, so a replacement need not read it back each time.
   */
  private carried: { prefix: unknown; foreign: Record<string, unknown> | undefined } | undefined;

  private constructor(readonly dir: string) {}

  /** Open (creating) the metadata folder; removes temp files a crash left behind. */
  static open(dir: string): MetadataStore {
    makeDirs(dir, 0o700);
    const store = new MetadataStore(dir);
    let removed = false;
    for (const name of readdirSync(dir)) {
      if (name.startsWith(TMP_PREFIX)) {
        unlinkSync(join(dir, name));
        removed = true;
      }
    }
    if (removed) fsyncDir(dir);
    return store;
  }

  private fileOf(hash: string): string {
    return join(this.dir, hash === BASE_HASH ? BASE_FILE : validateHash(hash));
  }

  readPoolState(): PoolState | null {
    const path = join(this.dir, POOL_STATE_FILE);
    const obj = readJson(path);
    this.carried = carriedOf(obj);
    if (obj === null) return null;
    const state: PoolState = {
      nextDeviceId: thinIdField(path, obj, 'next_device_id'),
      transactionId: txField(path, obj, 'transaction_id'),
    };
    const prefix = obj['device_prefix'];
    if (prefix !== undefined) {
      if (typeof prefix !== 'string' || prefix === '') throw new MetadataError(path, 'device_prefix is not a non-empty string');
      state.devicePrefix = prefix;
    }
    const foreign = foreignFields(obj);
    if (foreign !== undefined) state.foreign = foreign;
    return state;
  }

  /** The pool state; the prefix and foreign fields of the file replaced are kept unless `s` has its own. */
  writePoolState(s: PoolState): void {
    const before =
      s.devicePrefix === undefined || s.foreign === undefined
        ? (this.carried ?? carriedOf(readJson(join(this.dir, POOL_STATE_FILE))))
        : undefined;
    const prefix = s.devicePrefix ?? before?.prefix;
    const foreign = s.foreign ?? before?.foreign;
    this.carried = undefined;
    this.write(POOL_STATE_FILE, {
      ...foreign,
      next_device_id: s.nextDeviceId,
      transaction_id: u64(s.transactionId),
      ...(typeof prefix === 'string' ? { device_prefix: prefix } : {}),
    });
    this.carried = { prefix, foreign };
  }

  readDevice(hash: string): DeviceRecord | null {
    const path = this.fileOf(hash);
    const obj = readJson(path);
    return obj === null ? null : toRecord(path, hash, obj);
  }

  /** Every device file: hash -> record ('' for the base). */
  readDevices(): Map<string, DeviceRecord> {
    const out = new Map<string, DeviceRecord>();
    for (const name of readdirSync(this.dir).sort()) {
      if (name === POOL_STATE_FILE || name === INTENT_FILE || name.startsWith(TMP_PREFIX)) continue;
      const hash = name === BASE_FILE ? BASE_HASH : name;
      const path = join(this.dir, name);
      const obj = readJson(path);
      if (obj !== null) out.set(hash, toRecord(path, hash, obj));
    }
    return out;
  }

  writeDevice(r: DeviceRecord): void {
    const name = r.hash === BASE_HASH ? BASE_FILE : validateHash(r.hash);
    this.write(name, {
      hash: r.hash,
      device_id: r.deviceId,
      size: jsonSize(join(this.dir, name), r.sizeBytes),
      transaction_id: u64(r.transactionId),
      initialized: r.initialized,
      deleted: r.deleted,
      ...(r.filesystem !== undefined ? { filesystem: r.filesystem } : {}),
    });
  }

  removeDevice(hash: string): void {
    this.remove(this.fileOf(hash));
  }

  /** Whether an intent file is there (access(2): no read, no error object when it is not). */
  hasIntent(): boolean {
    return existsSync(join(this.dir, INTENT_FILE));
  }

  readIntent(): Intent | null {
    const path = join(this.dir, INTENT_FILE);
    const o = readJson(path);
    if (o === null) return null;
    const op = o['op'];
    if (op !== 'create' && op !== 'snapshot' && op !== 'delete') throw new MetadataError(path, `unknown op ${JSON.stringify(op)}`);
    const hash = o['hash'];
    if (typeof hash !== 'string') throw new MetadataError(path, 'hash is not a string');
    const intent: Intent = {
      op,
      hash,
      thinId: thinIdField(path, o, 'thin_id'),
      oldTransactionId: txField(path, o, 'old_transaction_id'),
      newTransactionId: txField(path, o, 'new_transaction_id'),
    };
    if (o['origin_id'] !== undefined) intent.originId = thinIdField(path, o, 'origin_id');
    if (typeof o['origin_hash'] === 'string') intent.originHash = o['origin_hash'];
    if (o['size'] !== undefined) intent.sizeBytes = bytes(intField(path, o, 'size'));
    if (o['created'] === true) intent.created = true;
    return intent;
  }

  writeIntent(i: Intent): void {
    const o: Record<string, unknown> = {
      op: i.op,
      hash: i.hash,
      thin_id: i.thinId,
      old_transaction_id: u64(i.oldTransactionId),
      new_transaction_id: u64(i.newTransactionId),
    };
    if (i.originId !== undefined) o['origin_id'] = i.originId;
    if (i.originHash !== undefined) o['origin_hash'] = i.originHash;
    if (i.sizeBytes !== undefined) o['size'] = jsonSize(join(this.dir, INTENT_FILE), i.sizeBytes);
    if (i.created === true) o['created'] = true;
    this.write(INTENT_FILE, o);
  }

  /** Undo a new pool's first steps: the pool state, the base's record, an intent (never other devices'). */
  forgetPool(): void {
    this.carried = undefined;
    for (const name of [INTENT_FILE, BASE_FILE, POOL_STATE_FILE]) this.remove(join(this.dir, name));
    for (const name of readdirSync(this.dir)) if (name.startsWith(TMP_PREFIX)) unlinkSync(join(this.dir, name));
  }

  clearIntent(): void {
    this.remove(join(this.dir, INTENT_FILE));
  }

  private write(name: string, obj: unknown): void {
    writeFileAtomic(join(this.dir, name), `${JSON.stringify(obj, null, 2)}\n`);
  }

  private remove(path: string): void {
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    fsyncDir(dirname(path));
  }
}

/**
 * The temp files' tag: random once per process, then counted. A name is unique without a read of
 * the system's random source per write (OpenSSL's getpid and time checks are two system calls).
 */
let tmpTag: number | undefined;
function nextTmpTag(): string {
  tmpTag = tmpTag === undefined ? randomBytes(4).readUInt32BE(0) : (tmpTag + 1) >>> 0;
  return tmpTag.toString(16).padStart(8, '0');
}

/** Temp file, fsync, rename, fsync of the folder. */
export function writeFileAtomic(path: string, data: string): void {
  const dir = dirname(path);
  const tmp = join(dir, `${TMP_PREFIX}${path.slice(dir.length + 1)}-${process.pid}-${nextTmpTag()}`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    const buf = Buffer.from(data);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  fsyncDir(dir);
}

/** A JSON object file; null when missing; MetadataError when it is not a JSON object. */
export function readJson(path: string): Record<string, unknown> | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new MetadataError(path, `corrupted JSON (${(e as Error).message}); restore it from a backup or remove the pool`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new MetadataError(path, 'not a JSON object');
  return v as Record<string, unknown>;
}

/** What writePoolState carries over from a pool state file (null: none there). */
function carriedOf(o: Record<string, unknown> | null): { prefix: unknown; foreign: Record<string, unknown> | undefined } {
  return { prefix: o?.['device_prefix'], foreign: o ? foreignFields(o) : undefined };
}

function foreignFields(o: Record<string, unknown>): Record<string, unknown> | undefined {
  const out = Object.fromEntries(Object.entries(o).filter(([k]) => !POOL_STATE_FIELDS.has(k)));
  return Object.keys(out).length > 0 ? out : undefined;
}

function intField(path: string, o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new MetadataError(path, `${key} is not a non-negative integer`);
  return v;
}

/** A dm-thin device id as the metadata keeps it: a number in 0..2^24-1. */
function thinIdField(path: string, o: Record<string, unknown>, key: string): ThinId {
  const v = intField(path, o, key);
  if (v > THIN_ID_MAX) throw new MetadataError(path, `${key} is over 24 bits`);
  return v as ThinId;
}

function txField(path: string, o: Record<string, unknown>, key: string): bigint {
  const v = o[key];
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^\d{1,20}$/.test(v) && BigInt(v) < 2n ** 64n) return BigInt(v);
  throw new MetadataError(path, `${key} is not a 64-bit transaction id`);
}

function toRecord(path: string, hash: string, o: Record<string, unknown>): DeviceRecord {
  if (o['hash'] !== undefined && o['hash'] !== hash)
    throw new MetadataError(path, `holds hash ${JSON.stringify(o['hash'])}, not its file name's`);
  const deviceId = thinIdField(path, o, 'device_id');
  const rec: DeviceRecord = {
    hash,
    deviceId,
    sizeBytes: bytes(intField(path, o, 'size')),
    transactionId: txField(path, o, 'transaction_id'),
    initialized: o['initialized'] === true,
    deleted: o['deleted'] === true,
  };
  const fs = o['filesystem'];
  if (fs === 'ext4' || fs === 'xfs') rec.filesystem = fs;
  return rec;
}
