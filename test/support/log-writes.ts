// dm-log-writes' log, read back and replayed (drivers/md/dm-log-writes.c, and xfstests'
// src/log-writes/replay-log for the method). The log device holds, at byte 0, the log super
// (struct log_write_super), then nr_entries entries in the order they completed, each one device
// sector holding a struct log_write_entry (a mark's label follows the struct in that sector),
// then, for a write, the nr_sectors device sectors it wrote. A discard carries no data; a flush
// without data has nr_sectors 0. Writes are logged only once a later flush (or their own FUA) has
// completed, so replaying entries 0..N gives a state the disk could have held after a power loss
// right after entry N.
//
// The decoder trusts nothing in the log: every count and length is checked against the log's own
// size (and the target's, when given) before anything is read or written, and a log that lies
// gets a LogWritesError, never a huge allocation or a write past the target.
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

/** struct log_write_super / log_write_entry constants, as dm-log-writes.c names them. */
export const WRITE_LOG_MAGIC = 0x6a736677736872n;
export const WRITE_LOG_VERSION = 1n;
export const WRITE_LOG_SUPER_SECTOR = 0;
export const LOG_FLUSH_FLAG = 1 << 0;
export const LOG_FUA_FLAG = 1 << 1;
export const LOG_DISCARD_FLAG = 1 << 2;
export const LOG_MARK_FLAG = 1 << 3;
export const LOG_METADATA_FLAG = 1 << 4;
const KNOWN_FLAGS = LOG_FLUSH_FLAG | LOG_FUA_FLAG | LOG_DISCARD_FLAG | LOG_MARK_FLAG | LOG_METADATA_FLAG;

/** Byte offsets in struct log_write_super { __le64 magic, version, nr_entries; __le32 sectorsize; }. */
export const LOG_WRITE_SUPER_OFFSETS = { magic: 0, version: 8, nr_entries: 16, sectorsize: 24 } as const;
export const LOG_WRITE_SUPER_SIZE = 28;
/** Byte offsets in struct log_write_entry { __le64 sector, nr_sectors, flags, data_len; }. */
export const LOG_WRITE_ENTRY_OFFSETS = { sector: 0, nr_sectors: 8, flags: 16, data_len: 24 } as const;
export const LOG_WRITE_ENTRY_SIZE = 32;

/** The sector sizes a block device can have (logical block size: 512 .. page size and beyond). */
const MIN_SECTOR_SIZE = 512;
const MAX_SECTOR_SIZE = 64 * 1024;

/** A log that cannot be what dm-log-writes wrote, or a replay that cannot be done. */
export class LogWritesError extends Error {
  override name = 'LogWritesError';
  constructor(
    /** EBADMSG: the log is malformed; EINVAL: a bad argument; ENOSPC: the target is too small. */
    readonly code: 'EBADMSG' | 'EINVAL' | 'ENOSPC',
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export interface LogWriteSuper {
  magic: bigint;
  version: bigint;
  nrEntries: bigint;
  sectorSize: number;
}

export interface LogWriteEntry {
  /** Position in the log, from 0. */
  index: number;
  /** In device sectors of the super's sectorsize. */
  sector: bigint;
  nrSectors: bigint;
  flags: number;
  dataLen: bigint;
  /** A mark's label (LOG_MARK_FLAG). */
  mark?: string;
  /** Where the written data starts in the log (bytes); only for writes with nr_sectors > 0. */
  dataOffset: number;
}

/** Where the log's bytes come from: a Buffer (unit tests) or an open file or block device. */
export interface LogSource {
  readonly size: number;
  read(offset: number, length: number): Buffer;
}

export function bufferSource(buf: Buffer): LogSource {
  return {
    size: buf.length,
    read: (offset, length) => Buffer.from(buf.subarray(offset, offset + length)),
  };
}

/** A log in a file (a copy of the log device, or the log device's node itself with its size). */
export function fileSource(fd: number, size = fstatSync(fd).size): LogSource {
  return {
    size,
    read(offset, length) {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, buf, got, length - got, offset + got);
        if (n === 0) throw new LogWritesError('EBADMSG', `the log ends at byte ${offset + got}, ${length - got} bytes short of a read`);
        got += n;
      }
      return buf;
    },
  };
}

export interface LogWrites {
  super: LogWriteSuper;
  entries: LogWriteEntry[];
}

export interface DecodeOptions {
  /** The target's size in bytes: a write or discard past it is an error. */
  targetBytes?: number;
}

