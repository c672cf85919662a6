// The transaction protocol against an in-memory pool (a fake of OUR PoolMessenger interface, with
// the kernel's documented answers: EEXIST, ENODATA, EBUSY, EINVAL on a txid mismatch). A "crash"
// is an exception thrown from the step hook: the Transactions object is abandoned, the store and
// the pool are reopened as they are, and the invariant is checked.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { DeviceExistsError, TransactionMismatchError, UnknownDeviceError } from '../../src/thin/errors.js';
import { MetadataStore, type IntentOp } from '../../src/thin/metadata-store.js';
import { TX_STEP_NAMES as CRASH_POINTS, type TxStep as CrashPoint } from '../../src/thin/crash-points.js';
import { type PoolMessenger, Transactions } from '../../src/thin/transaction.js';
import { thinId } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';

class KernelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

class FakePool implements PoolMessenger {
  ids = new Map<number, number | null>(); // id -> origin
  txid = 0n;
  busy = new Set<number>();
  calls: string[] = [];
  /** Fail the call whose index (in `calls`) is this, once. */
  failAt: { index: number; error: Error } | null = null;

  private enter(call: string): void {
    this.calls.push(call);
    if (this.failAt && this.failAt.index === this.calls.length - 1) {
      const e = this.failAt.error;
      this.failAt = null;
      throw e;
    }
  }
  async poolTransactionId(): Promise<bigint> {
    return this.txid;
  }
  async createThin(id: number): Promise<void> {
    this.enter(`create_thin ${id}`);
    if (this.ids.has(id)) throw new KernelError('EEXIST');
    this.ids.set(id, null);
  }
  async createSnap(id: number, origin: number): Promise<void> {
    this.enter(`create_snap ${id} ${origin}`);
    if (this.ids.has(id)) throw new KernelError('EEXIST');
    if (!this.ids.has(origin)) throw new KernelError('ENODATA');
    this.ids.set(id, origin);
  }
  async deleteThin(id: number): Promise<void> {
    this.enter(`delete ${id}`);
    if (!this.ids.has(id)) throw new KernelError('ENODATA');
    if (this.busy.has(id)) throw new KernelError('EBUSY');
    this.ids.delete(id);
  }
  async setTransactionId(old: bigint, next: bigint): Promise<void> {
    this.enter(`set_transaction_id ${old} ${next}`);
    if (old !== this.txid) throw new KernelError('EINVAL');
    this.txid = next;
  }
}

class Crash extends Error {}

let dir: string;
let pool: FakePool;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-tx-'));
  pool = new FakePool();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function open(hook?: (op: IntentOp, p: CrashPoint) => void) {
  return Transactions.open(MetadataStore.open(dir), pool, hook ? { hook } : {});
}

/** The invariant after any crash and reopen. */
function expectAgreement(tx: Transactions): void {
  const metaIds = [...tx.devices.values()].map((d) => d.deviceId).sort((a, b) => a - b);
  const poolIds = [...pool.ids.keys()].sort((a, b) => a - b);
  expect(poolIds).toEqual(metaIds);
  expect(tx.transactionId).toBe(pool.txid);
  expect(existsSync(join(dir, 'transaction-metadata'))).toBe(false);
  // the persisted state agrees with the in-memory one
  expect(MetadataStore.open(dir).readPoolState()?.transactionId).toBe(pool.txid);
}

/** A pool with the base (id 0) and a snapshot "a" (id 1), txid 2. */
async function setup(): Promise<void> {
  const { tx } = await open();
  await tx.create('', { sizeBytes: bytes(1 << 20) });
  await tx.create('a', { sizeBytes: bytes(1 << 20), origin: tx.devices.get('')! });
  expect(pool.txid).toBe(2n);
}

type Op = 'create' | 'snapshot' | 'delete';
async function run(tx: Transactions, op: Op): Promise<void> {
  if (op === 'create') await tx.create('n', { sizeBytes: bytes(4096) });
  else if (op === 'snapshot') await tx.create('n', { sizeBytes: bytes(4096), origin: tx.devices.get('a')! });
  else await tx.delete('a');
}

// What each crash point must leave after reconcile: does the op's effect stand?
const survives = (op: Op, point: CrashPoint): boolean =>
  op === 'delete' ? true : ['txid-set', 'device-committed', 'state-committed', 'intent-cleared'].includes(point);

describe('crash at every step, reopen, pool and metadata agree', () => {
  for (const op of ['create', 'snapshot', 'delete'] as const) {
    for (const point of CRASH_POINTS) {
      test(`${op} / ${point}`, async () => {
        await setup();
        const { tx } = await open((o, p) => {
          if (o === op && p === point) throw new Crash(`${o}@${p}`);
        });
        await expect(run(tx, op)).rejects.toBeInstanceOf(Crash);
        const { tx: again, reconciled } = await open();
        expectAgreement(again);
        if (op === 'delete') {
          expect(again.devices.has('a')).toBe(false);
          expect(pool.ids.has(1)).toBe(false);
        } else {
          expect(again.devices.has('n')).toBe(survives(op, point));
          if (survives(op, point)) {
            expect(again.devices.get('n')).toMatchObject({ deviceId: 2, sizeBytes: bytes(4096), transactionId: 3n });
            expect(pool.ids.get(2)).toBe(op === 'snapshot' ? 1 : null);
          }
        }
        expect(reconciled.action).toBe(point === 'intent-cleared' ? 'none' : survives(op, point) ? 'rolled-forward' : 'rolled-back');
        // and the pool keeps working after recovery: next ids continue past the used ones
        await again.create('after', { sizeBytes: bytes(4096), origin: again.devices.get('')! });
        expectAgreement(again);
        expect(again.devices.get('after')!.deviceId).toBe(op !== 'delete' && survives(op, point) ? 3 : 2);
      });
    }
  }
});

