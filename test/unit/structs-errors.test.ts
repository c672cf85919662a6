// Malformed buffers into every decoder, bad values into every encoder: typed errors naming the
// struct and the offset (or field), never a RangeError, never a hang.
import { describe, expect, test } from 'vitest';
import {
  DecodeError,
  EncodeError,
  decodeDmBuffer,
  decodeDmIoctl,
  decodeLoopConfig,
  decodeLoopInfo64,
  decodeNameList,
  decodeStringPayload,
  decodeTableLoadSpecs,
  decodeTargetDeps,
  decodeTargetMsg,
  decodeTargetSpecs,
  decodeTargetVersions,
  decodeU32,
  decodeU64,
  encodeDmIoctl,
  encodeLoopConfig,
  encodeLoopInfo64,
  encodeNameList,
  encodeRange,
  encodeStringPayload,
  encodeTargetDeps,
  encodeTargetMsg,
  encodeTargetSpecs,
  encodeTargetSpecsReply,
  encodeTargetVersionRequest,
  encodeTargetVersions,
  formatGeometry,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DmFlag,
  readTargetSpecs,
} from '../../src/structs/index.js';
import { dmIoctlBuffer, nameList, patched, targetSpecList } from '../support/buffers.js';

function decodeErr(fn: () => unknown, struct: string, offset?: number): DecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DecodeError);
  const e = caught as DecodeError;
  expect(e.struct).toBe(struct);
  if (offset !== undefined) expect(e.offset).toBe(offset);
  expect(e.message).toContain(`${struct} at offset ${e.offset}`);
  return e;
}

function encodeErr(fn: () => unknown, struct: string, field?: string): EncodeError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(EncodeError);
  const e = caught as EncodeError;
  expect(e.struct).toBe(struct);
  if (field !== undefined) expect(e.field).toBe(field);
  return e;
}

const spec = (i: number, params = `7:2 ${i}`) => ({ sector_start: BigInt(i), length: 1n, target_type: 'linear', params });

describe('dm_target_spec', () => {
  const reply = encodeTargetSpecsReply([
    { ...spec(0), status: 0 },
    { ...spec(1), status: 0 },
  ]);
  const load = encodeTargetSpecs([spec(0), spec(1)]);

  test('round trips both layouts', () => {
    expect(decodeTargetSpecs(reply, 2).map((s) => s.params)).toEqual(['7:2 0', '7:2 1']);
    expect(decodeTableLoadSpecs(load, 2).map((s) => s.params)).toEqual(['7:2 0', '7:2 1']);
    // the two layouts differ only in the second spec's next (relative 48 vs from-start 96)
    expect(readTargetSpecs(load, 2, 'relative')[1]!.next).toBe(48);
    expect(readTargetSpecs(reply, 2, 'from-start')[1]!.next).toBe(96);
    // and the builder lays them out the same way
    expect(targetSpecList([spec(0), spec(1)], 'relative')).toEqual(Buffer.from(load));
    expect(targetSpecList([spec(0), spec(1)], 'from-start').subarray(0, reply.length)).toEqual(Buffer.from(reply));
  });
  test('count larger than the buffer', () => decodeErr(() => decodeTargetSpecs(reply, 3), 'dm_target_spec', 0));
  test('absurd count does not loop', () => decodeErr(() => decodeTargetSpecs(reply, 0xffffffff), 'dm_target_spec', 0));
  test('truncated', () => decodeErr(() => decodeTargetSpecs(reply.subarray(0, 30), 1), 'dm_target_spec', 0));
  test('next outside the payload', () =>
    decodeErr(() => decodeTargetSpecs(patched(reply, 'dm_target_spec', { next: 4000 }), 2), 'dm_target_spec', 20));
  test('next not advancing (points back at the spec itself)', () =>
    decodeErr(() => decodeTargetSpecs(patched(reply, 'dm_target_spec', { next: 0 }), 2), 'dm_target_spec', 20));
  test('relative next of 0 does not advance', () =>
    decodeErr(() => decodeTableLoadSpecs(patched(load, 'dm_target_spec', { next: 0 }), 2), 'dm_target_spec', 20));
  test('next into the params of the same spec', () =>
    decodeErr(() => decodeTargetSpecs(patched(reply, 'dm_target_spec', { next: 42 }), 2), 'dm_target_spec', 20));
  test('params without a NUL', () => {
    const bad = reply.slice(0, 45); // cut inside the first params, before its NUL
    decodeErr(() => decodeTargetSpecs(bad, 1), 'dm_target_spec', 40);
  });
  test('target_type without a NUL within 16 bytes', () => {
    const bad = patched(reply, 'dm_target_spec', { target_type: 'A'.repeat(16) });
    decodeErr(() => decodeTargetSpecs(bad, 1), 'dm_target_spec', 24);
  });
  test('encode: target_type over 15 bytes, empty, NUL in params, negative sector', () => {
    encodeErr(() => encodeTargetSpecs([{ ...spec(0), target_type: 'x'.repeat(16) }]), 'dm_target_spec', '[0].target_type');
    encodeErr(() => encodeTargetSpecs([{ ...spec(0), target_type: '' }]), 'dm_target_spec', '[0].target_type');
    encodeErr(() => encodeTargetSpecs([spec(0, 'a\0b')]), 'dm_target_spec', '[0].params');
    encodeErr(() => encodeTargetSpecs([{ ...spec(0), sector_start: -1n }]), 'dm_target_spec', '[0].sector_start');
    encodeErr(() => encodeTargetSpecs([{ ...spec(0), length: 1n << 64n }]), 'dm_target_spec', '[0].length');
  });
});