const isWrite = (e: LogWriteEntry): boolean => (e.flags & (LOG_DISCARD_FLAG | LOG_MARK_FLAG)) === 0;

export function decodeSuper(src: LogSource): LogWriteSuper {
  if (src.size < LOG_WRITE_SUPER_SIZE) throw new LogWritesError('EBADMSG', `the log is ${src.size} bytes, shorter than its super`);
  const b = src.read(WRITE_LOG_SUPER_SECTOR, LOG_WRITE_SUPER_SIZE);
  const s: LogWriteSuper = {
    magic: b.readBigUInt64LE(LOG_WRITE_SUPER_OFFSETS.magic),
    version: b.readBigUInt64LE(LOG_WRITE_SUPER_OFFSETS.version),
    nrEntries: b.readBigUInt64LE(LOG_WRITE_SUPER_OFFSETS.nr_entries),
    sectorSize: b.readUInt32LE(LOG_WRITE_SUPER_OFFSETS.sectorsize),
  };
  if (s.magic !== WRITE_LOG_MAGIC) throw new LogWritesError('EBADMSG', `magic is 0x${s.magic.toString(16)}, not WRITE_LOG_MAGIC`);
  if (s.version !== WRITE_LOG_VERSION) throw new LogWritesError('EBADMSG', `version ${s.version}, only ${WRITE_LOG_VERSION} is known`);
  const ss = s.sectorSize;
  if (ss < MIN_SECTOR_SIZE || ss > MAX_SECTOR_SIZE || (ss & (ss - 1)) !== 0)
    throw new LogWritesError('EBADMSG', `sectorsize ${ss} is not a power of two in ${MIN_SECTOR_SIZE}..${MAX_SECTOR_SIZE}`);
  // The super takes sector 0 and every entry at least one sector more.
  const room = BigInt(Math.floor(src.size / ss) - 1);
  if (s.nrEntries > room) throw new LogWritesError('EBADMSG', `nr_entries ${s.nrEntries} cannot fit in a log of ${src.size} bytes`);
  return s;
}

/** The super and every entry, each checked against the log's size before it is read. */
export function decodeLog(src: LogSource, opts: DecodeOptions = {}): LogWrites {
  const sup = decodeSuper(src);
  const ss = sup.sectorSize;
  const entries: LogWriteEntry[] = [];
  let pos = ss;
  const n = Number(sup.nrEntries);
  for (let index = 0; index < n; index++) {
    if (pos + ss > src.size) throw new LogWritesError('EBADMSG', `entry ${index} at byte ${pos} is past the log's end (${src.size})`);
    const b = src.read(pos, ss);
    const sector = b.readBigUInt64LE(LOG_WRITE_ENTRY_OFFSETS.sector);
    const nrSectors = b.readBigUInt64LE(LOG_WRITE_ENTRY_OFFSETS.nr_sectors);
    const flags64 = b.readBigUInt64LE(LOG_WRITE_ENTRY_OFFSETS.flags);
    const dataLen = b.readBigUInt64LE(LOG_WRITE_ENTRY_OFFSETS.data_len);
    const where = `entry ${index} at byte ${pos}`;
    if ((flags64 & ~BigInt(KNOWN_FLAGS)) !== 0n) throw new LogWritesError('EBADMSG', `${where}: unknown flags 0x${flags64.toString(16)}`);
    const flags = Number(flags64);
    const e: LogWriteEntry = { index, sector, nrSectors, flags, dataLen, dataOffset: pos + ss };
    if (flags & LOG_MARK_FLAG) {
      // log_mark: the label, at most sectorsize - sizeof(entry) - 1 bytes, right after the struct.
      if (dataLen > BigInt(ss - LOG_WRITE_ENTRY_SIZE - 1))
        throw new LogWritesError('EBADMSG', `${where}: a mark of ${dataLen} bytes does not fit its sector`);
      if (nrSectors !== 0n) throw new LogWritesError('EBADMSG', `${where}: a mark with nr_sectors ${nrSectors}`);
      e.mark = b.toString('utf8', LOG_WRITE_ENTRY_SIZE, LOG_WRITE_ENTRY_SIZE + Number(dataLen));
    } else if (dataLen !== 0n) {
      // Only marks carry data_len (log_writes_map never sets it for a bio).
      throw new LogWritesError('EBADMSG', `${where}: data_len ${dataLen} on an entry that is not a mark`);
    }
    const lenBytes = nrSectors * BigInt(ss);
    const endBytes = (sector + nrSectors) * BigInt(ss);
    if (opts.targetBytes !== undefined && (flags & LOG_MARK_FLAG) === 0 && endBytes > BigInt(opts.targetBytes))
      throw new LogWritesError('ENOSPC', `${where}: sectors ${sector}+${nrSectors} run past the target's ${opts.targetBytes} bytes`);
    pos += ss;
    if (isWrite(e) && nrSectors > 0n) {
      if (BigInt(pos) + lenBytes > BigInt(src.size))
        throw new LogWritesError('EBADMSG', `${where}: its ${nrSectors} sectors of data run past the log's end (${src.size})`);
      pos += Number(lenBytes);
    }
    entries.push(e);
  }
  return { super: sup, entries };
}

