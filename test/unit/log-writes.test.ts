import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  bufferSource,
  decodeLog,
  type Extent,
  fileSource,
  flushPoints,
  LOG_DISCARD_FLAG,
  LOG_FLUSH_FLAG,
  LOG_FUA_FLAG,
  LOG_MARK_FLAG,
  LOG_METADATA_FLAG,
  LOG_WRITE_ENTRY_OFFSETS,
  LOG_WRITE_SUPER_OFFSETS,
  LogWritesError,
  markIndex,
  readLogFile,
  replayLog,
  WRITE_LOG_MAGIC,
  WRITE_LOG_VERSION,
} from '../support/log-writes.js';

// A log as dm-log-writes lays it out, built field by field at the kernel's offsets (struct
// log_write_super, struct log_write_entry): nothing here is checked, so a test can make it lie.
interface SynthEntry {
  sector?: bigint;
  nr_sectors?: bigint;
  flags?: number;
  data_len?: bigint;
  /** Bytes after the struct in the entry's sector (a mark's label). */
  label?: string;
  /** Data sectors that follow the entry (a write's data); default nr_sectors sectors of `fill`. */
  data?: Buffer;
  fill?: number;
}

function synthLog(
  entries: SynthEntry[],
  opts: { sectorsize?: number; nr_entries?: bigint; magic?: bigint; version?: bigint } = {},
): Buffer {
  const ss = opts.sectorsize ?? 512;
  const parts: Buffer[] = [];
  const sup = Buffer.alloc(ss);
  sup.writeBigUInt64LE(opts.magic ?? WRITE_LOG_MAGIC, LOG_WRITE_SUPER_OFFSETS.magic);
  sup.writeBigUInt64LE(opts.version ?? WRITE_LOG_VERSION, LOG_WRITE_SUPER_OFFSETS.version);
  sup.writeBigUInt64LE(opts.nr_entries ?? BigInt(entries.length), LOG_WRITE_SUPER_OFFSETS.nr_entries);
  sup.writeUInt32LE(ss, LOG_WRITE_SUPER_OFFSETS.sectorsize);
  parts.push(sup);
  for (const e of entries) {
    const head = Buffer.alloc(ss);
    const nr = e.nr_sectors ?? 0n;
    head.writeBigUInt64LE(e.sector ?? 0n, LOG_WRITE_ENTRY_OFFSETS.sector);
    head.writeBigUInt64LE(nr, LOG_WRITE_ENTRY_OFFSETS.nr_sectors);
    head.writeBigUInt64LE(BigInt(e.flags ?? 0), LOG_WRITE_ENTRY_OFFSETS.flags);
    head.writeBigUInt64LE(
      e.data_len ?? (e.label !== undefined ? BigInt(Buffer.byteLength(e.label)) : 0n),
      LOG_WRITE_ENTRY_OFFSETS.data_len,
    );
    if (e.label !== undefined) head.write(e.label, 32);
    parts.push(head);
    const isData = ((e.flags ?? 0) & (LOG_DISCARD_FLAG | LOG_MARK_FLAG)) === 0;
    if (e.data) parts.push(e.data);
    else if (isData && nr > 0n) parts.push(Buffer.alloc(Number(nr) * ss, e.fill ?? 0));
  }
  return Buffer.concat(parts);
}

const write = (sector: bigint, nr: bigint, fill: number, flags = 0): SynthEntry => ({ sector, nr_sectors: nr, fill, flags });
const mark = (label: string): SynthEntry => ({ flags: LOG_MARK_FLAG, label });
const flush: SynthEntry = { flags: LOG_FLUSH_FLAG };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'log-writes-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function target(bytes: number, fill = 0xee): { path: string; fd: number } {
  const path = join(dir, 'target');
  writeFileSync(path, Buffer.alloc(bytes, fill));
  return { path, fd: openSync(path, 'r+') };
}

