// Every decoder that reads bytes or text from outside the process (kernel replies, /proc, files in
// a pool home, pasted hex, option lists), each with the cases that go into it and its share of the
// case budget. One list: the unit tier (test/unit/fuzz-structs.test.ts, about 10^5 cases) and
// `npm run fuzz` (test/fuzz/main.ts, 10^6 by default) both run it, scaled.
//
// A decoder may return a value or throw its module's typed error, nothing else: a TypeError, a
// RangeError (an out-of-bounds DataView read, an allocation too large) or a SyntaxError escaping is
// a bug in that decoder. Values are serialised, so a lazily broken value fails here too.
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
  ftruncateSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { padToDataSize } from '../../src/cli/decode.js';
import { readRecordedOpts, STORAGE_OPTS_FILE } from '../../src/cli/pool-home.js';
import { OperationError } from '../../src/cli/usage.js';
import { InvalidArgumentError as DmInvalidArgumentError } from '../../src/dm/errors.js';
import { parseThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { parseThinStatus } from '../../src/dm/status/thin.js';
import { parseTable, parseTableLine, parseTarget } from '../../src/dm/targets.js';
import { LOCK_EX, sysFlock } from '../../src/ioctl/libc.js';
import {
  DecodeError,
  DM_COMMAND_LIST,
  DM_IOCTL_SIZE,
  decodeDev,
  decodeDevLow32,
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
  parseDmCommand,
  readCString,
  type DmCommandName,
} from '../../src/structs/index.js';
import { InvalidArgumentError as StructsInvalidArgumentError } from '../../src/structs/errors.js';
import {
  BITMAP_CSUM_XOR,
  BTREE_CSUM_XOR,
  INDEX_CSUM_XOR,
  SUPERBLOCK_CSUM_XOR,
  THIN_METADATA_BLOCK_SIZE,
  ThinMetadataError,
  bitmapCount,
  blockChecksum,
  decodeBitmapHeader,
  decodeBlockTime,
  decodeBtreeNode,
  decodeDeviceDetails,
  decodeIndexEntry,
  decodeMetadataIndex,
  decodeThinSuperblock,
} from '../../src/structs/index.js';
import { decodeFsSuperblock, FS_PROBE_BYTES } from '../../src/structs/fs-superblock.js';
import { InvalidHashError, MetadataError, OptionError } from '../../src/thin/errors.js';
import { forEachMapping, memoryMetadataBlocks, readThinDevices, readThinUsage } from '../../src/thin/metadata/index.js';
import { HomeLock } from '../../src/thin/lock.js';
import { INTENT_FILE, MetadataStore, POOL_STATE_FILE } from '../../src/thin/metadata-store.js';
import { parseMountInfo } from '../../src/thin/mount.js';
import { parsePoolOptions } from '../../src/thin/options.js';
import { dmRecords, loadRecords, type GoldenBufRecord } from '../support/golden.js';
import { MetadataImage, blockTime, buildPool } from '../support/thin-metadata-builder.js';

type ErrorClass = abstract new (...args: never[]) => Error;

/** One property: cases of one kind into one decoder. */
export interface FuzzProperty {
  /** The decoder the cases go into (several properties may share one). */
  decoder: string;
  /** What the cases are. */
  cases: string;
  /** Relative share of the case budget. */
  weight: number;
  /** Built on first use (golden samples are read then). */
  arbitrary: () => fc.Arbitrary<unknown>;
  run: (input: unknown) => void;
  /** Set up before the cases and torn down after (temp folders, a held lock). */
  setUp?: () => void;
  tearDown?: () => void;
}

/** The escape of an error the decoder may not throw; fast-check shrinks the input that caused it. */
export class UntypedError extends Error {
  override readonly name = 'UntypedError';
}

const jsonSafe = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? v.toString() : v);

/** Runs `fn`; a value is serialised, an error must be one of `allowed`. */
export function only(allowed: readonly ErrorClass[], fn: () => unknown): unknown {
  let value: unknown;
  try {
    value = fn();
  } catch (err) {
    if (allowed.some((c) => err instanceof c)) return undefined;
    const e = err as Error;
    throw new UntypedError(`${e?.name ?? typeof err} escaped (only ${allowed.map((c) => c.name).join(', ')} may): ${e?.message}`, {
      cause: err,
    });
  }
  JSON.stringify(value, jsonSafe);
  return value;
}

function property<T>(
  p: Omit<FuzzProperty, 'arbitrary' | 'run'> & { arbitrary: () => fc.Arbitrary<T>; run: (input: T) => void },
): FuzzProperty {
  return p as unknown as FuzzProperty;
}

// ---- inputs ------------------------------------------------------------------------------------

const randomBytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
const count = fc.oneof(fc.nat(8), fc.nat(), fc.constant(0xffffffff));

