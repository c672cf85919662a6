// DmNameListView: the DM_LIST_DEVICES reply indexed once and read on demand, against payloads built
// field by field (test/support/buffers.ts), a UTF-8 name, and lying buffers (typed errors only).
import { describe, expect, test } from 'vitest';
import {
  DecodeError,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DmNameListView,
  decodeNameList,
  newNameListCache,
  readNameList,
} from '../../src/structs/index.js';
import { nameList, patched } from '../support/buffers.js';

function decodeErr(fn: () => unknown, offset?: number): DecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DecodeError);
  const err = caught as DecodeError;
  expect(err.struct).toBe('dm_name_list');
  if (offset !== undefined) expect(err.offset).toBe(offset);
  return err;
}

// "vg-Données" and a name of non-Latin characters: dm names are bytes; these are their UTF-8.
const UTF8_NAME = 'vg-Donn\u00e9es-\u6570\u636e';

describe('DmNameListView', () => {
  const golden = nameList([
    { dev: 0xfd00n, name: 'pool', event_nr: 3, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'LVM-abc' },
    { dev: 0x100000fd01n, name: UTF8_NAME, event_nr: 0, flags: 0 },
    { dev: 0xfd02n, name: 'x', event_nr: 0xffffffff, flags: 0 },
  ]);

  test('every field, read on demand, as the record was built', () => {
    const v = DmNameListView.of(golden);
    expect(v.length).toBe(3);
    expect(v.names()).toEqual(['pool', UTF8_NAME, 'x']);
    expect([v.name(0), v.name(1), v.name(2)]).toEqual(['pool', UTF8_NAME, 'x']);
    expect([v.dev(0), v.dev(1), v.dev(2)]).toEqual([0xfd00n, 0x100000fd01n, 0xfd02n]);
    expect([v.devLow(1), v.devHigh(1)]).toEqual([0xfd01, 0x10]);
    expect([v.event_nr(0), v.event_nr(1), v.event_nr(2)]).toEqual([3, 0, 0xffffffff]);
    expect([v.flags(0), v.flags(1)]).toEqual([DM_NAME_LIST_FLAG_HAS_UUID, 0]);
    expect([v.uuid(0), v.uuid(1), v.uuid(2)]).toEqual(['LVM-abc', undefined, undefined]);
  });

  test('a UTF-8 name decodes from its bytes, and is found by them', () => {
    const v = DmNameListView.of(golden);
    expect(Buffer.from(v.name(1), 'utf8')).toEqual(Buffer.from(UTF8_NAME, 'utf8'));
    expect(v.indexOf(UTF8_NAME)).toBe(1);
    // Its Latin-1 reading is another name: no match.
    expect(v.indexOf(Buffer.from(UTF8_NAME, 'utf8').toString('latin1'))).toBe(-1);
  });

  test('indexOf: by whole name, not a prefix or a suffix', () => {
    const v = DmNameListView.of(golden);
    expect([v.indexOf('pool'), v.indexOf('x'), v.indexOf('poo'), v.indexOf('pool2'), v.indexOf('')]).toEqual([0, 2, -1, -1, -1]);
  });

  test('agrees with decodeNameList and readNameList on the same payload', () => {
    const v = DmNameListView.of(golden);
    const entries = decodeNameList(golden);
    expect(entries.map((e) => e.name)).toEqual(v.names());
    expect(entries.map((e) => e.dev)).toEqual([0, 1, 2].map((i) => v.dev(i)));
    const seen: string[] = [];
    readNameList(golden, (r) => seen.push(`${r.name}:${r.event_nr}:${r.uuid}`));
    expect(seen).toEqual(['pool:3:LVM-abc', `${UTF8_NAME}:0:undefined`, 'x:4294967295:undefined']);
  });

  test('old kernels: no tail, so no event_nr, flags or uuid', () => {
    const v = DmNameListView.of(
      nameList([
        { dev: 0xfe00n, name: 'lin0' },
        { dev: 0xfe01n, name: 'lin2' },
      ]),
    );
    expect(v.names()).toEqual(['lin0', 'lin2']);
    expect([v.event_nr(0), v.flags(1), v.uuid(1)]).toEqual([undefined, undefined, undefined]);
  });

  test('empty: no payload, or a zeroed dev', () => {
    expect(DmNameListView.of(new Uint8Array(0)).length).toBe(0);
    expect(DmNameListView.of(new Uint8Array(16)).names()).toEqual([]);
    expect(DmNameListView.of(new Uint8Array(16)).indexOf('a')).toBe(-1);
  });

  test('more records than the index first holds', () => {
    const names = Array.from({ length: 1000 }, (_, i) => `dev-${i}`);
    const v = DmNameListView.of(nameList(names.map((name, i) => ({ dev: BigInt(i + 1), name, event_nr: i, flags: 0 }))));
    expect(v.names()).toEqual(names);
    expect(v.indexOf('dev-999')).toBe(999);
    expect(v.event_nr(999)).toBe(999);
  });

  test('a plain Uint8Array (not a Buffer), at an offset in a larger one', () => {
    const big = new Uint8Array(golden.length + 312);
    big.set(golden, 312);
    expect(DmNameListView.of(big.subarray(312)).names()).toEqual(['pool', UTF8_NAME, 'x']);
  });

  test('an index outside the list is a RangeError', () => {
    const v = DmNameListView.of(golden);
    expect(() => v.name(3)).toThrow(RangeError);
    expect(() => v.dev(-1)).toThrow(RangeError);
    expect(() => v.event_nr(1.5)).toThrow(RangeError);
  });

  describe('a lying buffer: a DecodeError with the offset, before any record is read', () => {
    test('shorter than a dev', () => decodeErr(() => DmNameListView.of(golden.subarray(0, 5)), 0));
    test('record header cut', () => decodeErr(() => DmNameListView.of(golden.subarray(0, 10)), 0));
    test('truncated inside the second record', () => decodeErr(() => DmNameListView.of(golden.subarray(0, 50))));
    test('next outside', () => decodeErr(() => DmNameListView.of(patched(golden, 'dm_name_list', { next: 4096 })), 8));
    test('next inside the name', () => decodeErr(() => DmNameListView.of(patched(golden, 'dm_name_list', { next: 14 })), 12));
    test('next too small to hold a record header', () => decodeErr(() => DmNameListView.of(patched(golden, 'dm_name_list', { next: 4 }))));
    test('a name without a NUL', () => {
      const bad = patched(new Uint8Array(20), 'dm_name_list', { dev: 1n, name: 'a'.repeat(8) });
      decodeErr(() => DmNameListView.of(bad), 12);
    });
    test('the uuid flag with no NUL-terminated uuid', () => {
      const one = nameList([{ dev: 1n, name: 'a', event_nr: 0, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'u'.repeat(7) }]);
      decodeErr(() => DmNameListView.of(one.subarray(0, one.length - 1)));
    });
    test('every cut of the golden payload: a whole list or a DecodeError, never another error', () => {
      for (let n = 0; n < golden.length; n++) {
        try {
          DmNameListView.of(golden.subarray(0, n)).names();
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
        }
      }
    });
  });
});

