// A home made by Docker's devmapper driver: its metadata files read by field name, detected, and
// converted (with Docker's open transaction rolled back) all or nothing, against a pool that
// records the messages it gets. The kernel side is test/kernel/docker-home.test.ts.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { thinId, type ThinId } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';
import {
  adoptDockerHome,
  CONVERTING_DIR,
  DOCKER_BACKUP_DIR,
  finishDockerConversion,
  homePrefix,
  isDockerHome,
  readDockerMetadata,
  type DockerPool,
} from '../../src/thin/docker-home.js';
import { MetadataError, PoolOptionConflictError } from '../../src/thin/errors.js';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { Undo } from '../../src/thin/undo.js';
import {
  dockerDevInfo,
  filesUnder,
  writeDockerDevice,
  writeDockerDeviceSet,
  writeDockerLegacy,
  writeDockerTransaction,
} from './thin-docker-files.js';

const G = 2 ** 30;
const L1 = 'a1'.repeat(32);
const L2 = 'b2'.repeat(32);
const UUID = '0f3b6c1e-5d3a-4c2b-9f8e-1a2b3c4d5e6f';

let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'docker-home-'));
  mkdirSync(join(home, 'devicemapper'));
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

/** Records in hash order (the base, '', first), whatever order the folder listed them in. */
const byHash = <T extends { hash: string }>(xs: Iterable<T>): T[] =>
  [...xs].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));

/** A pool at transaction id `txid` that records what it is asked, and fails deletes with `deleteError`. */
function recordingPool(txid: bigint, deleteError?: string) {
  const calls: string[] = [];
  const pool: DockerPool = {
    transactionId: async () => txid,
    release: async (hash) => void calls.push(`release ${JSON.stringify(hash)}`),
    deleteThin: async (id: ThinId) => {
      calls.push(`delete ${id}`);
      if (deleteError) throw Object.assign(new Error(`delete ${id}: ${deleteError}`), { code: deleteError });
    },
  };
  return { pool, calls };
}

/** A Docker home of driver 17.x: base (id 1), layer L1 (id 2), L1-init deferred-deleted (id 3), pool txid 3. */
function modernHome(): void {
  writeDockerDevice(home, '', dockerDevInfo(1, 10 * G, 1, true));
  writeDockerDevice(home, L1, dockerDevInfo(2, 10 * G, 2, false));
  writeDockerDevice(home, `${L1}-init`, dockerDevInfo(3, 10 * G, 3, false, true));
  writeDockerDeviceSet(home, 3, UUID, 'ext4');
  // Left by the last transaction, committed: open_transaction_id is the pool's.
  writeDockerTransaction(home, 3, `${L1}-init`, 3);
  // Docker's own leftovers: a temp file of writeMetaFile, a migrated legacy file.
  writeFileSync(join(home, 'metadata', '.tmp123456'), '{"device_id":');
  writeFileSync(join(home, 'metadata', 'old.migrated'), 'x');
}