describe('dm_name_list', () => {
  const list = encodeNameList(
    [
      { dev: 0xfe00n, name: 'a', event_nr: 1, flags: 0 },
      { dev: 0xfe01n, name: 'bb', uuid: 'U-1' },
    ],
    { withTail: true },
  );
  test('round trip, uuid only with the flag; the builder lays it out the same', () => {
    expect(
      nameList([
        { dev: 0xfe00n, name: 'a', event_nr: 1, flags: 0 },
        { dev: 0xfe01n, name: 'bb', event_nr: 0, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'U-1' },
      ]),
    ).toEqual(Buffer.from(list));
    expect(decodeNameList(list)).toEqual([
      { dev: 0xfe00n, name: 'a', event_nr: 1, flags: 0 },
      { dev: 0xfe01n, name: 'bb', event_nr: 0, flags: DM_NAME_LIST_FLAG_HAS_UUID, uuid: 'U-1' },
    ]);
  });
  test('old kernels: no tail', () => {
    const old = encodeNameList(
      [
        { dev: 0xfe00n, name: 'lin0' },
        { dev: 0xfe01n, name: 'lin2' },
      ],
      { withTail: false },
    );
    expect(old.length).toBe(48);
    expect(decodeNameList(old)).toEqual([
      { dev: 0xfe00n, name: 'lin0' },
      { dev: 0xfe01n, name: 'lin2' },
    ]);
  });
  test('empty: no payload, or a zeroed dev', () => {
    expect(decodeNameList(new Uint8Array(0))).toEqual([]);
    expect(decodeNameList(new Uint8Array(16))).toEqual([]);
    expect(encodeNameList([], { withTail: true })).toHaveLength(0);
  });
  test('truncated', () => decodeErr(() => decodeNameList(list.subarray(0, 5)), 'dm_name_list', 0));
  test('record header cut', () => decodeErr(() => decodeNameList(list.subarray(0, 10)), 'dm_name_list', 0));
  test('next outside', () => decodeErr(() => decodeNameList(patched(list, 'dm_name_list', { next: 1000 })), 'dm_name_list', 8));
  test('next inside the name (not advancing past it)', () =>
    decodeErr(() => decodeNameList(patched(list, 'dm_name_list', { next: 13 })), 'dm_name_list'));
  test('next too small to hold the name header', () =>
    decodeErr(() => decodeNameList(patched(list, 'dm_name_list', { next: 4 })), 'dm_name_list'));
  test('name without a NUL', () => {
    const bad = patched(new Uint8Array(20), 'dm_name_list', { dev: 1n, name: 'a'.repeat(8) });
    decodeErr(() => decodeNameList(bad), 'dm_name_list', 12);
  });
  test('uuid flag but no NUL-terminated uuid', () => {
    const bad = list.slice(0, list.length - 8); // cut the uuid
    decodeErr(() => decodeNameList(bad), 'dm_name_list');
  });
  test('encode: name over 127 bytes, dev 0, uuid without tail, uuid over 128', () => {
    encodeErr(() => encodeNameList([{ dev: 1n, name: 'n'.repeat(128) }], { withTail: true }), 'dm_name_list', '[0].name');
    encodeNameList([{ dev: 1n, name: 'n'.repeat(127) }], { withTail: true });
    encodeErr(() => encodeNameList([{ dev: 0n, name: 'x' }], { withTail: true }), 'dm_name_list', '[0].dev');
    encodeErr(() => encodeNameList([{ dev: 1n, name: 'x', uuid: 'u' }], { withTail: false }), 'dm_name_list', '[0].uuid');
    encodeErr(() => encodeNameList([{ dev: 1n, name: 'x', uuid: 'u'.repeat(129) }], { withTail: true }), 'dm_name_list', '[0].uuid');
  });
});