/** Indices of the entries after which the disk's state is one a power loss can leave: flushes and FUA writes. */
export function flushPoints(log: LogWrites): number[] {
  return log.entries.filter((e) => (e.flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG)) !== 0).map((e) => e.index);
}

/** Index of the mark `label` (the first one), or a LogWritesError if there is none. */
export function markIndex(log: LogWrites, label: string): number {
  const e = log.entries.find((x) => x.mark === label);
  if (!e) throw new LogWritesError('EINVAL', `no mark ${JSON.stringify(label)} in the log`);
  return e.index;
}

/** A byte range [start, end) that a replay wrote (or zeroed) on the target. */
export interface Extent {
  start: number;
  end: number;
}

export interface ReplayOptions {
  /** First entry to apply (default 0): replays continue where an earlier one stopped. */
  from?: number;
  /** The target's size in bytes (checked again here: a write past it is ENOSPC, nothing written). */
  targetBytes: number;
  /** Called with each range written, for a caller that copies only what was ever written. */
  onWrite?: (extent: Extent) => void;
}

const ZEROES = Buffer.alloc(1 << 20);
const CHUNK = 1 << 20;

/**
 * Apply entries `from`..`upTo` (inclusive) of `log` onto the open target `fd`: writes with their
 * data, discards as zeros (what a discard that zeroes data leaves; replay-log's --discard-zeroes).
 * Marks and empty flushes change nothing. Returns the number of entries applied.
 */
export function replayLog(log: LogWrites, src: LogSource, fd: number, upTo: number, opts: ReplayOptions): number {
  const from = opts.from ?? 0;
  if (!Number.isInteger(upTo) || upTo >= log.entries.length || upTo < -1)
    throw new LogWritesError('EINVAL', `entry ${upTo} is not in a log of ${log.entries.length} entries`);
  if (!Number.isInteger(from) || from < 0 || from > upTo + 1) throw new LogWritesError('EINVAL', `cannot replay from ${from} to ${upTo}`);
  const ss = log.super.sectorSize;
  // Check every entry of the range before writing anything.
  for (let i = from; i <= upTo; i++) {
    const e = log.entries[i]!;
    if (e.flags & LOG_MARK_FLAG) continue;
    if ((e.sector + e.nrSectors) * BigInt(ss) > BigInt(opts.targetBytes))
      throw new LogWritesError('ENOSPC', `entry ${i}: sectors ${e.sector}+${e.nrSectors} run past the target's ${opts.targetBytes} bytes`);
  }
  for (let i = from; i <= upTo; i++) {
    const e = log.entries[i]!;
    if (e.flags & LOG_MARK_FLAG || e.nrSectors === 0n) continue;
    const start = Number(e.sector) * ss;
    const len = Number(e.nrSectors) * ss;
    for (let done = 0; done < len; done += CHUNK) {
      const n = Math.min(CHUNK, len - done);
      const data = e.flags & LOG_DISCARD_FLAG ? ZEROES : src.read(e.dataOffset + done, n);
      writeAll(fd, data, n, start + done);
    }
    opts.onWrite?.({ start, end: start + len });
  }
  return upTo - from + 1;
}

function writeAll(fd: number, buf: Buffer, length: number, position: number): void {
  let off = 0;
  while (off < length) off += writeSync(fd, buf, off, length - off, position + off);
}

/** Decode the log held in the file or device at `path`. */
export function readLogFile(path: string, opts: DecodeOptions = {}): { log: LogWrites; src: LogSource; close: () => void } {
  const fd = openSync(path, 'r');
  try {
    const src = fileSource(fd);
    return { log: decodeLog(src, opts), src, close: () => closeSync(fd) };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