describe("Docker's metadata files, by field name", () => {
  test('per-device files, deviceset-metadata and transaction-metadata', () => {
    modernHome();
    expect(isDockerHome(home)).toBe(true);
    const m = readDockerMetadata(home);
    expect(byHash(m.devices.values())).toEqual([
      { hash: '', deviceId: 1, sizeBytes: bytes(10 * G), transactionId: 1n, initialized: true, deleted: false },
      { hash: L1, deviceId: 2, sizeBytes: bytes(10 * G), transactionId: 2n, initialized: false, deleted: false },
      { hash: `${L1}-init`, deviceId: 3, sizeBytes: bytes(10 * G), transactionId: 3n, initialized: false, deleted: true },
    ]);
    expect(m.legacy).toBe(false);
    expect(m.nextDeviceId).toBe(3);
    expect(m.baseFilesystem).toBe('ext4');
    expect(m.deviceSetFields).toEqual({ BaseDeviceUUID: UUID, BaseDeviceFilesystem: 'ext4' });
    expect(m.transaction).toEqual({ openTransactionId: 3n, deviceHash: `${L1}-init`, deviceId: 3 });
  });

  test("as Go's encoding/json: keys match ignoring case, missing and null fields are zero", () => {
    mkdirSync(join(home, 'metadata'));
    writeFileSync(join(home, 'metadata', 'base'), '{"Device_Id":1,"SIZE":4096,"initialized":true,"deleted":null}');
    writeFileSync(join(home, 'metadata', L1), '{"device_id":2,"size":4096}');
    const m = readDockerMetadata(home);
    expect(m.devices.get('')).toMatchObject({ deviceId: 1, sizeBytes: 4096n, transactionId: 0n, initialized: true, deleted: false });
    expect(m.devices.get(L1)).toMatchObject({ deviceId: 2, transactionId: 0n, initialized: false });
    expect(m.nextDeviceId).toBe(0);
    expect(m.transaction).toBeNull();
  });

  test('a field of the wrong type, an id over 24 bits or a torn file: MetadataError (EUCLEAN) naming the file', () => {
    for (const [name, text, why] of [
      ['base', '{"device_id":"1","size":1}', /device_id is not a non-negative integer/],
      [L1, '{"device_id":16777216,"size":1}', /device_id 16777216 is over 24 bits/],
      [L1, '{"device_id":1,"size":1,"deleted":"yes"}', /deleted is not a boolean/],
      [L1, '{"device_id":1,', /corrupted JSON/],
      ['a b', '{"device_id":1,"size":1}', /names a device the pool manager cannot hold/],
    ] as const) {
      rmSync(join(home, 'metadata'), { recursive: true, force: true });
      mkdirSync(join(home, 'metadata'));
      writeFileSync(join(home, 'metadata', name), text);
      const err = (() => {
        try {
          readDockerMetadata(home);
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(MetadataError);
      expect((err as MetadataError).code).toBe('EUCLEAN');
      expect((err as Error).message).toContain(join(home, 'metadata', name));
      expect((err as Error).message).toMatch(why);
    }
  });

  test('the legacy devicemapper/json: base under "", its entries written over the per-device files (as Docker\'s migration)', () => {
    writeDockerDevice(home, L1, dockerDevInfo(9, G, 9, false));
    writeDockerDevice(home, L2, dockerDevInfo(5, G, 4, false));
    const legacy = { '': { device_id: 0, size: G, transaction_id: 0, initialized: true }, [L1]: dockerDevInfo(2, G, 2, false) };
    writeDockerLegacy(home, legacy);
    expect(isDockerHome(home)).toBe(true);
    const m = readDockerMetadata(home);
    expect(m.legacy).toBe(true);
    expect([...m.devices.entries()].map(([h, d]) => [h, d.deviceId, d.transactionId])).toEqual([
      [L1, 2, 2n],
      [L2, 5, 4n],
      ['', 0, 0n],
    ]);
  });

  test('detection: ours, new and Docker homes', () => {
    expect(isDockerHome(home)).toBe(false); // nothing yet
    const ours = MetadataStore.open(join(home, 'metadata'));
    expect(isDockerHome(home)).toBe(false); // an empty metadata folder: a new pool
    ours.writeDevice({ hash: L1, deviceId: thinId(1), sizeBytes: bytes(G), transactionId: 1n, initialized: true, deleted: false });
    expect(isDockerHome(home)).toBe(false); // our device file (with its hash), no pool state: ours, damaged
    ours.writePoolState({ nextDeviceId: thinId(2), transactionId: 1n });
    expect(isDockerHome(home)).toBe(false);
    rmSync(join(home, 'metadata'), { recursive: true });
    writeDockerDevice(home, L1, dockerDevInfo(1, G, 1, false));
    expect(isDockerHome(home)).toBe(true); // a driver older than deviceset-metadata
    rmSync(join(home, 'metadata'), { recursive: true });
    writeDockerTransaction(home, 1, '', 1);
    expect(isDockerHome(home)).toBe(true);
  });
});

describe('the prefix of a home', () => {
  test('docker for a Docker home, the recorded one once converted, else dm.prefix', async () => {
    expect(homePrefix(home, undefined, 'devmapper')).toBe('devmapper');
    expect(homePrefix(home, 'mine', 'devmapper')).toBe('mine');
    modernHome();
    expect(homePrefix(home, undefined, 'devmapper')).toBe('docker');
    expect(homePrefix(home, 'docker', 'devmapper')).toBe('docker');
    expect(() => homePrefix(home, 'mine', 'devmapper')).toThrow(PoolOptionConflictError);
    await adoptDockerHome(home, readDockerMetadata(home), recordingPool(3n).pool, new Undo());
    expect(isDockerHome(home)).toBe(false);
    expect(homePrefix(home, undefined, 'devmapper')).toBe('docker');
    expect(() => homePrefix(home, 'devmapper', 'devmapper')).toThrow(/dm\.prefix.*the pool already has docker/);
  });

  test('a pool state that does not parse tells no prefix (a shutdown must not stop at it): dm.prefix or the default', () => {
    mkdirSync(join(home, 'metadata'));
    writeFileSync(join(home, 'metadata', 'deviceset-metadata'), 'garbage\n');
    expect(isDockerHome(home)).toBe(false);
    expect(homePrefix(home, undefined, 'devmapper')).toBe('devmapper');
    expect(homePrefix(home, 'docker', 'devmapper')).toBe('docker');
  });
});

describe('adopting a Docker home', () => {
  test("converts every file, keeps Docker's folder as it was, and stays readable by Docker's field names", async () => {
    modernHome();
    const before = filesUnder(join(home, 'metadata'));
    const { pool, calls } = recordingPool(3n);
    const undo = new Undo();
    const a = await adoptDockerHome(home, readDockerMetadata(home), pool, undo);
    undo.commit();
    expect(calls).toEqual([]); // a committed transaction: nothing to roll back
    expect(a).toEqual({
      backup: join(home, DOCKER_BACKUP_DIR),
      legacyJson: false,
      devices: 3,
      transactionId: 3n,
      transaction: { openTransactionId: 3n, deviceHash: `${L1}-init`, deviceId: 3, action: 'closed' },
    });
    expect(filesUnder(join(home, DOCKER_BACKUP_DIR))).toEqual(before);
    expect(existsSync(join(home, CONVERTING_DIR))).toBe(false);

    const store = MetadataStore.open(join(home, 'metadata'));
    expect(store.readPoolState()).toEqual({
      nextDeviceId: 4,
      transactionId: 3n,
      devicePrefix: 'docker',
      foreign: { BaseDeviceUUID: UUID, BaseDeviceFilesystem: 'ext4' },
    });
    expect(store.readIntent()).toBeNull();
    expect(byHash(store.readDevices().values())).toEqual([
      { hash: '', deviceId: 1, sizeBytes: bytes(10 * G), transactionId: 1n, initialized: true, deleted: false, filesystem: 'ext4' },
      { hash: L1, deviceId: 2, sizeBytes: bytes(10 * G), transactionId: 2n, initialized: true, deleted: false },
      { hash: `${L1}-init`, deviceId: 3, sizeBytes: bytes(10 * G), transactionId: 3n, initialized: true, deleted: true },
    ]);
    // Docker reads only its own field names: the converted files give it the same devices.
    const again = readDockerMetadata(home);
    expect(byHash(again.devices.values()).map((d) => [d.hash, d.deviceId, d.sizeBytes, d.transactionId, d.deleted])).toEqual([
      ['', 1, bytes(10 * G), 1n, false],
      [L1, 2, bytes(10 * G), 2n, false],
      [`${L1}-init`, 3, bytes(10 * G), 3n, true],
    ]);
    expect(again.deviceSetFields['BaseDeviceUUID']).toBe(UUID);

    // A later pool state write (a transaction's) keeps the prefix and Docker's fields.
    store.writePoolState({ nextDeviceId: thinId(5), transactionId: 4n });
    const raw = JSON.parse(readFileSync(join(home, 'metadata', 'deviceset-metadata'), 'utf8'));
    expect(raw).toEqual({
      BaseDeviceUUID: UUID,
      BaseDeviceFilesystem: 'ext4',
      next_device_id: 5,
      transaction_id: 4,
      device_prefix: 'docker',
    });
  });

  test("Docker's open transaction is rolled back as Docker does: thin id deleted, record dropped", async () => {
    modernHome();
    // A snapshot L2 (id 4) was being made: its file is written, set_transaction_id 3 -> 4 never happened.
    writeDockerDevice(home, L2, dockerDevInfo(4, 10 * G, 4, false));
    writeDockerTransaction(home, 4, L2, 4);
    const { pool, calls } = recordingPool(3n);
    const a = await adoptDockerHome(home, readDockerMetadata(home), pool, new Undo());
    expect(calls).toEqual([`release ${JSON.stringify(L2)}`, 'delete 4']);
    expect(a.transaction).toEqual({ openTransactionId: 4n, deviceHash: L2, deviceId: 4, action: 'rolled-back' });
    const devices = MetadataStore.open(join(home, 'metadata')).readDevices();
    expect([...devices.keys()].sort()).toEqual(['', L1, `${L1}-init`]);
    // The id may be gone already (deleted before the transaction closed): ENODATA is fine.
    rmSync(home, { recursive: true });
    mkdirSync(join(home, 'devicemapper'), { recursive: true });
    modernHome();
    writeDockerTransaction(home, 4, L2, 4);
    const gone = recordingPool(3n, 'ENODATA');
    expect((await adoptDockerHome(home, readDockerMetadata(home), gone.pool, new Undo())).transaction?.action).toBe('rolled-back');
  });

  test('a transaction behind the pool (Docker ignores it too) is stale; a refused rollback changes no file', async () => {
    modernHome();
    writeDockerTransaction(home, 2, L1, 2);
    const stale = await adoptDockerHome(home, readDockerMetadata(home), recordingPool(3n).pool, new Undo());
    expect(stale.transaction?.action).toBe('stale');

    rmSync(home, { recursive: true });
    mkdirSync(join(home, 'devicemapper'), { recursive: true });
    modernHome();
    writeDockerTransaction(home, 4, L2, 4);
    const before = filesUnder(home);
    const undo = new Undo();
    const busy = recordingPool(3n, 'EBUSY');
    await expect(adoptDockerHome(home, readDockerMetadata(home), busy.pool, undo)).rejects.toMatchObject({ code: 'EBUSY' });
    expect(await undo.run()).toEqual([]);
    expect(filesUnder(home)).toEqual(before);
  });

  test('the legacy json: devices from it, renamed json.migrated; undone, every file is back as it was', async () => {
    writeDockerLegacy(home, {
      '': { device_id: 0, size: G, transaction_id: 0, initialized: true },
      [L1]: { device_id: 1, size: G, transaction_id: 1, initialized: false },
    });
    const before = filesUnder(home);
    const undo = new Undo();
    const a = await adoptDockerHome(home, readDockerMetadata(home), recordingPool(1n).pool, undo);
    expect(a.legacyJson).toBe(true);
    expect(existsSync(join(home, 'devicemapper', 'json'))).toBe(false);
    expect(readFileSync(join(home, 'devicemapper', 'json.migrated'), 'utf8')).toBe(before['devicemapper/json']);
    const store = MetadataStore.open(join(home, 'metadata'));
    expect(byHash(store.readDevices().values()).map((d) => [d.hash, d.deviceId, d.initialized])).toEqual([
      ['', 0, true],
      [L1, 1, true],
    ]);
    // No deviceset-metadata: Docker starts from id 0 (and increments before use).
    expect(store.readPoolState()).toMatchObject({ nextDeviceId: 1, transactionId: 1n, devicePrefix: 'docker' });
    // A failure later in the same open: Docker's files come back.
    expect(await undo.run()).toEqual([]);
    expect(filesUnder(home)).toEqual(before);
    expect(isDockerHome(home)).toBe(true);
  });

  test('after a crash: a complete staging folder with no metadata/ takes its place; an incomplete one is dropped', async () => {
    modernHome();
    const docker = filesUnder(join(home, 'metadata'));
    await adoptDockerHome(home, readDockerMetadata(home), recordingPool(3n).pool, new Undo());
    const converted = filesUnder(join(home, 'metadata'));
    // Killed between the two renames: Docker's folder moved, ours not yet in place.
    renameSync(join(home, 'metadata'), join(home, CONVERTING_DIR));
    finishDockerConversion(home);
    expect(filesUnder(join(home, 'metadata'))).toEqual(converted);
    expect(existsSync(join(home, CONVERTING_DIR))).toBe(false);

    // Killed while the staging folder was written: Docker's files untouched, the folder dropped.
    rmSync(join(home, 'metadata'), { recursive: true });
    renameSync(join(home, DOCKER_BACKUP_DIR), join(home, 'metadata'));
    mkdirSync(join(home, CONVERTING_DIR));
    writeFileSync(join(home, CONVERTING_DIR, 'base'), '{}');
    finishDockerConversion(home);
    expect(existsSync(join(home, CONVERTING_DIR))).toBe(false);
    expect(filesUnder(join(home, 'metadata'))).toEqual(docker);
  });

  test('a converted home whose legacy json was not yet renamed gets it renamed on open', async () => {
    writeDockerLegacy(home, { '': { device_id: 0, size: G, transaction_id: 0, initialized: true } });
    const text = readFileSync(join(home, 'devicemapper', 'json'), 'utf8');
    await adoptDockerHome(home, readDockerMetadata(home), recordingPool(1n).pool, new Undo());
    renameSync(join(home, 'devicemapper', 'json.migrated'), join(home, 'devicemapper', 'json'));
    finishDockerConversion(home);
    expect(existsSync(join(home, 'devicemapper', 'json'))).toBe(false);
    expect(readFileSync(join(home, 'devicemapper', 'json.migrated'), 'utf8')).toBe(text);
  });

  test("a second adoption's backup does not replace the first", async () => {
    modernHome();
    mkdirSync(join(home, DOCKER_BACKUP_DIR));
    const a = await adoptDockerHome(home, readDockerMetadata(home), recordingPool(3n).pool, new Undo());
    expect(a.backup).toBe(join(home, `${DOCKER_BACKUP_DIR}.1`));
  });
});