/** A sample with 1-8 mutations: byte overwrites, u32 overwrites (offsets, counts, sizes), a cut. */
function mutated(samples: () => readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({
      kind: fc.constant('u32' as const),
      at: fc.nat(),
      value: fc.oneof(fc.nat(512), fc.constant(0), fc.constant(0xffffffff), fc.nat()),
    }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), value: fc.constant(0) }),
  );
  return fc.tuple(fc.constantFrom(...samples()), fc.array(edit, { minLength: 1, maxLength: 8 })).map(([sample, edits]) => {
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

/** Pieces hostile text is made of: separators, numbers at and past u64, escapes, NUL, non-ASCII. */
const hostileToken = fc.oneof(
  fc.constantFrom(' ', '  ', '\t', '\n', '\r', '\0', '-', '/', ':', '\\', '\\040', '\\0', '#', '=', ',', ' - ', 'é', '\u{1F600}', '\uFFFD'),
  fc.constantFrom(
    '0',
    '18446744073709551615',
    '18446744073709551616',
    '99999999999999999999999999',
    '9007199254740993',
    '-1',
    '1e3',
    '0x10',
  ),
  fc.nat().map(String),
  fc.string({ maxLength: 8 }),
);

/** A sample text with 1-6 edits: a token inserted, a span deleted, a span replaced, a word repeated. */
function mutatedText(samples: readonly string[]): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.constantFrom('insert', 'delete', 'replace', 'repeat'), fc.nat(), fc.nat(16), hostileToken);
  return fc.tuple(fc.constantFrom(...samples), fc.array(edit, { minLength: 1, maxLength: 6 })).map(([sample, edits]) => {
    let s = sample;
    for (const [kind, at0, len, tok] of edits) {
      const at = s.length === 0 ? 0 : at0 % (s.length + 1);
      if (kind === 'insert') s = s.slice(0, at) + tok + s.slice(at);
      else if (kind === 'delete') s = s.slice(0, at) + s.slice(at + len);
      else if (kind === 'replace') s = s.slice(0, at) + tok + s.slice(at + len);
      else s = s.slice(0, at) + s.slice(at, at + len).repeat(3) + s.slice(at + len);
    }
    return s;
  });
}

/** Text from hostile pieces alone, and arbitrary unicode. */
const soup = (maxTokens: number) =>
  fc.oneof(
    fc.array(hostileToken, { maxLength: maxTokens }).map((t) => t.join('')),
    fc.string({ unit: 'binary', maxLength: 4 * maxTokens }),
  );

// ---- golden samples ----------------------------------------------------------------------------

let goldenCache: ReturnType<typeof dmRecords> | undefined;
const golden = () => (goldenCache ??= dmRecords());

/** Payloads the kernel (reply) or libdevmapper (request) wrote for these commands, trimmed. */
function payloads(cmds: DmCommandName[], direction: 'before' | 'after'): () => Uint8Array[] {
  return () =>
    golden()
      .filter((r) => cmds.includes(r.req_name as DmCommandName) && r.ret === 0)
      .map((r) => dmPayload(r[direction], decodeDmIoctl(r[direction])).slice(0, 4096))
      .filter((p) => p.length > 0);
}

function loopSamples(req: string, direction: 'before' | 'after'): () => Uint8Array[] {
  return () =>
    loadRecords()
      .filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.req_name === req)
      .map((r) => r[direction]);
}

/** Whole dm buffers, trimmed past data_size so that a mutated data_size can point outside. */
const dmBuffers = () =>
  golden().map((r) => {
    const h = decodeDmIoctl(r.after);
    return r.after.slice(0, Math.min(r.size, Math.max(h.data_size, DM_IOCTL_SIZE) + 16));
  });

export const GOLDEN_SETS = {
  specsReply: payloads(['DM_TABLE_STATUS', 'DM_DEV_WAIT'], 'after'),
  specsLoad: payloads(['DM_TABLE_LOAD'], 'before'),
  names: payloads(['DM_LIST_DEVICES'], 'after'),
  deps: payloads(['DM_TABLE_DEPS'], 'after'),
  versions: payloads(['DM_LIST_VERSIONS', 'DM_GET_TARGET_VERSION'], 'after'),
  msgs: payloads(['DM_TARGET_MSG'], 'before'),
  strings: payloads(['DM_DEV_RENAME', 'DM_DEV_SET_GEOMETRY'], 'before'),
  loopInfos: loopSamples('LOOP_GET_STATUS64', 'after'),
  loopConfigs: loopSamples('LOOP_CONFIGURE', 'before'),
  dmBuffers,
};

// Text the kernel writes (thin-provisioning.rst, proc(5)) and files a pool home holds.
const THIN_POOL_STATUS = [
  '0 1/4096 0/16384 - rw discard_passdown queue_if_no_space - 1024',
  '7 141/4096 2048/16384 - rw no_discard_passdown error_if_no_space needs_check 1024',
  '12 20/2048 10/100 88 ro ignore_discard queue_if_no_space -',
  '3 9/512 100/100 - out_of_data_space discard_passdown error_if_no_space - 64',
  '1 1/1 1/1 - rw',
  'Fail',
  'Error',
];
const THIN_STATUS = ['0 -', '2048 4095', '18446744073709551615 18446744073709551614', 'Fail', 'Error'];
const TABLE_LINES = [
  '0 2048 linear 7:2 0',
  '0 524288 thin-pool 7:1 7:0 128 32768 1 skip_block_zeroing',
  '0 524288 thin-pool 7:1 7:0 128 0 2 skip_block_zeroing error_if_no_space',
  '0 131072 thin 253:0 1',
  '0 131072 thin 253:0 16777215 7:3',
  '0 8 zero',
  '0 8 error',
  '0 2048 striped 2 128 7:1 0 7:2 0',
];
const MOUNTINFO = [
  '36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
  '22 1 253:3 / /var/lib/x/mnt/abc rw,relatime shared:5 - ext4 /dev/mapper/dm-thin-1 rw,discard',
  '25 22 0:21 / /tmp/a\\040b rw - tmpfs tmp\\011fs rw',
  '30 1 0:5 / / rw - overlay overlay rw,lowerdir=/a:/b',
];
const OPTION_LISTS = [
  ['dm.basesize=10G', 'dm.loopdatasize=100G', 'dm.loopmetadatasize=2G'],
  ['dm.fs=ext4', 'dm.mkfsarg=-O ^has_journal', 'dm.mountopt=nodiscard', 'dm.blocksize=512K'],
  ['dm.thinpooldev=/dev/mapper/pool', 'dm.use_deferred_removal=true', 'dm.use_deferred_deletion=1'],
  ['dm.datadev=/dev/sdb', 'dm.metadatadev=/dev/sdc', 'dm.min_free_space=10%', 'dm.blkdiscard=false'],
];
const METADATA_FILES = {
  [POOL_STATE_FILE]: '{ "next_device_id": 3, "transaction_id": 7 }',
  base: '{ "hash": "", "device_id": 1, "size": 10737418240, "transaction_id": 1, "initialized": true, "deleted": false, "filesystem": "ext4" }',
  h1: '{ "hash": "h1", "device_id": 2, "size": 10737418240, "transaction_id": "18446744073709551615", "initialized": true, "deleted": false }',
  [INTENT_FILE]:
    '{ "op": "snapshot", "hash": "h1", "thin_id": 2, "origin_id": 1, "origin_hash": "", "size": 1024, "old_transaction_id": 6, "new_transaction_id": 7 }',
} as const;
type MetadataFile = keyof typeof METADATA_FILES;