describe('a crash during recovery is recovered next time', () => {
  test.each([0, 1, 2])('create crashed after the message; reconcile dies at its call %i', async (failIndex) => {
    await setup();
    const { tx } = await open((_o, p) => {
      if (p === 'message-sent') throw new Crash();
    });
    await expect(tx.create('n', { sizeBytes: bytes(1) })).rejects.toBeInstanceOf(Crash);
    pool.calls = [];
    pool.failAt = { index: failIndex, error: new Crash('during reconcile') };
    if (failIndex === 0) await expect(open()).rejects.toBeInstanceOf(Crash);
    else await open(); // the reconcile made fewer calls than that: nothing to fail
    const { tx: again } = await open();
    expectAgreement(again);
    expect(again.devices.has('n')).toBe(false);
  });

  test('delete crashed after intent; reconcile dies after its delete, before set_transaction_id', async () => {
    await setup();
    const { tx } = await open((_o, p) => {
      if (p === 'intent-written') throw new Crash();
    });
    await expect(tx.delete('a')).rejects.toBeInstanceOf(Crash);
    pool.calls = [];
    pool.failAt = { index: 1, error: new Crash('before set_transaction_id') };
    await expect(open()).rejects.toBeInstanceOf(Crash);
    expect(pool.ids.has(1)).toBe(false);
    const { tx: again } = await open();
    expectAgreement(again);
    expect(again.devices.has('a')).toBe(false);
  });
});

describe('failures without a crash', () => {
  test('a refused message leaves nothing behind', async () => {
    await setup();
    const { tx } = await open();
    pool.calls = [];
    pool.failAt = { index: 0, error: new KernelError('EINVAL') };
    await expect(tx.create('n', { sizeBytes: bytes(1), origin: tx.devices.get('a')! })).rejects.toThrow('EINVAL');
    expectAgreement(tx);
    expect(tx.devices.has('n')).toBe(false);
  });

  test('a refused set_transaction_id rolls the create back', async () => {
    await setup();
    const { tx } = await open();
    pool.calls = [];
    pool.failAt = { index: 1, error: new KernelError('EIO') };
    await expect(tx.create('n', { sizeBytes: bytes(1) })).rejects.toThrow('EIO');
    expect(pool.calls).toEqual(['create_thin 2', 'set_transaction_id 2 3', 'delete 2']);
    expectAgreement(tx);
  });

  test('deleting a busy device keeps it', async () => {
    await setup();
    const { tx } = await open();
    pool.busy.add(1);
    await expect(tx.delete('a')).rejects.toThrow('EBUSY');
    expectAgreement(tx);
    expect(tx.devices.has('a')).toBe(true);
  });

  test('a delete whose preparation fails (device busy) keeps the device and clears the intent', async () => {
    await setup();
    const { tx } = await open();
    const busy = Object.assign(new Error('busy'), { code: 'EBUSY' });
    await expect(tx.delete('a', { beforeMessage: async () => Promise.reject(busy) })).rejects.toBe(busy);
    expectAgreement(tx);
    expect(tx.devices.has('a')).toBe(true);
  });

  test('a crashed delete of a device that is busy at reopen is rolled back', async () => {
    await setup();
    const { tx } = await open((_o, p) => {
      if (p === 'intent-written') throw new Crash();
    });
    await expect(tx.delete('a')).rejects.toBeInstanceOf(Crash);
    pool.busy.add(1);
    const { tx: again, reconciled } = await open();
    expect(reconciled.action).toBe('rolled-back');
    expectAgreement(again);
    expect(again.devices.has('a')).toBe(true);
  });

  test('an id taken in the pool but unknown to the metadata is skipped, not deleted', async () => {
    await setup();
    pool.ids.set(2, null);
    pool.ids.set(3, null);
    const { tx } = await open();
    const r = await tx.create('n', { sizeBytes: bytes(1) });
    expect(r.deviceId).toBe(4);
    expect(pool.ids.has(2) && pool.ids.has(3)).toBe(true);
  });

  test('duplicate and unknown hashes', async () => {
    await setup();
    const { tx } = await open();
    await expect(tx.create('a', { sizeBytes: bytes(1) })).rejects.toBeInstanceOf(DeviceExistsError);
    await expect(tx.delete('zz')).rejects.toBeInstanceOf(UnknownDeviceError);
    expect(pool.calls.filter((c) => !c.startsWith('create') && !c.startsWith('set'))).toEqual([]);
  });

  test('a pool changed behind our back is a mismatch, and nothing is touched', async () => {
    await setup();
    pool.txid = 9n;
    pool.calls = [];
    await expect(open()).rejects.toBeInstanceOf(TransactionMismatchError);
    expect(pool.calls).toEqual([]);
  });

  test('an intent whose txids match neither side is a mismatch', async () => {
    await setup();
    MetadataStore.open(dir).writeIntent({ op: 'create', hash: 'q', thinId: thinId(5), oldTransactionId: 7n, newTransactionId: 8n });
    await expect(open()).rejects.toThrow(/expected 7 or 8/);
  });

  test('device files without a pool state file are refused', async () => {
    await setup();
    rmSync(join(dir, 'deviceset-metadata'));
    await expect(open()).rejects.toThrow(/deviceset-metadata: missing/);
  });

  test('a new metadata folder adopts the pool transaction id', async () => {
    pool.txid = 41n;
    const { tx } = await open();
    expect(tx.transactionId).toBe(41n);
    await tx.create('', { sizeBytes: bytes(1) });
    expect(pool.txid).toBe(42n);
  });
});
