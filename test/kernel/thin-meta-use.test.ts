// The pool's own metadata put to use, against the real kernel: `pool thins` agrees with thin_ls on
// the same pool, a thin id our metadata does not know is reported and left alone, the metadata
// snapshot is always released (and one someone else holds is never), and `pool check` / the check
// before activation agree with thin_check on a pool that is shut down, clean and corrupted.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceName } from '../../src/dm/names.js';
import { parseThinPoolStatus } from '../../src/dm/status/thin-pool.js';
import { isThinPoolTarget } from '../../src/dm/targets.js';
import { attachLoop, detachLoop, listLoops, releaseLoop } from '../../src/loop/index.js';
import {
  BITMAP_CSUM_XOR,
  DISK_BITMAP_HEADER_SIZE,
  ENTRIES_PER_BLOCK,
  THIN_METADATA_BLOCK_SIZE,
  bitmapCount,
  blockChecksum,
  decodeBitmapHeader,
  decodeMetadataIndex,
  decodeThinSuperblock,
} from '../../src/structs/thin-metadata.js';
import { DeviceSet } from '../../src/thin/device-set.js';
import { MetadataSnapshotBusyError } from '../../src/thin/errors.js';
import { readThinDevices } from '../../src/thin/metadata/read.js';
import { metadataReadPath, withMetadataSnapshot } from '../../src/thin/metadata/snapshot.js';
import { cli, cliOk, type CliRun, dmsetupOk, kernelHooks, oracleLs, RUN_DIR } from './support/env.js';

kernelHooks({ sweepEach: false });

const HOME = join(RUN_DIR, 'meta-use');
const PREFIX = `dmtest-${process.pid}-mu`;
const OPTS = ['dm.loopdatasize=256M', 'dm.loopmetadatasize=16M', 'dm.basesize=64M', 'dm.min_free_space=0%', `dm.prefix=${PREFIX}`];
const on = (...args: string[]): string[] => [...args, '--home', HOME];
const METADATA_FILE = join(HOME, 'devicemapper', 'metadata');

interface ThinJson {
  thinId: number;
  hash: string | null;
  mappedBlocks: number;
  exclusiveBlocks: number;
  sharedBlocks: number;
  mappedBytes: string;
  exclusiveBytes: string;
}
interface CheckJson {
  ok: boolean;
  path: string;
  problems: { block: number | null; what: string }[];
}

let poolName: string;
const thins = (): ThinJson[] => JSON.parse(cliOk(on('pool', 'thins', '--json'))) as ThinJson[];

/** The pool's held metadata root, from its status line (dmsetup: an independent reader). */
function heldRoot(): string {
  // <start> <len> thin-pool <txid> <meta> <data> <held root> ...
  return dmsetupOk(['status', poolName]).trim().split(' ')[6] as string;
}