/** A JSON object's fields replaced by hostile JSON values (numbers past 2^53, negatives, strings). */
function hostileJson(sample: string): fc.Arbitrary<string> {
  const obj = JSON.parse(sample) as Record<string, unknown>;
  const value = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom(-1, 2 ** 53, 2 ** 64, 16777216, 1.5, Number.MAX_VALUE, '-1', '18446744073709551616', '', null, true),
  );
  return fc.tuple(fc.dictionary(fc.constantFrom(...Object.keys(obj), 'x'), value, { maxKeys: 4 }), fc.boolean()).map(([over, drop]) => {
    const o: Record<string, unknown> = { ...obj, ...over };
    if (drop) delete o[Object.keys(obj)[0]!];
    return JSON.stringify(o);
  });
}

// ---- files: a scratch home, made before a file property runs and removed after ------------------

let scratch: string | undefined;
// /dev/shm where there is one: these properties write a file per case.
const scratchDir = (): string => (scratch ??= mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'devmapper-fuzz-')));
const dropScratch = (): void => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
};

/** The lock file, held by a second open file description of ours, so holder() reads the record. */
let heldLock: { path: string; fd: number } | undefined;

// ---- the list ----------------------------------------------------------------------------------

const STRUCTS = [DecodeError];
const DM_TEXT = [DmInvalidArgumentError, StructsInvalidArgumentError];
const commandNames = DM_COMMAND_LIST.map((c) => c.name);
const direction = fc.constantFrom('request' as const, 'reply' as const);

// ---- dm-thin metadata images --------------------------------------------------------------------

/** Small pools as the kernel shapes them: shared subtrees after snapshots, a held root, many levels. */
interface ThinImage {
  image: Uint8Array;
  /** Each block's checksum xor, to reseal it after an edit (so that edits reach past the csum). */
  xors: Map<number, number>;
}
let thinImagesCache: ThinImage[] | undefined;
function thinImages(): ThinImage[] {
  if (thinImagesCache) return thinImagesCache;
  const make = (build: (img: MetadataImage) => void): ThinImage => {
    const img = new MetadataImage(4);
    build(img);
    const image = img.image();
    const xors = new Map<number, number>();
    for (let b = 0; b < img.nrBlocks; b++) {
      const block = image.subarray(b * THIN_METADATA_BLOCK_SIZE, (b + 1) * THIN_METADATA_BLOCK_SIZE);
      const stored = new DataView(block.buffer, block.byteOffset).getUint32(0, true);
      for (const x of [SUPERBLOCK_CSUM_XOR, BTREE_CSUM_XOR, INDEX_CSUM_XOR, BITMAP_CSUM_XOR])
        if (blockChecksum(block, x) === stored) xors.set(b, x);
    }
    return { image, xors };
  };
  thinImagesCache = [
    make((img) =>
      buildPool(
        img,
        [
          {
            thinId: 1,
            mappings: [
              [0, 5],
              [3, 9, 1],
            ],
          },
        ],
        { dataSpaceMapRoot: { nrBlocks: 64 } },
      ),
    ),
    make((img) => {
      const leaves = [0, 1, 2].map((k) => img.leaf([0, 1, 2].map((i) => [k * 10 + i, blockTime(k * 3 + i, k)] as const)));
      const origin = img.internal(leaves.map((l, k) => [k * 10, l] as const));
      const snap = img.internal([
        [0, leaves[0]!],
        [10, img.leaf([[10, blockTime(40)]])],
        [20, leaves[2]!],
      ]);
      buildPool(
        img,
        [
          { thinId: 1, root: origin },
          { thinId: 2, root: snap },
          { thinId: 3, root: origin },
          { thinId: 9, mappings: [] },
        ],
        {
          dataSpaceMapRoot: { nrBlocks: 64 },
        },
      );
    }),
    make((img) => {
      const maps = Array.from({ length: 60 }, (_, i) => [i * 2, (i * 7) % 50] as const);
      buildPool(
        img,
        [
          { thinId: 4, mappings: maps },
          { thinId: 5, mappings: maps.slice(10, 30) },
        ],
        { dataSpaceMapRoot: { nrBlocks: 64 } },
        3,
      );
      const sb = decodeThinSuperblock(img.get(0), 0);
      const held = img.alloc();
      img.superblock({ dataMappingRoot: sb.dataMappingRoot, deviceDetailsRoot: sb.deviceDetailsRoot }, held);
      img.superblock({
        dataMappingRoot: sb.dataMappingRoot,
        deviceDetailsRoot: sb.deviceDetailsRoot,
        heldRoot: held,
        dataSpaceMapRoot: { nrBlocks: 64 },
      });
    }),
  ];
  return thinImagesCache;
}

