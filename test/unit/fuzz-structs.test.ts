// Untrusted buffers into every decoder: random bytes and mutated golden replies may only give a
// value or a DecodeError, and always return (a hang would hit the test timeout). Over 100,000
// cases in total (numRuns per property below).
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  DecodeError,
  DM_COMMAND_LIST,
  DM_IOCTL_SIZE,
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
  dmPayload,
  type DmCommandName,
} from '../../src/structs/index.js';
import { dmRecords, loadRecords, type GoldenBufRecord } from '../support/golden.js';

/** Runs `fn`; only a DecodeError may escape. */
function onlyDecodeError(fn: () => unknown): void {
  try {
    const value = fn();
    JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
  }
}

let total = 0;
function check<T>(arb: fc.Arbitrary<T>, numRuns: number, fn: (v: T) => void): void {
  fc.assert(
    fc.property(arb, (v) => {
      fn(v);
    }),
    { numRuns },
  );
  total += numRuns;
}

// Golden payloads per decoder, trimmed to what the kernel wrote.
const dm = dmRecords();
function payloads(cmds: DmCommandName[], direction: 'before' | 'after'): Uint8Array[] {
  return dm
    .filter((r) => cmds.includes(r.req_name as DmCommandName) && r.ret === 0)
    .map((r) => {
      const buf = r[direction];
      const h = decodeDmIoctl(buf);
      return dmPayload(buf, h).slice(0, 4096);
    })
    .filter((p) => p.length > 0);
}

/** A golden sample with 1-8 mutations: byte overwrites, u32 overwrites (offsets, counts), a cut. */
function mutated(samples: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({
      kind: fc.constant('u32' as const),
      at: fc.nat(),
      value: fc.oneof(fc.nat(512), fc.constant(0), fc.constant(0xffffffff), fc.nat()),
    }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
  );
  return fc.tuple(fc.constantFrom(...samples), fc.array(edit, { minLength: 1, maxLength: 8 })).map(([sample, edits]) => {
    let buf = sample.slice();
    for (const e of edits) {
      if (buf.length === 0) break;
      const at = e.at % buf.length;
      if (e.kind === 'byte') buf[at] = e.value;
      else if (e.kind === 'cut') buf = buf.slice(0, at);
      else if (at + 4 <= buf.length) new DataView(buf.buffer).setUint32(at, e.value >>> 0, true);
    }
    return buf;
  });
}

const randomBytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
const count = fc.oneof(fc.nat(8), fc.nat(), fc.constant(0xffffffff));