describe('dm_target_deps', () => {
  test('round trip', () => expect(decodeTargetDeps(encodeTargetDeps([0x702n, 0xfe04n]))).toEqual([0x702n, 0xfe04n]));
  test('truncated', () => decodeErr(() => decodeTargetDeps(new Uint8Array(7)), 'dm_target_deps', 0));
  test('count larger than the buffer', () =>
    decodeErr(() => decodeTargetDeps(patched(encodeTargetDeps([1n]), 'dm_target_deps', { count: 2 })), 'dm_target_deps', 0));
  test('huge count', () =>
    decodeErr(() => decodeTargetDeps(patched(new Uint8Array(8), 'dm_target_deps', { count: 0xffffffff })), 'dm_target_deps', 0));
  test('encode: negative dev', () => encodeErr(() => encodeTargetDeps([-1n]), 'dm_target_deps', 'dev[0]'));
});

describe('dm_target_versions', () => {
  const list = encodeTargetVersions([
    { name: 'zero', version: [1, 1, 0] },
    { name: 'thin-pool', version: [1, 22, 0] },
  ]);
  test('round trip', () => expect(decodeTargetVersions(list).map((t) => t.name)).toEqual(['zero', 'thin-pool']));
  test('truncated', () => decodeErr(() => decodeTargetVersions(list.subarray(0, 10)), 'dm_target_versions', 0));
  test('next outside', () =>
    decodeErr(() => decodeTargetVersions(patched(list, 'dm_target_versions', { next: 999 })), 'dm_target_versions', 0));
  test('next not past the name', () =>
    decodeErr(() => decodeTargetVersions(patched(list, 'dm_target_versions', { next: 18 })), 'dm_target_versions'));
  test('name without a NUL', () => {
    const bad = patched(new Uint8Array(24), 'dm_target_versions', { name: 'a'.repeat(8) });
    decodeErr(() => decodeTargetVersions(bad), 'dm_target_versions', 16);
  });
  test('encode: name over 127 bytes, empty name, version not u32', () => {
    encodeErr(() => encodeTargetVersions([{ name: 't'.repeat(128), version: [1, 0, 0] }]), 'dm_target_versions');
    encodeErr(() => encodeTargetVersions([{ name: '', version: [1, 0, 0] }]), 'dm_target_versions');
    encodeErr(() => encodeTargetVersions([{ name: 't', version: [-1, 0, 0] }]), 'dm_target_versions');
    encodeErr(() => encodeTargetVersionRequest('t'.repeat(128)), 'dm_ioctl', 'name');
    expect(encodeTargetVersionRequest('thin-pool')).toHaveLength(0);
  });
});

describe('dm_target_msg and string payloads', () => {
  test('round trip', () => expect(decodeTargetMsg(encodeTargetMsg(7n, 'delete 1'))).toEqual({ sector: 7n, message: 'delete 1' }));
  test('truncated', () => decodeErr(() => decodeTargetMsg(new Uint8Array(4)), 'dm_target_msg', 0));
  test('no NUL', () => decodeErr(() => decodeTargetMsg(patched(new Uint8Array(9), 'dm_target_msg', { message: 'a' })), 'dm_target_msg', 8));
  test('encode: empty, NUL, negative sector', () => {
    encodeErr(() => encodeTargetMsg(0n, ''), 'dm_target_msg', 'message');
    encodeErr(() => encodeTargetMsg(0n, 'a\0'), 'dm_target_msg', 'message');
    encodeErr(() => encodeTargetMsg(-1n, 'a'), 'dm_target_msg', 'sector');
  });
  test('string: no NUL, over the limit', () => {
    decodeErr(() => decodeStringPayload(new Uint8Array([0x61, 0x62]), 'dm_rename'), 'dm_rename', 0);
    encodeErr(() => encodeStringPayload('dm_rename', 'new_name', 'n'.repeat(128), 128), 'dm_rename', 'new_name');
    expect(encodeStringPayload('dm_rename', 'new_name', 'n'.repeat(127), 128)).toHaveLength(128);
  });
  test('geometry bounds', () => {
    expect(formatGeometry({ cylinders: 1, heads: 64, sectors: 32, start: 0 })).toBe('1 64 32 0');
    encodeErr(() => formatGeometry({ cylinders: 65536, heads: 1, sectors: 1, start: 0 }), 'dm_geometry', 'cylinders');
    encodeErr(() => formatGeometry({ cylinders: 1, heads: 256, sectors: 1, start: 0 }), 'dm_geometry', 'heads');
  });
});