/** An edit of a metadata image: which block, where, what; header fields and small numbers favoured. */
const thinEdit = fc.record({
  block: fc.nat(),
  at: fc.oneof(fc.constantFrom(4, 8, 12, 16, 20, 24, 32, 40, 56, 320, 328, 336, 340, 344, 360), fc.nat(THIN_METADATA_BLOCK_SIZE - 4)),
  value: fc.oneof(fc.nat(40), fc.constant(0), fc.constant(0xffffffff), fc.nat()),
  width: fc.constantFrom(1, 4),
  reseal: fc.boolean(),
});

function editedImage([sample, edits]: [
  ThinImage,
  { block: number; at: number; value: number; width: number; reseal: boolean }[],
]): Uint8Array {
  const image = sample.image.slice();
  const nrBlocks = image.length / THIN_METADATA_BLOCK_SIZE;
  for (const e of edits) {
    const b = e.block % nrBlocks;
    const block = image.subarray(b * THIN_METADATA_BLOCK_SIZE, (b + 1) * THIN_METADATA_BLOCK_SIZE);
    const v = new DataView(block.buffer, block.byteOffset, THIN_METADATA_BLOCK_SIZE);
    const at = Math.min(e.at, THIN_METADATA_BLOCK_SIZE - 4);
    if (e.width === 1) block[at] = e.value & 0xff;
    else v.setUint32(at, e.value >>> 0, true);
    const xor = sample.xors.get(b);
    if (e.reseal && xor !== undefined) v.setUint32(0, blockChecksum(block, xor), true);
  }
  return image;
}

const thinImageCases = () =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.tuple(fc.constantFrom(...thinImages()), fc.array(thinEdit, { minLength: 1, maxLength: 6 })).map(editedImage),
    },
    { weight: 1, arbitrary: fc.constantFrom(...thinImages()).map((s) => s.image) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 3 * THIN_METADATA_BLOCK_SIZE }) },
  );

/** One block of a sample image (by xor kind), edited and resealed or not. */
function thinBlocks(xor: number): fc.Arbitrary<{ block: Uint8Array; blocknr: number }> {
  return fc.constant(null).chain(() => {
    const picks = thinImages().flatMap((s) => [...s.xors].filter(([, x]) => x === xor).map(([b]) => ({ s, b })));
    return fc.tuple(fc.constantFrom(...picks), fc.array(thinEdit, { maxLength: 4 })).map(([{ s, b }, edits]) => {
      const image = editedImage([s, edits.map((e) => ({ ...e, block: b }))]);
      return { block: image.slice(b * THIN_METADATA_BLOCK_SIZE, (b + 1) * THIN_METADATA_BLOCK_SIZE), blocknr: b };
    });
  });
}

const FS_HEADS_DIR = join(import.meta.dirname, '../golden/fs-superblocks');
/** The first bytes of real file systems (test/golden/fs-superblocks/make.sh). */
function fsHeads(): Uint8Array[] {
  return readdirSync(FS_HEADS_DIR)
    .filter((f) => f.endsWith('.head'))
    .map((f) => new Uint8Array(readFileSync(join(FS_HEADS_DIR, f))));
}

const anyBlock = fc.oneof(
  fc.uint8Array({ minLength: THIN_METADATA_BLOCK_SIZE, maxLength: THIN_METADATA_BLOCK_SIZE }),
  fc.uint8Array({ maxLength: 64 }),
);

/** Reads everything a reader can: the device list, the usage, each device's mappings, both roots. */
function readAllThin(image: Uint8Array): unknown {
  const blocks = memoryMetadataBlocks(image);
  const out: unknown[] = [];
  for (const root of ['superblock', 'held'] as const) {
    out.push(only([ThinMetadataError], () => readThinUsage(blocks, { root })));
    const meta = only([ThinMetadataError], () => readThinDevices(blocks, { root })) as ReturnType<typeof readThinDevices> | undefined;
    for (const d of meta?.devices ?? []) {
      out.push(
        only([ThinMetadataError], () => {
          let n = 0;
          forEachMapping(blocks, meta!.roots, d.thinId, () => n++);
          return n;
        }),
      );
    }
  }
  return out;
}