describe('decodeLog', () => {
  test('reads writes, flushes, FUA, discards and marks with their fields and data offsets', () => {
    const buf = synthLog([
      write(8n, 2n, 0xaa),
      flush,
      write(0n, 1n, 0xbb, LOG_FUA_FLAG | LOG_METADATA_FLAG),
      { sector: 4n, nr_sectors: 4n, flags: LOG_DISCARD_FLAG },
      mark('snap-a'),
      write(3n, 1n, 0xcc, LOG_FLUSH_FLAG),
    ]);
    const log = decodeLog(bufferSource(buf));
    expect(log.super).toEqual({ magic: WRITE_LOG_MAGIC, version: 1n, nrEntries: 6n, sectorSize: 512 });
    expect(log.entries.map((e) => [e.index, e.sector, e.nrSectors, e.flags, e.dataLen, e.mark])).toEqual([
      [0, 8n, 2n, 0, 0n, undefined],
      [1, 0n, 0n, LOG_FLUSH_FLAG, 0n, undefined],
      [2, 0n, 1n, LOG_FUA_FLAG | LOG_METADATA_FLAG, 0n, undefined],
      [3, 4n, 4n, LOG_DISCARD_FLAG, 0n, undefined],
      [4, 0n, 0n, LOG_MARK_FLAG, 6n, 'snap-a'],
      [5, 3n, 1n, LOG_FLUSH_FLAG, 0n, undefined],
    ]);
    // Sector 0 the super; 1 entry 0, 2-3 its data; 4 the flush; 5 entry 2, 6 its data; 7 the
    // discard (no data); 8 the mark; 9 entry 5, 10 its data. dataOffset is right after each entry.
    expect(log.entries.map((e) => e.dataOffset / 512)).toEqual([2, 5, 6, 8, 9, 10]);
    expect(buf.subarray(log.entries[5]!.dataOffset, log.entries[5]!.dataOffset + 512)).toEqual(Buffer.alloc(512, 0xcc));
    expect(flushPoints(log)).toEqual([1, 2, 5]);
    expect(markIndex(log, 'snap-a')).toBe(4);
    expect(() => markIndex(log, 'nope')).toThrow(LogWritesError);
  });

  test('a 4096-byte sectorsize counts sectors and data in device sectors', () => {
    const buf = synthLog([write(1n, 2n, 0x11), mark('m')], { sectorsize: 4096 });
    const log = decodeLog(bufferSource(buf));
    expect(log.entries[0]!.dataOffset).toBe(8192);
    expect(log.entries[1]!.dataOffset).toBe(4096 * 5);
    expect(buf.length).toBe(4096 * 5);
  });

  test('an empty log (only the super) has no entries', () => {
    expect(decodeLog(bufferSource(synthLog([]))).entries).toEqual([]);
  });

  const lies: [string, () => Buffer, RegExp][] = [
    ['a short super', () => Buffer.alloc(20), /shorter than its super/],
    ['a wrong magic', () => synthLog([], { magic: 0x1234n }), /magic is 0x1234/],
    ['a later version', () => synthLog([], { version: 2n }), /version 2/],
    ['a sectorsize that is not a power of two', () => synthLog([], { sectorsize: 1000 }), /sectorsize 1000/],
    ['nr_entries past what the log can hold', () => synthLog([flush], { nr_entries: 2n ** 63n }), /cannot fit/],
    ['nr_entries one more than written', () => Buffer.concat([synthLog([flush], { nr_entries: 3n })]), /cannot fit|past the log's end/],
    ['data that runs past the end', () => synthLog([{ sector: 0n, nr_sectors: 1000n, data: Buffer.alloc(512) }]), /run past the log's end/],
    [
      'nr_sectors of 2^64 - 1',
      () => synthLog([{ sector: 0n, nr_sectors: 2n ** 64n - 1n, data: Buffer.alloc(0) }]),
      /run past the log's end/,
    ],
    ['unknown flags', () => synthLog([{ flags: 1 << 7 }]), /unknown flags 0x80/],
    ['a mark longer than its sector', () => synthLog([{ flags: LOG_MARK_FLAG, data_len: 600n }]), /does not fit its sector/],
    ['data_len on a write', () => synthLog([{ sector: 0n, nr_sectors: 1n, data_len: 5n, fill: 1 }]), /not a mark/],
  ];
  for (const [what, make, msg] of lies) {
    test(`a log with ${what} is EBADMSG`, () => {
      let err: unknown;
      try {
        decodeLog(bufferSource(make()));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(LogWritesError);
      expect((err as LogWritesError).code).toBe('EBADMSG');
      expect((err as Error).message).toMatch(msg);
    });
  }

  test('a write past the target is ENOSPC when the target size is given', () => {
    const buf = synthLog([write(7n, 2n, 1)]);
    expect(() => decodeLog(bufferSource(buf), { targetBytes: 8 * 512 })).toThrow(/ENOSPC.*run past the target/);
    expect(decodeLog(bufferSource(buf), { targetBytes: 9 * 512 }).entries).toHaveLength(1);
  });

  test('a file source reads the same log as a buffer', () => {
    const buf = synthLog([write(2n, 1n, 0x5a), mark('x')]);
    const path = join(dir, 'log');
    writeFileSync(path, buf);
    const r = readLogFile(path);
    try {
      expect(r.log).toEqual(decodeLog(bufferSource(buf)));
    } finally {
      r.close();
    }
    const fd = openSync(path, 'r');
    try {
      expect(() => fileSource(fd, buf.length + 512).read(buf.length, 512)).toThrow(/short of a read/);
    } finally {
      closeSync(fd);
    }
  });
});

describe('replayLog', () => {
  const buf = synthLog([
    write(0n, 2n, 0x01), // 0
    flush, // 1
    write(1n, 2n, 0x02), // 2
    mark('two'), // 3
    { sector: 0n, nr_sectors: 1n, flags: LOG_DISCARD_FLAG }, // 4
    write(5n, 1n, 0x03, LOG_FUA_FLAG), // 5
  ]);
  const log = decodeLog(bufferSource(buf));
  const src = bufferSource(buf);
  const sector = (b: Buffer, n: number) => b.subarray(n * 512, (n + 1) * 512);

  test('applies entries up to N inclusive, and only those', () => {
    const t = target(8 * 512);
    try {
      expect(replayLog(log, src, t.fd, 1, { targetBytes: 8 * 512 })).toBe(2);
    } finally {
      closeSync(t.fd);
    }
    const out = readFileSync(t.path);
    expect(sector(out, 0)).toEqual(Buffer.alloc(512, 0x01));
    expect(sector(out, 1)).toEqual(Buffer.alloc(512, 0x01));
    expect(sector(out, 2)).toEqual(Buffer.alloc(512, 0xee));
  });

  test('continues from where it stopped; discards are zeros; reports each range written', () => {
    const t = target(8 * 512);
    const written: Extent[] = [];
    try {
      replayLog(log, src, t.fd, 2, { targetBytes: 8 * 512, onWrite: (x) => written.push(x) });
      replayLog(log, src, t.fd, 5, { from: 3, targetBytes: 8 * 512, onWrite: (x) => written.push(x) });
    } finally {
      closeSync(t.fd);
    }
    const out = readFileSync(t.path);
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => sector(out, n)[0])).toEqual([0x00, 0x02, 0x02, 0xee, 0xee, 0x03, 0xee]);
    expect(sector(out, 0)).toEqual(Buffer.alloc(512));
    expect(written).toEqual([
      { start: 0, end: 1024 },
      { start: 512, end: 1536 },
      { start: 0, end: 512 },
      { start: 2560, end: 3072 },
    ]);
  });

  test('refuses a range outside the log and a target too small, writing nothing', () => {
    const t = target(4 * 512);
    try {
      expect(() => replayLog(log, src, t.fd, 6, { targetBytes: 4 * 512 })).toThrow(/EINVAL/);
      expect(() => replayLog(log, src, t.fd, 1, { from: 3, targetBytes: 4 * 512 })).toThrow(/EINVAL/);
      expect(() => replayLog(log, src, t.fd, 5, { targetBytes: 4 * 512 })).toThrow(/ENOSPC: entry 5/);
    } finally {
      closeSync(t.fd);
    }
    expect(readFileSync(t.path)).toEqual(Buffer.alloc(4 * 512, 0xee));
  });

  test('replaying up to -1 applies nothing', () => {
    const t = target(512);
    try {
      expect(replayLog(log, src, t.fd, -1, { targetBytes: 512 })).toBe(0);
    } finally {
      closeSync(t.fd);
    }
  });
});