describe('fuzz: decoders give a value or a DecodeError, and return', () => {
  const specsReply = payloads(['DM_TABLE_STATUS', 'DM_DEV_WAIT'], 'after');
  const specsLoad = payloads(['DM_TABLE_LOAD'], 'before');
  const names = payloads(['DM_LIST_DEVICES'], 'after');
  const deps = payloads(['DM_TABLE_DEPS'], 'after');
  const versions = payloads(['DM_LIST_VERSIONS', 'DM_GET_TARGET_VERSION'], 'after');
  const msgs = payloads(['DM_TARGET_MSG'], 'before');
  const strings = payloads(['DM_DEV_RENAME', 'DM_DEV_SET_GEOMETRY'], 'before');
  const loopInfos = loadRecords()
    .filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.req_name === 'LOOP_GET_STATUS64')
    .map((r) => r.after);
  const loopConfigs = loadRecords()
    .filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.req_name === 'LOOP_CONFIGURE')
    .map((r) => r.before);

  test('there are golden samples for every decoder', () => {
    for (const s of [specsReply, specsLoad, names, deps, versions, msgs, strings, loopInfos, loopConfigs])
      expect(s.length).toBeGreaterThan(0);
  });

  test('dm_target_spec (both layouts)', () => {
    check(fc.tuple(randomBytes(300), count), 8000, ([b, n]) => {
      onlyDecodeError(() => decodeTargetSpecs(b, n));
      onlyDecodeError(() => decodeTableLoadSpecs(b, n));
    });
    check(fc.tuple(mutated(specsReply), fc.oneof(fc.constant(1), count)), 8000, ([b, n]) => onlyDecodeError(() => decodeTargetSpecs(b, n)));
    check(fc.tuple(mutated(specsLoad), fc.oneof(fc.constant(1), count)), 6000, ([b, n]) =>
      onlyDecodeError(() => decodeTableLoadSpecs(b, n)),
    );
  });

  test('dm_name_list', () => {
    check(randomBytes(200), 8000, (b) => onlyDecodeError(() => decodeNameList(b)));
    check(mutated(names), 10000, (b) => onlyDecodeError(() => decodeNameList(b)));
  });

  test('dm_target_deps', () => {
    check(randomBytes(64), 5000, (b) => onlyDecodeError(() => decodeTargetDeps(b)));
    check(mutated(deps), 5000, (b) => onlyDecodeError(() => decodeTargetDeps(b)));
  });

  test('dm_target_versions', () => {
    check(randomBytes(200), 8000, (b) => onlyDecodeError(() => decodeTargetVersions(b)));
    check(mutated(versions), 8000, (b) => onlyDecodeError(() => decodeTargetVersions(b)));
  });

  test('dm_target_msg and string payloads', () => {
    check(randomBytes(64), 4000, (b) => {
      onlyDecodeError(() => decodeTargetMsg(b));
      onlyDecodeError(() => decodeStringPayload(b, 'fuzz'));
    });
    check(mutated(msgs), 4000, (b) => onlyDecodeError(() => decodeTargetMsg(b)));
    check(mutated(strings), 3000, (b) => onlyDecodeError(() => decodeStringPayload(b, 'fuzz')));
  });

  test('loop_info64, loop_config, u64/u32', () => {
    check(randomBytes(320), 4000, (b) => {
      onlyDecodeError(() => decodeLoopInfo64(b));
      onlyDecodeError(() => decodeLoopConfig(b));
      onlyDecodeError(() => decodeU64(b));
      onlyDecodeError(() => decodeU32(b));
    });
    check(mutated(loopInfos), 3000, (b) => onlyDecodeError(() => decodeLoopInfo64(b)));
    check(mutated(loopConfigs), 3000, (b) => onlyDecodeError(() => decodeLoopConfig(b)));
  });

  test('whole dm buffers through decodeDmBuffer, every command, both directions', () => {
    const commands = DM_COMMAND_LIST.map((c) => c.name);
    // Golden buffers trimmed past their data_size so a mutated data_size can point outside.
    const buffers = dm.map((r) => {
      const h = decodeDmIoctl(r.after);
      return r.after.slice(0, Math.min(r.size, Math.max(h.data_size, DM_IOCTL_SIZE) + 16));
    });
    const direction = fc.constantFrom('request' as const, 'reply' as const);
    check(fc.tuple(fc.constantFrom(...commands), randomBytes(600), direction), 5000, ([c, b, d]) =>
      onlyDecodeError(() => decodeDmBuffer(c, b, d)),
    );
    // Keep the header mostly intact so the payload decoders are reached.
    const headerSafe = fc
      .tuple(
        fc.constantFrom(...buffers),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
      )
      .map(([buf, edits, hitHeader]) => {
        const out = buf.slice();
        for (const [at, v] of edits) {
          const lo = hitHeader ? 0 : DM_IOCTL_SIZE;
          if (out.length > lo) out[lo + (at % (out.length - lo))] = v;
        }
        return out;
      });
    check(fc.tuple(fc.constantFrom(...commands), headerSafe, direction), 12000, ([c, b, d]) =>
      onlyDecodeError(() => decodeDmBuffer(c, b, d)),
    );
    check(fc.tuple(fc.constantFrom(...buffers), direction), 2000, ([b, d]) => {
      const h = decodeDmIoctl(b);
      const c = DM_COMMAND_LIST[h.version[0] % DM_COMMAND_LIST.length]?.name ?? 'DM_VERSION';
      onlyDecodeError(() => decodeDmBuffer(c, b, d));
    });
  });

  test('at least 100,000 cases ran', () => {
    expect(total).toBeGreaterThanOrEqual(100_000);
  });
});