export const PROPERTIES: readonly FuzzProperty[] = [
  // ---- kernel replies and requests (src/structs) ----
  property({
    decoder: 'decodeDmIoctl',
    cases: 'random bytes',
    weight: 3,
    arbitrary: () => randomBytes(400),
    run: (b) => only(STRUCTS, () => decodeDmIoctl(b)),
  }),
  property({
    decoder: 'decodeTargetSpecs',
    cases: 'random bytes, any count',
    weight: 4,
    arbitrary: () => fc.tuple(randomBytes(300), count),
    run: ([b, n]) => only(STRUCTS, () => decodeTargetSpecs(b, n)),
  }),
  property({
    decoder: 'decodeTargetSpecs',
    cases: 'mutated TABLE_STATUS/DEV_WAIT replies',
    weight: 6,
    arbitrary: () => fc.tuple(mutated(GOLDEN_SETS.specsReply), fc.oneof(fc.constant(1), count)),
    run: ([b, n]) => only(STRUCTS, () => decodeTargetSpecs(b, n)),
  }),
  property({
    decoder: 'decodeTableLoadSpecs',
    cases: 'random bytes, any count',
    weight: 3,
    arbitrary: () => fc.tuple(randomBytes(300), count),
    run: ([b, n]) => only(STRUCTS, () => decodeTableLoadSpecs(b, n)),
  }),
  property({
    decoder: 'decodeTableLoadSpecs',
    cases: 'mutated TABLE_LOAD requests',
    weight: 5,
    arbitrary: () => fc.tuple(mutated(GOLDEN_SETS.specsLoad), fc.oneof(fc.constant(1), count)),
    run: ([b, n]) => only(STRUCTS, () => decodeTableLoadSpecs(b, n)),
  }),
  property({
    decoder: 'decodeNameList',
    cases: 'random bytes',
    weight: 4,
    arbitrary: () => randomBytes(200),
    run: (b) => only(STRUCTS, () => decodeNameList(b)),
  }),
  property({
    decoder: 'decodeNameList',
    cases: 'mutated LIST_DEVICES replies',
    weight: 8,
    arbitrary: () => mutated(GOLDEN_SETS.names),
    run: (b) => only(STRUCTS, () => decodeNameList(b)),
  }),
  property({
    decoder: 'decodeTargetDeps',
    cases: 'random bytes',
    weight: 3,
    arbitrary: () => randomBytes(64),
    run: (b) => only(STRUCTS, () => decodeTargetDeps(b)),
  }),
  property({
    decoder: 'decodeTargetDeps',
    cases: 'mutated TABLE_DEPS replies',
    weight: 3,
    arbitrary: () => mutated(GOLDEN_SETS.deps),
    run: (b) => only(STRUCTS, () => decodeTargetDeps(b)),
  }),
  property({
    decoder: 'decodeTargetVersions',
    cases: 'random bytes',
    weight: 4,
    arbitrary: () => randomBytes(200),
    run: (b) => only(STRUCTS, () => decodeTargetVersions(b)),
  }),
  property({
    decoder: 'decodeTargetVersions',
    cases: 'mutated LIST_VERSIONS/GET_TARGET_VERSION replies',
    weight: 6,
    arbitrary: () => mutated(GOLDEN_SETS.versions),
    run: (b) => only(STRUCTS, () => decodeTargetVersions(b)),
  }),
  property({
    decoder: 'decodeTargetMsg',
    cases: 'random bytes',
    weight: 2,
    arbitrary: () => randomBytes(64),
    run: (b) => only(STRUCTS, () => decodeTargetMsg(b)),
  }),
  property({
    decoder: 'decodeTargetMsg',
    cases: 'mutated TARGET_MSG requests',
    weight: 3,
    arbitrary: () => mutated(GOLDEN_SETS.msgs),
    run: (b) => only(STRUCTS, () => decodeTargetMsg(b)),
  }),
  property({
    decoder: 'decodeStringPayload',
    cases: 'random bytes',
    weight: 2,
    arbitrary: () => randomBytes(64),
    run: (b) => only(STRUCTS, () => decodeStringPayload(b, 'fuzz')),
  }),
  property({
    decoder: 'decodeStringPayload',
    cases: 'mutated DEV_RENAME/DEV_SET_GEOMETRY requests',
    weight: 2,
    arbitrary: () => mutated(GOLDEN_SETS.strings),
    run: (b) => only(STRUCTS, () => decodeStringPayload(b, 'fuzz')),
  }),
  property({
    decoder: 'readCString',
    cases: 'random bytes, any offset and limit',
    weight: 2,
    arbitrary: () => fc.tuple(randomBytes(64), fc.integer({ min: -8, max: 80 }), fc.integer({ min: -8, max: 80 }), fc.boolean()),
    run: ([b, off, limit, asBuffer]) => only(STRUCTS, () => readCString(asBuffer ? Buffer.from(b) : b, off, limit, 'fuzz', 'field')),
  }),
  property({
    decoder: 'decodeLoopInfo64',
    cases: 'random bytes',
    weight: 2,
    arbitrary: () => randomBytes(320),
    run: (b) => only(STRUCTS, () => decodeLoopInfo64(b)),
  }),
  property({
    decoder: 'decodeLoopInfo64',
    cases: 'mutated LOOP_GET_STATUS64 replies',
    weight: 3,
    arbitrary: () => mutated(GOLDEN_SETS.loopInfos),
    run: (b) => only(STRUCTS, () => decodeLoopInfo64(b)),
  }),
  property({
    decoder: 'decodeLoopConfig',
    cases: 'random bytes',
    weight: 2,
    arbitrary: () => randomBytes(320),
    run: (b) => only(STRUCTS, () => decodeLoopConfig(b)),
  }),
  property({
    decoder: 'decodeLoopConfig',
    cases: 'mutated LOOP_CONFIGURE requests',
    weight: 3,
    arbitrary: () => mutated(GOLDEN_SETS.loopConfigs),
    run: (b) => only(STRUCTS, () => decodeLoopConfig(b)),
  }),
  property({
    decoder: 'decodeU64/decodeU32',
    cases: 'random bytes (BLKGETSIZE64, BLKSSZGET replies)',
    weight: 1,
    arbitrary: () => randomBytes(12),
    run: (b) => {
      only(STRUCTS, () => decodeU64(b));
      only(STRUCTS, () => decodeU32(b));
    },
  }),
  property({
    decoder: 'decodeDev/decodeDevLow32',
    cases: 'any u64 dev / u32',
    weight: 1,
    arbitrary: () => fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat({ max: 0xffffffff })),
    run: ([dev, low]) => {
      for (const d of [only([], () => decodeDev(dev)), only([], () => decodeDevLow32(low))] as { major: number; minor: number }[]) {
        // huge_decode_dev: 12-bit major, 20-bit minor, whatever the other bits hold.
        if (
          !(Number.isInteger(d.major) && d.major >= 0 && d.major < 4096 && Number.isInteger(d.minor) && d.minor >= 0 && d.minor < 2 ** 20)
        )
          throw new UntypedError(`dev out of range: ${JSON.stringify(d)}`);
      }
    },
  }),
  property({
    decoder: 'decodeDmBuffer',
    cases: 'random bytes, every command, both directions',
    weight: 5,
    arbitrary: () => fc.tuple(fc.constantFrom(...commandNames), randomBytes(600), direction),
    run: ([c, b, d]) => only(STRUCTS, () => decodeDmBuffer(c, b, d)),
  }),
  property({
    decoder: 'decodeDmBuffer',
    cases: 'golden buffers, payload bytes mutated (header mostly intact), every command',
    weight: 12,
    arbitrary: () =>
      fc.tuple(
        fc.constantFrom(...commandNames),
        fc
          .tuple(
            fc.constantFrom(...GOLDEN_SETS.dmBuffers()),
            fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
            fc.boolean(),
          )
          .map(([buf, edits, hitHeader]) => {
            const out = buf.slice();
            const lo = hitHeader ? 0 : DM_IOCTL_SIZE;
            for (const [at, v] of edits) if (out.length > lo) out[lo + (at % (out.length - lo))] = v;
            return out;
          }),
        direction,
      ),
    run: ([c, b, d]) => only(STRUCTS, () => decodeDmBuffer(c, b, d)),
  }),
  property({
    decoder: 'decodeDmBuffer',
    cases: 'mutated golden buffers (u32 offsets, counts, cuts), every command',
    weight: 5,
    arbitrary: () => fc.tuple(fc.constantFrom(...commandNames), mutated(GOLDEN_SETS.dmBuffers), direction),
    run: ([c, b, d]) => only(STRUCTS, () => decodeDmBuffer(c, b, d)),
  }),
  property({
    decoder: 'parseDmCommand',
    cases: 'command names mutated, any text',
    weight: 1,
    arbitrary: () => fc.oneof(mutatedText(commandNames), soup(6)),
    run: (t) => only([], () => parseDmCommand(t)),
  }),
  property({
    decoder: 'devmapper decode (padToDataSize, decodeDmBuffer)',
    cases: 'pasted buffers of any length and data_size',
    weight: 1,
    arbitrary: () =>
      fc.tuple(
        fc.constantFrom(...commandNames),
        fc.oneof(randomBytes(64), mutated(GOLDEN_SETS.dmBuffers)),
        // data_size: within a pasted buffer, up to 1 MiB of padding, or past the CLI's 64 MiB cap
        // (not padded). Padding up to the cap is allowed by design; serialising such a value is
        // this harness's cost, not the decoder's, so those sizes are left out.
        fc.oneof(fc.constant(undefined), fc.nat({ max: 1 << 20 }), fc.integer({ min: 64 * 2 ** 20 + 1, max: 0xffffffff })),
        direction,
      ),
    run: ([c, b, dataSize, d]) => {
      const buf = b.slice();
      if (dataSize !== undefined && buf.length >= 16) new DataView(buf.buffer).setUint32(12, dataSize, true);
      only(STRUCTS, () => decodeDmBuffer(c, padToDataSize(buf), d));
    },
  }),

  // ---- text from the kernel (src/dm) ----
  property({
    decoder: 'parseThinPoolStatus',
    cases: 'mutated thin-pool status lines, hostile text',
    weight: 5,
    arbitrary: () => fc.oneof({ arbitrary: mutatedText(THIN_POOL_STATUS), weight: 4 }, { arbitrary: soup(16), weight: 1 }),
    run: (t) => only(DM_TEXT, () => parseThinPoolStatus(t)),
  }),
  property({
    decoder: 'parseThinStatus',
    cases: 'mutated thin status lines, hostile text',
    weight: 3,
    arbitrary: () => fc.oneof({ arbitrary: mutatedText(THIN_STATUS), weight: 4 }, { arbitrary: soup(8), weight: 1 }),
    run: (t) => only(DM_TEXT, () => parseThinStatus(t)),
  }),
  property({
    decoder: 'parseTableLine/parseTable',
    cases: 'mutated table lines and tables, hostile text',
    weight: 6,
    arbitrary: () =>
      fc.oneof(
        { arbitrary: mutatedText(TABLE_LINES), weight: 4 },
        { arbitrary: mutatedText([TABLE_LINES.join('\n'), `# c\n\n${TABLE_LINES[1]}\n`]), weight: 2 },
        { arbitrary: soup(16), weight: 1 },
      ),
    run: (t) => {
      only(DM_TEXT, () => parseTableLine(t));
      only(DM_TEXT, () => parseTable(t));
    },
  }),
  property({
    decoder: 'parseTarget',
    cases: 'target types and params as TABLE_STATUS returns them, any sectors',
    weight: 3,
    arbitrary: () =>
      fc.tuple(
        fc.oneof(fc.constantFrom('linear', 'thin-pool', 'thin', 'zero', 'error', 'striped'), soup(2)),
        fc.bigInt({ min: 0n, max: 2n ** 65n }),
        fc.bigInt({ min: 0n, max: 2n ** 65n }),
        fc.oneof(mutatedText(TABLE_LINES.map((l) => l.split(' ').slice(3).join(' '))), soup(10)),
      ),
    run: ([type, start, len, params]) => only(DM_TEXT, () => parseTarget(type, start, len, params)),
  }),

  // ---- /proc text and pool home files (src/thin, src/cli) ----
  property({
    decoder: 'parseMountInfo',
    cases: 'mutated mountinfo, hostile text',
    weight: 4,
    arbitrary: () => fc.oneof(mutatedText([...MOUNTINFO, MOUNTINFO.join('\n')]), soup(24)),
    run: (t) => {
      for (const m of only([], () => parseMountInfo(t)) as {
        mountPoint: unknown;
        majorMinor: unknown;
        source: unknown;
        fsType: unknown;
      }[]) {
        if ([m.mountPoint, m.majorMinor, m.source, m.fsType].some((f) => typeof f !== 'string'))
          throw new UntypedError('a field is not a string');
      }
    },
  }),
  property({
    decoder: 'parsePoolOptions',
    cases: 'mutated dm.* option lists (storage-opts, --storage-opt)',
    weight: 3,
    arbitrary: () =>
      fc.oneof(
        fc.tuple(fc.constantFrom(...OPTION_LISTS), fc.nat(), fc.nat(), hostileToken).map(([list, i, at, tok]) => {
          const out = [...list];
          const k = i % out.length;
          const s = out[k]!;
          const p = at % (s.length + 1);
          out[k] = s.slice(0, p) + tok + s.slice(p);
          return out;
        }),
        fc.array(mutatedText(OPTION_LISTS.flat()), { maxLength: 4 }),
      ),
    run: (list) => only([OptionError], () => parsePoolOptions(list, { findExecutable: () => '/bin/true' })),
  }),
  property({
    decoder: 'MetadataStore readers (pool state, device, intent files)',
    cases: 'hostile JSON fields, mutated and random file contents',
    weight: 1,
    setUp: () => {
      MetadataStore.open(join(scratchDir(), 'metadata'));
    },
    tearDown: dropScratch,
    arbitrary: () => {
      const files = Object.keys(METADATA_FILES) as MetadataFile[];
      return fc.constantFrom(...files).chain((file) =>
        fc.tuple(
          fc.constant(file),
          fc.oneof(
            hostileJson(METADATA_FILES[file]).map((s) => Buffer.from(s)),
            mutatedText([METADATA_FILES[file]]).map((s) => Buffer.from(s)),
            fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
          ),
        ),
      );
    },
    run: ([file, content]) => {
      const dir = join(scratchDir(), 'metadata');
      writeFileSync(join(dir, file), content);
      try {
        const store = MetadataStore.open(dir);
        const allowed = [MetadataError];
        if (file === POOL_STATE_FILE) only(allowed, () => store.readPoolState());
        else if (file === INTENT_FILE) only(allowed, () => store.readIntent());
        else only(allowed, () => store.readDevice(file === 'base' ? '' : file));
        only(allowed, () => store.readDevices());
      } finally {
        rmSync(join(dir, file), { force: true });
      }
    },
  }),
  property({
    decoder: 'MetadataStore.readDevices',
    cases: 'device files under hostile names',
    weight: 0.3,
    setUp: () => {
      MetadataStore.open(join(scratchDir(), 'metadata'));
    },
    tearDown: dropScratch,
    arbitrary: () =>
      fc.tuple(
        fc
          .string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
          .filter((n) => !n.includes('/') && !n.includes('\0') && n !== '.' && n !== '..'),
        hostileJson(METADATA_FILES.h1),
      ),
    run: ([name, content]) => {
      const dir = join(scratchDir(), 'metadata');
      const path = join(dir, name);
      try {
        writeFileSync(path, content);
      } catch {
        return; // a name the file system refuses (too long in bytes) is not an input
      }
      try {
        only([MetadataError, InvalidHashError], () => MetadataStore.open(dir).readDevices());
      } finally {
        rmSync(path, { force: true });
      }
    },
  }),
  property({
    decoder: 'HomeLock.holder (the lock record)',
    cases: 'hostile "<pid> <start time>" records while the lock is held',
    weight: 0.4,
    setUp: () => {
      const path = join(scratchDir(), 'lock');
      const fd = openSync(path, 'w+');
      sysFlock(fd, LOCK_EX);
      heldLock = { path, fd };
    },
    tearDown: () => {
      if (heldLock) closeSync(heldLock.fd);
      heldLock = undefined;
      dropScratch();
    },
    arbitrary: () =>
      fc.oneof(
        fc
          .tuple(
            fc.oneof(fc.constantFrom(0, 1, process.pid, 2 ** 22, 2 ** 31, 2 ** 32), fc.nat()).map(String),
            fc.oneof(fc.constant(''), fc.nat().map(String), soup(2)),
            fc.constantFrom('', '\n', ' ', '\n\n'),
          )
          .map(([pid, start, end]) => Buffer.from(`${pid} ${start}${end}`)),
        mutatedText([`${process.pid} 12345\n`, '1 0\n', '99999999999999999999999999999999999999999999999999999999999999999999\n']).map(
          (s) => Buffer.from(s),
        ),
        fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)),
      ),
    run: (record) => {
      const { path, fd } = heldLock!;
      ftruncateSync(fd, 0);
      writeSync(fd, record, 0, record.length, 0);
      const pid = only([], () => HomeLock.holder(path));
      // Held by us: a pid (0 when the record names no live process), never "free".
      if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 0) throw new UntypedError(`holder() gave ${String(pid)}`);
    },
  }),
  property({
    decoder: 'readRecordedOpts (<home>/storage-opts)',
    cases: 'mutated and random storage-opts files',
    weight: 0.5,
    tearDown: dropScratch,
    arbitrary: () =>
      fc.oneof(
        mutatedText(OPTION_LISTS.map((l) => JSON.stringify(l))),
        fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v) ?? ''),
        soup(8),
      ),
    run: (text) => {
      writeFileSync(join(scratchDir(), STORAGE_OPTS_FILE), text);
      only([OperationError], () => readRecordedOpts(scratchDir()));
    },
  }),
  property({
    decoder: 'decodeFsSuperblock',
    cases: 'the heads of real ext2/3/4, jbd and xfs file systems with bytes edited and cut short, random heads',
    weight: 1,
    arbitrary: () =>
      fc.oneof(
        fc
          .tuple(
            fc.constantFrom(...fsHeads()),
            fc.array(fc.tuple(fc.nat(FS_PROBE_BYTES - 1), fc.nat(255)), { maxLength: 8 }),
            fc.nat(FS_PROBE_BYTES),
          )
          .map(([head, edits, length]) => {
            const b = Uint8Array.from(head);
            for (const [at, v] of edits) b[at] = v;
            return b.subarray(0, length);
          }),
        fc.uint8Array({ maxLength: FS_PROBE_BYTES }),
      ),
    run: (buf) => only([], () => decodeFsSuperblock(buf)),
  }),
  property({
    decoder: 'decodeThinSuperblock',
    cases: 'edited superblocks (resealed or not), random blocks',
    weight: 2,
    arbitrary: () =>
      fc.oneof(
        thinBlocks(SUPERBLOCK_CSUM_XOR),
        fc.tuple(anyBlock, fc.nat(8)).map(([block, blocknr]) => ({ block, blocknr })),
      ),
    run: ({ block, blocknr }) => {
      only([ThinMetadataError], () => decodeThinSuperblock(block, blocknr));
    },
  }),
  property({
    decoder: 'decodeBtreeNode',
    cases: 'edited btree nodes (resealed or not) under every value size, random blocks; every key and value read',
    weight: 3,
    arbitrary: () =>
      fc.tuple(
        fc.oneof(
          thinBlocks(BTREE_CSUM_XOR),
          fc.tuple(anyBlock, fc.nat(8)).map(([block, blocknr]) => ({ block, blocknr })),
        ),
        fc.oneof(fc.constantFrom(4, 8, 16, 24), fc.nat(5000)),
      ),
    run: ([{ block, blocknr }, valueSize]) => {
      only([ThinMetadataError], () => {
        const n = decodeBtreeNode(block, blocknr, valueSize);
        const keys: number[] = [];
        for (let i = 0; i < n.nrEntries; i++) {
          keys.push(n.key(i), n.valueOffset(i));
          if (n.valueSize === 8) keys.push(n.value64(i));
          if (n.valueSize === 24) keys.push(decodeDeviceDetails(n.block, n.valueOffset(i), blocknr).mappedBlocks);
          if (!n.leaf) keys.push(n.child(i));
        }
        return keys;
      });
    },
  }),
  property({
    decoder: 'decodeDeviceDetails, decodeBlockTime, decodeIndexEntry',
    cases: 'random buffers at random offsets',
    weight: 1,
    arbitrary: () => fc.tuple(fc.uint8Array({ maxLength: 64 }), fc.oneof(fc.nat(64), fc.integer(), fc.double())),
    run: ([buf, offset]) => {
      only([ThinMetadataError], () => decodeDeviceDetails(buf, offset));
      only([ThinMetadataError], () => decodeBlockTime(buf, offset));
      only([ThinMetadataError], () => decodeIndexEntry(buf, offset));
    },
  }),
  property({
    decoder: 'decodeMetadataIndex, decodeBitmapHeader, bitmapCount',
    cases: 'built index and bitmap blocks, edited, and random blocks; random entries',
    weight: 1,
    arbitrary: () =>
      fc.tuple(
        fc.oneof(
          fc.constant(null).map(() => {
            const img = new MetadataImage(4);
            const at = img.metadataIndex([{ blocknr: 2, nrFree: 5, noneFreeBefore: 1 }]);
            return { block: img.get(at), blocknr: at };
          }),
          fc.array(fc.nat(3), { maxLength: 200 }).map((counts) => {
            const img = new MetadataImage(4);
            const at = img.bitmap(counts);
            return { block: img.get(at), blocknr: at };
          }),
          fc.tuple(anyBlock, fc.nat(8)).map(([block, blocknr]) => ({ block, blocknr })),
        ),
        fc.oneof(fc.nat(20000), fc.integer(), fc.double()),
      ),
    run: ([{ block, blocknr }, entry]) => {
      only([ThinMetadataError], () => decodeMetadataIndex(block, blocknr));
      only([ThinMetadataError], () => decodeBitmapHeader(block, blocknr));
      only([ThinMetadataError], () => bitmapCount(block, entry));
    },
  }),
  property({
    decoder: 'readThinDevices, readThinUsage, forEachMapping',
    cases: 'pool images with edited blocks (resealed or not: lying counts, cycles, roots past the end), random images',
    weight: 3,
    arbitrary: thinImageCases,
    run: (image) => {
      readAllThin(image);
    },
  }),
];

/** Each property's share of `total` cases (at least 1 each); the shares sum to about `total`. */
export function shares(total: number): number[] {
  const sum = PROPERTIES.reduce((s, p) => s + p.weight, 0);
  return PROPERTIES.map((p) => Math.max(1, Math.round((total * p.weight) / sum)));
}

/** The decoders the list covers, in order, once each. */
export const DECODERS = [...new Set(PROPERTIES.map((p) => p.decoder))];
