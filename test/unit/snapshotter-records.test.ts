// The snapshotter's record files: what encodeRecord writes decodeRecord reads back exactly (times to
// the nanosecond, past 2^53), and a file that is not a record is refused naming what is wrong.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, idNumber, RecordError, RecordStore, type SnapshotRecord } from '../../src/snapshotter/records.js';

const rec: SnapshotRecord = {
  id: 'snap-12',
  state: 'ready',
  name: 'default/6/sha256:0123456789abcdef',
  parent: 'default/4/k2',
  kind: 'committed',
  labels: { 'containerd.io/snapshot/a': 'b', 'with "quotes"': 'and\nnewline' },
  created: 1_764_633_600_123_456_789n,
  updated: 1_764_633_600_123_456_790n,
};

describe('snapshot records', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('round-trips every field, times exactly', () => {
    const back = decodeRecord('x', encodeRecord(rec));
    expect(back).toEqual(rec);
    expect(JSON.parse(encodeRecord(rec)).created).toBe('1764633600123456789');
  });

  it('ids are snap-<n>, n from 1, nothing else', () => {
    expect(idNumber('snap-1')).toBe(1);
    expect(idNumber('snap-12')).toBe(12);
    for (const bad of ['snap-0', 'snap-01', 'snap-base', 'snap-', 'snap-1a', 'x-1', 'snap-99999999999999999'])
      expect(idNumber(bad), bad).toBeNull();
  });

  it.each([
    ['not JSON', '{', /corrupted JSON/],
    ['an array', '[]', /not a JSON object/],
    ['a bad id', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), id: 'default/1' }), /id "default\/1" is not snap-<n>/],
    ['a bad state', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), state: 'gone' }), /state "gone"/],
    ['a bad kind', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), kind: 'unknown' }), /kind "unknown"/],
    ['an empty name', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), name: '' }), /name is empty/],
    ['a numeric time', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), created: 5 }), /created is not a time/],
    ['a time past 64 bits', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), updated: '18446744073709551616' }), /updated is not a time/],
    ['a label that is not a string', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), labels: { a: 1 } }), /label "a" is not a string/],
    ['no parent', JSON.stringify({ ...JSON.parse(encodeRecord(rec)), parent: undefined }), /parent is not a string/],
  ])('refuses %s', (_what, text, msg) => {
    let err: unknown;
    try {
      decodeRecord('/r/snap-12.json', text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RecordError);
    expect((err as RecordError).code).toBe('EUCLEAN');
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).toContain('/r/snap-12.json');
  });

  it('the store writes, reads in id order, removes, and drops temp files a crash left', () => {
    const dir = mkdtempSync(join(tmpdir(), 'snaprec-'));
    dirs.push(dir);
    writeFileSync(join(dir, '.tmp-snap-3.json-1-abcd'), 'half');
    const store = RecordStore.open(dir);
    expect(readdirSync(dir)).toEqual([]);
    store.write({ ...rec, id: 'snap-10' });
    store.write({ ...rec, id: 'snap-9', name: 'other' });
    expect(store.readAll().map((r) => r.id)).toEqual(['snap-9', 'snap-10']);
    store.remove('snap-10');
    store.remove('snap-10');
    expect(store.readAll().map((r) => r.id)).toEqual(['snap-9']);
    expect(store.hasBase()).toBe(false);
    store.writeBase({ id: 'snap-base', filesystem: 'ext4', created: 1n });
    expect(store.hasBase()).toBe(true);
    expect(store.readAll()).toHaveLength(1);
  });

  it('refuses a record whose file name and id disagree', () => {
    const dir = mkdtempSync(join(tmpdir(), 'snaprec-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'snap-4.json'), encodeRecord({ ...rec, id: 'snap-5' }));
    expect(() => RecordStore.open(dir).readAll()).toThrow(/holds id snap-5/);
  });
});