describe('dm_ioctl via decodeDmBuffer', () => {
  test('short buffer', () => decodeErr(() => decodeDmBuffer('DM_VERSION', new Uint8Array(100), 'reply'), 'dm_ioctl', 0));
  test('data_size beyond the buffer', () => {
    decodeErr(() => decodeDmIoctl(dmIoctlBuffer({ data_size: 500 }, undefined, 400)), 'dm_ioctl', 12);
  });
  test('data_start before the header end', () => {
    decodeErr(() => decodeDmIoctl(dmIoctlBuffer({ data_start: 100 }, undefined, 400)), 'dm_ioctl', 16);
  });
  test('name without a NUL', () => {
    decodeErr(() => decodeDmIoctl(dmIoctlBuffer({ name: 'a'.repeat(128) }, undefined, 400)), 'dm_ioctl', 48);
  });
  test('target_count larger than the TABLE_STATUS payload', () => {
    const payload = encodeTargetSpecsReply([{ ...spec(0), status: 0 }]);
    const buf = encodeDmIoctl({ version: [4, 47, 0], target_count: 5 }, payload, 0);
    decodeErr(() => decodeDmBuffer('DM_TABLE_STATUS', buf, 'reply'), 'dm_target_spec', 0);
  });
  test('DM_BUFFER_FULL_FLAG: no payload decoded, even a garbage one', () => {
    const buf = dmIoctlBuffer({ version: [4, 47, 0], target_count: 5, flags: DmFlag.DM_BUFFER_FULL_FLAG }, new Uint8Array([1, 2, 3]));
    expect(decodeDmBuffer('DM_TABLE_STATUS', buf, 'reply')).toMatchObject({ buffer_full: true, payload: null });
  });
  test('encode: name over 127 bytes', () =>
    encodeErr(() => encodeDmIoctl({ version: [4, 0, 0], name: 'n'.repeat(128) }, undefined, 0), 'dm_ioctl', 'name'));
});

describe('loop_info64 / loop_config', () => {
  test('truncated', () => {
    decodeErr(() => decodeLoopInfo64(new Uint8Array(231)), 'loop_info64', 0);
    decodeErr(() => decodeLoopConfig(new Uint8Array(303)), 'loop_config', 0);
  });
  test('lo_file_name filled to the end without a NUL decodes as 64 bytes', () => {
    const buf = patched(encodeLoopInfo64({}), 'loop_info64', { lo_file_name: 'a'.repeat(64) });
    expect(decodeLoopInfo64(buf).lo_file_name).toBe('a'.repeat(64));
    expect(Buffer.from(encodeLoopInfo64(decodeLoopInfo64(buf))).equals(Buffer.from(buf))).toBe(true);
  });
  test('encode: name over 64 bytes, key over 32, negative offset, fd not u32', () => {
    encodeErr(() => encodeLoopInfo64({ lo_file_name: 'a'.repeat(65) }), 'loop_info64', 'lo_file_name');
    encodeErr(() => encodeLoopInfo64({ lo_encrypt_key: new Uint8Array(33) }), 'loop_info64', 'lo_encrypt_key');
    encodeErr(() => encodeLoopInfo64({ lo_offset: -1n }), 'loop_info64', 'lo_offset');
    encodeErr(() => encodeLoopConfig({ fd: -1, block_size: 0, info: {} }), 'loop_config', 'fd');
  });
});

describe('blk', () => {
  test('decode short', () => {
    decodeErr(() => decodeU64(new Uint8Array(7)), 'u64', 0);
    decodeErr(() => decodeU32(new Uint8Array(3)), 'u32', 0);
  });
  test('encodeRange: unaligned, negative, overflowing', () => {
    encodeErr(() => encodeRange(1n, 512n), 'blk_range');
    encodeErr(() => encodeRange(-512n, 512n), 'blk_range', 'start');
    encodeErr(() => encodeRange((1n << 64n) - 512n, 1024n), 'blk_range', 'end');
    expect(Buffer.from(encodeRange(512n, 4096n)).toString('hex')).toBe('00020000000000000010000000000000');
  });
});
