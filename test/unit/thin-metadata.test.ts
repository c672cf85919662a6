import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { InvalidHashError, MetadataError } from '../../src/thin/errors.js';
import { IdAllocator } from '../../src/thin/id-allocator.js';
import { BASE_HASH, MetadataStore, validateHash, writeFileAtomic } from '../../src/thin/metadata-store.js';
import { PoolNaming } from '../../src/thin/naming.js';
import { thinId, type ThinId } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-meta-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const rec = (hash: string, id: number) => ({
  hash,
  deviceId: thinId(id),
  sizeBytes: bytes(1 << 20),
  transactionId: 3n,
  initialized: true,
  deleted: false,
});

describe('MetadataStore', () => {
  test('round-trips devices, the base, the pool state and the intent', () => {
    const s = MetadataStore.open(dir);
    expect(s.readPoolState()).toBeNull();
    s.writePoolState({ nextDeviceId: thinId(7), transactionId: 2n ** 60n });
    s.writeDevice(rec(BASE_HASH, 0));
    s.writeDevice(rec('abc', 5));
    s.writeIntent({
      op: 'snapshot',
      hash: 'x',
      thinId: thinId(6),
      originId: thinId(5),
      originHash: 'abc',
      sizeBytes: bytes(4096),
      oldTransactionId: 3n,
      newTransactionId: 4n,
    });
    const t = MetadataStore.open(dir);
    expect(t.readPoolState()).toEqual({ nextDeviceId: 7, transactionId: 2n ** 60n });
    expect([...t.readDevices().keys()]).toEqual(['abc', '']);
    expect(t.readDevice('')).toEqual(rec('', 0));
    expect(readdirSync(dir).sort()).toEqual(['abc', 'base', 'deviceset-metadata', 'transaction-metadata']);
    expect(t.readIntent()).toEqual({
      op: 'snapshot',
      hash: 'x',
      thinId: thinId(6),
      originId: thinId(5),
      originHash: 'abc',
      sizeBytes: bytes(4096),
      oldTransactionId: 3n,
      newTransactionId: 4n,
    });
    t.clearIntent();
    t.clearIntent(); // idempotent
    expect(t.readIntent()).toBeNull();
    t.removeDevice('abc');
    expect(t.readDevice('abc')).toBeNull();
  });

  test('a temp file left by a crash before rename: the old version stands and the temp is removed', () => {
    const s = MetadataStore.open(dir);
    s.writeDevice(rec('abc', 1));
    // What a crash between the temp file's write and the rename leaves behind.
    writeFileSync(join(dir, '.tmp-abc-999-deadbeef'), '{"hash":"abc","device_id":2,');
    const t = MetadataStore.open(dir);
    expect(t.readDevice('abc')?.deviceId).toBe(1);
    expect(readdirSync(dir)).toEqual(['abc']);
  });

  test('atomic write replaces whole files, no temp left', () => {
    const p = join(dir, 'f');
    writeFileAtomic(p, 'one');
    writeFileAtomic(p, 'two');
    expect(readFileSync(p, 'utf8')).toBe('two');
    expect(readdirSync(dir)).toEqual(['f']);
  });

  test.each([
    ['abc', '{"hash":"abc","device_id":'],
    ['abc', '[]'],
    ['abc', '{"hash":"abc","device_id":-1,"size":1,"transaction_id":1}'],
    ['abc', '{"hash":"abc","device_id":16777216,"size":1,"transaction_id":1}'],
    ['abc', '{"hash":"other","device_id":1,"size":1,"transaction_id":1}'],
    ['abc', '{"hash":"abc","device_id":1,"size":1,"transaction_id":"x"}'],
    ['deviceset-metadata', '{"next_device_id":"1"}'],
    ['transaction-metadata', '{"op":"rename","hash":"a","thin_id":1,"old_transaction_id":1,"new_transaction_id":2}'],
  ])('corrupted %s -> MetadataError naming the file', (name, text) => {
    const s = MetadataStore.open(dir);
    writeFileSync(join(dir, name), text);
    const read = () =>
      name === 'deviceset-metadata' ? s.readPoolState() : name === 'transaction-metadata' ? s.readIntent() : s.readDevices();
    expect(read).toThrow(MetadataError);
    expect(read).toThrow(join(dir, name));
  });
});

describe('hashes', () => {
  test.each([
    ['', 'empty'],
    ['a/b', "'/'"],
    ['x'.repeat(128), '128 bytes'],
    ['é'.repeat(64), '128 bytes'],
    ['.hidden', "'.'"],
    ['..', "'.'"],
    ['base', 'reserved'],
    ['pool', 'reserved'],
    ['deviceset-metadata', 'reserved'],
    ['transaction-metadata', 'reserved'],
    ['a\0b', 'NUL'],
  ])('%j rejected', (h, why) => {
    expect(() => validateHash(h)).toThrow(InvalidHashError);
    expect(() => validateHash(h)).toThrow(why);
  });
  test('127 bytes accepted', () => expect(validateHash('x'.repeat(127))).toHaveLength(127));
});

describe('IdAllocator', () => {
  test('skips used ids and wraps at 2^24', () => {
    const a = new IdAllocator(thinId(2 ** 24 - 2), new Set([2 ** 24 - 1, 0, 1].map(thinId)));
    expect(a.peek()).toBe(2 ** 24 - 2);
    a.take(thinId(2 ** 24 - 2));
    expect(a.next).toBe(2 ** 24 - 1);
    expect(a.peek()).toBe(2);
    a.take(thinId(2));
    a.release(thinId(0));
    expect(a.peek(2 ** 24 - 1)).toBe(0);
  });
  test('a bad persisted next id restarts at 0', () => expect(new IdAllocator(-3 as ThinId).peek()).toBe(0));
});

describe('naming', () => {
  test('stem from the folder, pool/base/device names, too-long names refused', () => {
    const n = PoolNaming.forHome(dir, 'dmtest');
    expect(n.stem).toMatch(/^dmtest-\d+:\d+-\d+$/);
    expect(n.poolName()).toBe(`${n.stem}-pool`);
    expect(n.deviceName('')).toBe(`${n.stem}-base`);
    expect(n.deviceName('abc')).toBe(`${n.stem}-abc`);
    expect(() => n.deviceName('x'.repeat(127 - n.stem.length))).toThrow(/bytes/);
    expect(() => n.deviceName('a/b')).toThrow(InvalidHashError);
  });
});