describe('DmNameListView.names with a cache', () => {
  const list = (names: string[]) => nameList(names.map((name, i) => ({ dev: BigInt(i + 1), name, event_nr: 0, flags: 0 })));

  test('an unchanged name gives the same string; a changed, longer or shorter list gives its own names', () => {
    const cache = newNameListCache();
    const first = DmNameListView.of(list(['a', 'bb', UTF8_NAME])).names(cache);
    expect(first).toEqual(['a', 'bb', UTF8_NAME]);
    // Same length at the same place, other bytes; then a longer list, then a shorter one.
    const cases = [
      ['a', 'bc', UTF8_NAME],
      ['a', 'bc', UTF8_NAME, 'dddd'],
      ['a', 'b', UTF8_NAME.slice(0, -1), 'dddd', 'e'],
      ['e'],
      [],
      ['a', 'bc'],
    ];
    for (const names of cases) expect(DmNameListView.of(list(names)).names(cache)).toEqual(names);
  });

  test('the cache keeps its own bytes: the reply buffer reused and overwritten does not fool it', () => {
    const cache = newNameListCache();
    const reused = Buffer.alloc(256);
    const one = list(['aaaa', 'bbbb']);
    one.copy(reused);
    expect(DmNameListView.of(reused.subarray(0, one.length)).names(cache)).toEqual(['aaaa', 'bbbb']);
    const two = list(['aaaa', 'cccc']);
    two.copy(reused);
    expect(DmNameListView.of(reused.subarray(0, two.length)).names(cache)).toEqual(['aaaa', 'cccc']);
  });

  test('the returned array is the caller’s: changing it does not change the next list', () => {
    const cache = newNameListCache();
    const got = DmNameListView.of(list(['x', 'y'])).names(cache);
    got[0] = 'changed';
    got.length = 1;
    expect(DmNameListView.of(list(['x', 'y'])).names(cache)).toEqual(['x', 'y']);
  });
});