function expectOneLine(r: CliRun, pattern: RegExp): void {
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

/** /dev/<name> of the pool's metadata device, as thin_ls reads it. */
function metadataDevice(): string {
  const table = dmsetupOk(['table', poolName]).trim().split(' ');
  const name = /^DEVNAME=(.+)$/m.exec(readFileSync(`/sys/dev/block/${table[3]}/uevent`, 'utf8'))?.[1];
  if (!name) throw new Error(`no DEVNAME for ${table[3]}`);
  return `/dev/${name}`;
}

/** thin_ls (thin-provisioning-tools) of the live pool through a metadata snapshot taken by dmsetup. */
function thinLs(): Map<number, { mapped: number; exclusive: number; shared: number }> {
  dmsetupOk(['message', poolName, '0', 'reserve_metadata_snap']);
  let out: string;
  try {
    out = execFileSync(
      'thin_ls',
      ['-m', '--no-headers', '--format', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', metadataDevice()],
      { encoding: 'utf8' },
    );
  } finally {
    dmsetupOk(['message', poolName, '0', 'release_metadata_snap']);
  }
  const rows = new Map<number, { mapped: number; exclusive: number; shared: number }>();
  for (const line of out.trim().split('\n')) {
    const [dev, mapped, exclusive, shared] = line.trim().split(/\s+/).map(Number);
    rows.set(dev!, { mapped: mapped!, exclusive: exclusive!, shared: shared! });
  }
  return rows;
}

const recordedOpts = (): string[] => JSON.parse(readFileSync(join(HOME, 'storage-opts'), 'utf8')) as string[];

/** Layers a (3 MiB written), b of a (1 MiB more), c of a (nothing), made in this process: faster than a CLI process each. */
async function makeLayers(): Promise<void> {
  const set = await DeviceSet.open(HOME, recordedOpts());
  try {
    const mnt = join(RUN_DIR, 'meta-use-mnt');
    const make = async (id: string, parent: string, file: string | null): Promise<void> => {
      await set.addDevice(id, parent);
      if (file === null) return;
      await set.mountDevice(id, mnt, '', { createMountPoint: true });
      try {
        writeFileSync(join(mnt, file), randomBytes(id === 'a' ? 3 << 20 : 1 << 20));
      } finally {
        await set.unmountDevice(id);
      }
    };
    await make('a', '', 'one');
    await make('b', 'a', 'two');
    await make('c', 'a', null);
  } finally {
    await set.close();
  }
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const ourDevices = (): string[] => [...oracleLs().keys()].filter((n) => n.startsWith(PREFIX));
const ourLoops = () => listLoops().filter((l) => l.backingFile.startsWith(`${HOME}/`));

beforeAll(() => {
  mkdirSync(RUN_DIR, { recursive: true });
  cliOk(['pool', 'init', '--home', HOME, ...OPTS.flatMap((o) => ['--storage-opt', o])]);
  poolName = (JSON.parse(cliOk(on('pool', 'status', '--json'))) as { poolName: string }).poolName;
});

describe('pool thins', () => {
  test('agrees with thin_ls: every thin id, its mapped, exclusive and shared blocks; our hashes', { timeout: 300_000 }, async () => {
    await makeLayers();
    const ours = thins();
    const oracle = thinLs();
    expect(ours.map((t) => t.thinId)).toEqual([...oracle.keys()].sort((x, y) => x - y));
    for (const t of ours) {
      const o = oracle.get(t.thinId)!;
      expect({ thinId: t.thinId, mapped: t.mappedBlocks, exclusive: t.exclusiveBlocks, shared: t.sharedBlocks }).toEqual({
        thinId: t.thinId,
        ...o,
      });
    }
    // The hashes: the base on thin id 0, the layers on the ids layer ls reports.
    const layerIds = new Map(
      (JSON.parse(cliOk(on('layer', 'ls', '--json'))) as { id: string; thinId: number }[]).map((l) => [l.thinId, l.id]),
    );
    expect(ours.map((t) => [t.thinId, t.hash])).toEqual(ours.map((t) => [t.thinId, t.thinId === 0 ? '' : layerIds.get(t.thinId)]));
    // b wrote 1 MiB of its own: at least that is exclusive to it; c wrote nothing: shares all.
    const block = BigInt(JSON.parse(cliOk(on('pool', 'status', '--json'))).blockSizeBytes as string);
    const b = ours.find((t) => t.hash === 'b')!;
    expect(BigInt(b.exclusiveBytes)).toBeGreaterThanOrEqual(1n << 20n);
    expect(BigInt(b.exclusiveBytes)).toBe(BigInt(b.exclusiveBlocks) * block);
    expect(ours.find((t) => t.hash === 'c')!.exclusiveBlocks).toBe(0);
    const text = cliOk(on('pool', 'thins'));
    expect(text).toMatch(/^THIN ID +HASH +MAPPED +EXCLUSIVE +SHARED +CREATED +SNAPSHOTTED$/m);
    expect(text).toMatch(/^ +0 +\(base\) +\S+ \S+ /m);
    // layer ls: the same exclusive count.
    expect(cliOk(on('layer', 'ls'))).toMatch(/^ID +THIN ID +SIZE +MAPPED +EXCLUSIVE +ACTIVE +MOUNTED$/m);
    const lsB = (JSON.parse(cliOk(on('layer', 'ls', '--json'))) as { id: string; exclusiveBytes: string }[]).find((l) => l.id === 'b');
    expect(lsB?.exclusiveBytes).toBe(b.exclusiveBytes);
    expect(heldRoot()).toBe('-');
  });

  test('a thin id our metadata does not know: reported by pool thins and by open, never deleted', { timeout: 300_000 }, async () => {
    const foreign = 777;
    dmsetupOk(['message', poolName, '0', `create_thin ${foreign}`]);
    try {
      expect(thins().find((t) => t.thinId === foreign)).toMatchObject({ hash: null, mappedBlocks: 0 });
      expect(cliOk(on('pool', 'thins'))).toMatch(new RegExp(`^ +${foreign} +- \\(not in our metadata\\) `, 'm'));
      const set = await DeviceSet.open(HOME, recordedOpts());
      try {
        expect(set.reconciled).toMatchObject({ action: 'none', unknownThinIds: [foreign] });
      } finally {
        await set.close();
      }
      expect(thins().map((t) => t.thinId)).toContain(foreign); // still there
      // Shut down, the pool's ids are read from its metadata file before activation: no snapshot.
      cliOk(on('pool', 'shutdown'));
      const reopened = await DeviceSet.open(HOME, recordedOpts());
      try {
        expect(reopened.reconciled).toMatchObject({ action: 'none', unknownThinIds: [foreign] });
        expect(heldRoot()).toBe('-');
      } finally {
        await reopened.close();
      }
      expect(thins().map((t) => t.thinId)).toContain(foreign);
    } finally {
      dmsetupOk(['message', poolName, '0', `delete ${foreign}`]);
    }
    expect(heldRoot()).toBe('-');
  });

  test('a metadata snapshot another program holds: EBUSY, and it stays theirs', { timeout: 300_000 }, () => {
    dmsetupOk(['message', poolName, '0', 'reserve_metadata_snap']);
    try {
      const held = heldRoot();
      expect(held).toMatch(/^\d+$/);
      expectOneLine(cli(on('pool', 'thins')), /^devmapper pool: EBUSY: pool \S+ already holds a metadata snapshot \(held root \d+\)/);
      expect(heldRoot()).toBe(held); // not released by us
    } finally {
      dmsetupOk(['message', poolName, '0', 'release_metadata_snap']);
    }
    expect(heldRoot()).toBe('-');
  });
});

describe('withMetadataSnapshot', () => {
  test('holds the snapshot while the reader runs and releases it after, also when the reader throws', { timeout: 300_000 }, () => {
    const dm = DeviceMapper.open();
    try {
      const ref = { name: deviceName(poolName) };
      const t = dm.table(ref)[0];
      if (!t || !isThinPoolTarget(t)) throw new Error('no thin-pool table');
      const path = metadataReadPath(t.metadataDevice);
      expect(path).toBe(METADATA_FILE); // a loop device: its backing file
      const heldNow = (): bigint | null => {
        const s = parseThinPoolStatus(dm.status(ref)[0]!.params);
        return s.state === 'ok' ? s.heldMetadataRoot : null;
      };
      const ids = withMetadataSnapshot(dm, ref, path, (blocks) => {
        expect(heldNow()).not.toBeNull();
        return readThinDevices(blocks, { root: 'held' }).devices.map((d) => d.thinId);
      });
      expect(ids).toEqual(thins().map((x) => x.thinId));
      expect(heldNow()).toBeNull();
      const failure = new Error('the reader failed');
      expect(() =>
        withMetadataSnapshot(dm, ref, path, () => {
          throw failure;
        }),
      ).toThrow(failure);
      expect(heldNow()).toBeNull();
      expect(heldRoot()).toBe('-');
      // Someone else's: refused with the typed error, theirs kept.
      dmsetupOk(['message', poolName, '0', 'reserve_metadata_snap']);
      try {
        expect(() => withMetadataSnapshot(dm, ref, path, () => 1)).toThrow(MetadataSnapshotBusyError);
        expect(heldNow()).not.toBeNull();
      } finally {
        dmsetupOk(['message', poolName, '0', 'release_metadata_snap']);
      }
    } finally {
      dm.close();
    }
  });
});

/**
 * Corrupt the metadata file the way thin_check (0.9.0 and later) calls fatal and the kernel does
 * not trip over: the metadata space map's count of a block referenced once is raised to 2 (the
 * bitmap's checksum recomputed, so every block still reads; the block would only leak). Returns
 * the block whose count was changed.
 */
function raiseMetadataRefCount(path: string): number {
  const fd = openSync(path, 'r+');
  const read = (blocknr: number): Uint8Array => {
    const b = new Uint8Array(THIN_METADATA_BLOCK_SIZE);
    readSync(fd, b, 0, b.length, blocknr * THIN_METADATA_BLOCK_SIZE);
    return b;
  };
  try {
    const sb = decodeThinSuperblock(read(0), 0);
    const indexAt = sb.metadataSpaceMapRoot.bitmapRoot;
    const bitmapAt = decodeMetadataIndex(read(indexAt), indexAt)[0]!.blocknr;
    const bitmap = read(bitmapAt);
    decodeBitmapHeader(bitmap, bitmapAt);
    let entry = -1;
    for (let b = 1; b < Math.min(ENTRIES_PER_BLOCK, sb.metadataSpaceMapRoot.nrBlocks); b++) {
      if (bitmapCount(bitmap, b) === 1) {
        entry = b;
        break;
      }
    }
    if (entry < 0) throw new Error('no metadata block with a count of 1');
    // Entry b: in le64 word b/32 after the header, bit 2(b%32) is the high bit, 2(b%32)+1 the low one: 1 -> 2.
    const word = DISK_BITMAP_HEADER_SIZE + Math.floor(entry / 32) * 8;
    const bit = BigInt(2 * (entry % 32));
    const v = new DataView(bitmap.buffer);
    v.setBigUint64(word, (v.getBigUint64(word, true) | (1n << bit)) & ~(1n << (bit + 1n)), true);
    if (bitmapCount(bitmap, entry) !== 2) throw new Error('the bitmap edit missed');
    v.setUint32(0, blockChecksum(bitmap, BITMAP_CSUM_XOR), true);
    writeSync(fd, bitmap, 0, bitmap.length, bitmapAt * THIN_METADATA_BLOCK_SIZE);
    fsyncSync(fd);
    return entry;
  } finally {
    closeSync(fd);
  }
}

/** thin_check over a loop device of the file (it opens with O_DIRECT, which the guest's tmpfs refuses). */
async function thinCheck(path: string): Promise<{ status: number; output: string }> {
  const loop = await attachLoop(path, { readOnly: true });
  try {
    const r = spawnSync('thin_check', [loop.path], { encoding: 'utf8' });
    if (r.error) throw r.error;
    return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
  } finally {
    releaseLoop(loop);
    await detachLoop(loop, { expectBackingFile: path });
  }
}

describe('pool check and the check before activation', () => {
  test('a live pool: EBUSY, shut it down first', { timeout: 300_000 }, () => {
    expectOneLine(cli(on('pool', 'check')), /^devmapper pool: EBUSY: pool \S+ is active: .*'devmapper pool shutdown'/);
  });

  test('clean: exit 0, as thin_check says', { timeout: 300_000 }, async () => {
    cliOk(on('pool', 'shutdown'));
    expect(ourDevices()).toEqual([]);
    const tc = await thinCheck(METADATA_FILE);
    expect(tc.status, tc.output).toBe(0);
    const r = cli(on('pool', 'check'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^metadata of pool ${poolName} \\(${METADATA_FILE}\\): clean, transaction id \\d+\\n$`));
    expect((JSON.parse(cliOk(on('pool', 'check', '--json'))) as CheckJson).ok).toBe(true);
  });

  test('corrupted: exit 1 with one line per problem, open refuses it with nothing activated; dm.thin_check=false opens it', {
    timeout: 300_000,
  }, async () => {
    const block = raiseMetadataRefCount(METADATA_FILE);
    const tc = await thinCheck(METADATA_FILE);
    expect(tc.status, `thin_check calls it corrupt too: ${tc.output}`).not.toBe(0);

    const r = cli(on('pool', 'check'));
    expect(r.status, r.stderr).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    const j = JSON.parse(cli(on('pool', 'check', '--json')).stdout) as CheckJson;
    expect(j.ok).toBe(false);
    expect(j.path).toBe(METADATA_FILE);
    expect(j.problems).toHaveLength(lines.length);
    expect(j.problems.map((p) => p.what).join('\n')).toMatch(
      new RegExp(`metadata block ${block} has count 2, but 1 references were found`),
    );

    const before = sha(METADATA_FILE);
    const init = cli(on('pool', 'init'));
    expectOneLine(init, /^devmapper pool: EUCLEAN: pool \S+: its metadata \S+ fails the check \(\d+ problems?: .*\); not activated/);
    expect(ourDevices()).toEqual([]);
    expect(ourLoops()).toEqual([]);
    expect(sha(METADATA_FILE)).toBe(before);
    await expect(DeviceSet.open(HOME, recordedOpts())).rejects.toMatchObject({ name: 'MetadataCheckError', code: 'EUCLEAN' });
    expect(ourDevices()).toEqual([]);

    // At the user's own risk: the kernel takes it.
    cliOk(on('pool', 'init', '--storage-opt', 'dm.thin_check=false'));
    expect(ourDevices()).toContain(poolName);
    expect(thins().map((t) => t.hash)).toEqual(['', 'a', 'b', 'c']);
    cliOk(on('pool', 'shutdown'));
    expect(ourDevices()).toEqual([]);
    expect(ourLoops()).toEqual([]);
  });
});
