// The transaction protocol against an in-memory pool (a fake of OUR PoolMessenger interface, with
// the kernel's documented answers: EEXIST, ENODATA, EBUSY, EINVAL on a txid mismatch). A "crash"
// is an exception thrown from the step hook: the Transactions object is abandoned, the store and
// the pool are reopened as they are, and the invariant is checked.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  DeviceExistsError,
  PoolStateError,
  ThinIdCollisionError,
  TransactionMismatchError,
  UnknownDeviceError,
} from '../../src/thin/errors.js';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { TX_STEP_NAMES as CRASH_POINTS, type CrashPointName, type TxStep as CrashPoint } from '../../src/thin/crash-points.js';
import { Transactions } from '../../src/thin/transaction.js';
import { FakePool, KernelError } from './thin-fake-pool.js';
import { thinId } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';

class Crash extends Error {}

let dir: string;
let pool: FakePool;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-tx-'));
  pool = new FakePool();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function open(hook?: (p: CrashPointName) => void) {
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
        const { tx } = await open((p) => {
          if (p === `${op}:${point}`) throw new Crash(p);
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
    const { tx } = await open((p) => {
      if (p === 'create:message-sent') throw new Crash();
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
    const { tx } = await open((p) => {
      if (p === 'delete:intent-written') throw new Crash();
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

  test('a crashed delete of a device that is busy at reopen stays pending, never shown as a device', async () => {
    await setup();
    const { tx } = await open((p) => {
      if (p === 'delete:intent-written') throw new Crash();
    });
    await expect(tx.delete('a')).rejects.toBeInstanceOf(Crash);
    pool.busy.add(1);
    const { tx: again, reconciled } = await open();
    // The crash may have come after the discard: the delete only rolls forward, deferred.
    expect(reconciled.action).toBe('rolled-forward');
    expectAgreement(again);
    expect(again.devices.get('a')?.deleted).toBe(true);
    expect(MetadataStore.open(dir).readDevice('a')?.deleted).toBe(true);
    pool.busy.delete(1);
    await again.delete('a');
    expectAgreement(again);
    expect(pool.ids.has(1)).toBe(false);
  });

  test('a delete whose data is destroyed and that then finds the device busy stays pending', async () => {
    await setup();
    const { tx } = await open();
    const busy = Object.assign(new Error('busy'), { code: 'EBUSY' });
    pool.calls = [];
    const result = await tx.delete('a', {
      beforeMessage: async (destroying) => {
        destroying();
        throw busy;
      },
    });
    expect(result).toBe('deferred');
    expect(pool.calls).toEqual([]);
    expect(tx.devices.get('a')?.deleted).toBe(true);
    expectAgreement(tx);
    const { tx: again } = await open();
    expect(again.devices.get('a')?.deleted).toBe(true);
  });

  test('when the skips run out the create fails typed, and no id the pool answered EEXIST for is deleted', async () => {
    const { tx: first } = await open();
    await first.create('', { sizeBytes: bytes(4096) });
    for (const id of [1, 2, 3]) pool.ids.set(id, null);
    const { tx } = await Transactions.open(MetadataStore.open(dir), pool, { maxIdCollisions: 2 });
    pool.calls = [];
    const err = await tx.create('n', { sizeBytes: bytes(1) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ThinIdCollisionError);
    expect(err).toMatchObject({ code: 'EEXIST', tried: [1, 2, 3] });
    expect(pool.calls).toEqual(['create_thin 1', 'create_thin 2', 'create_thin 3']);
    expect([...pool.ids.keys()].sort()).toEqual([0, 1, 2, 3]);
    expect(existsSync(join(dir, 'transaction-metadata'))).toBe(false);
    expect(tx.transactionId).toBe(1n);
    expect(pool.txid).toBe(1n);
    // Nothing is left open: the next create goes on past the taken ids.
    const { tx: more } = await Transactions.open(MetadataStore.open(dir), pool, { maxIdCollisions: 5 });
    expect((await more.create('n', { sizeBytes: bytes(1) })).deviceId).toBe(4);
  });

  test('an intent whose message was never answered is cleared without a delete (the id may be foreign)', async () => {
    // A crash right after the pool answered EEXIST for id 2 (another user's) leaves this intent.
    await setup();
    pool.ids.set(2, null);
    MetadataStore.open(dir).writeIntent({
      op: 'create',
      hash: 'n',
      thinId: thinId(2),
      sizeBytes: bytes(1),
      oldTransactionId: 2n,
      newTransactionId: 3n,
    });
    pool.calls = [];
    const { tx, reconciled } = await open();
    expect(reconciled.action).toBe('rolled-back');
    expect(pool.calls).toEqual([]);
    expect(pool.ids.get(2)).toBe(null);
    expect(tx.devices.has('n')).toBe(false);
    expect(existsSync(join(dir, 'transaction-metadata'))).toBe(false);
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

describe('a read-only or needs_check pool', () => {
  for (const mode of ['ro', 'needs_check'] as const) {
    test(`${mode}: open leaves the intent for a later open and refuses every change`, async () => {
      await setup();
      const store = MetadataStore.open(dir);
      const intent = { op: 'delete' as const, hash: 'a', thinId: thinId(1), oldTransactionId: 2n, newTransactionId: 3n };
      store.writeIntent(intent);
      pool.calls = [];
      const { tx, reconciled } = await Transactions.open(store, pool, { readOnly: mode, poolName: 'p' });
      expect(reconciled).toEqual({ action: 'pending', intent });
      expect(pool.calls).toEqual([]);
      expect(store.readIntent()).toEqual(intent);
      // The device may already be discarded: it is not offered.
      expect(tx.devices.get('a')?.deleted).toBe(true);
      expect(store.readDevice('a')?.deleted).toBe(false);
      for (const change of [
        () => tx.create('n', { sizeBytes: bytes(1) }),
        () => tx.delete(''),
        async () => tx.updateDevice({ ...tx.devices.get('')!, initialized: false }),
      ]) {
        const e = await change().catch((err: unknown) => err);
        expect(e).toBeInstanceOf(PoolStateError);
        expect((e as Error).message).toContain(mode);
      }
      expect(pool.calls).toEqual([]);
      expect(store.readIntent()).toEqual(intent);
      // Writable again: the intent is acted on.
      const { tx: again, reconciled: r2 } = await open();
      expect(r2.action).toBe('rolled-forward');
      expectAgreement(again);
      expect(again.devices.has('a')).toBe(false);
    });
  }
});

describe("a crash at each of reconcile's own steps is recovered by the next open", () => {
  const RECONCILE_POINTS = [
    'rollback:prepared',
    'rollback:message-sent',
    'rollforward:prepared',
    'rollforward:message-sent',
    'rollforward:txid-set',
    'rollforward:committed',
  ] as const;
  for (const op of ['create', 'snapshot', 'delete'] as const) {
    for (const point of CRASH_POINTS.filter((p) => p !== 'intent-cleared')) {
      test(`${op} / ${point}, then reconcile crashes at each of its steps`, async () => {
        const reached: string[] = [];
        for (const again of RECONCILE_POINTS) {
          rmSync(dir, { recursive: true, force: true });
          dir = mkdtempSync(join(tmpdir(), 'thin-tx-'));
          pool = new FakePool();
          await setup();
          const { tx } = await open((p) => {
            if (p === `${op}:${point}`) throw new Crash(p);
          });
          await expect(run(tx, op)).rejects.toBeInstanceOf(Crash);
          const crashed = await open((p) => {
            if (p === again) throw new Crash(p);
          }).then(
            () => false,
            (e: unknown) => e instanceof Crash || Promise.reject(e),
          );
          if (crashed) reached.push(again);
          const { tx: after } = await open();
          expectAgreement(after);
          if (op === 'delete') expect(after.devices.has('a')).toBe(false);
          else expect(after.devices.has('n')).toBe(survives(op, point));
        }
        expect(reached.length).toBeGreaterThan(0);
      });
    }
  }

  test('every reconcile step is reached by some crash', async () => {
    const reached = new Set<string>();
    for (const op of ['create', 'snapshot', 'delete'] as const) {
      for (const point of CRASH_POINTS) {
        rmSync(dir, { recursive: true, force: true });
        dir = mkdtempSync(join(tmpdir(), 'thin-tx-'));
        pool = new FakePool();
        await setup();
        const { tx } = await open((p) => {
          if (p === `${op}:${point}`) throw new Crash(p);
        });
        await expect(run(tx, op)).rejects.toBeInstanceOf(Crash);
        await open((p) => void reached.add(p));
      }
    }
    for (const p of RECONCILE_POINTS) expect(reached, p).toContain(p);
  });
});

describe('the crash window the protocol leaves open (see transaction.ts)', () => {
  test("a crash between the pool's create answer and its record leaves the id in the pool; a later create skips it", async () => {
    await setup();
    const store = MetadataStore.open(dir);
    const real = store.writeIntent.bind(store);
    store.writeIntent = (i) => {
      if (i.created) throw new Crash('before the answer is recorded');
      real(i);
    };
    const { tx } = await Transactions.open(store, pool, {
      // no in-process recovery: a crash is simulated by abandoning the object
      prepare: async () => Promise.reject(new Crash('process gone')),
    });
    await expect(tx.create('n', { sizeBytes: bytes(1) })).rejects.toThrow();
    expect(pool.ids.has(2)).toBe(true);
    pool.calls = [];
    const { tx: again, reconciled } = await open();
    expect(reconciled.action).toBe('rolled-back');
    expect(pool.calls).toEqual([]);
    expect(pool.ids.has(2)).toBe(true);
    expect(again.devices.has('n')).toBe(false);
    const r = await again.create('n', { sizeBytes: bytes(1) });
    expect(pool.calls).toEqual(['create_thin 2', 'create_thin 3', 'set_transaction_id 2 3']);
    expect(r.deviceId).toBe(3);
  });

  test('an intent on disk is never replaced: a second transaction is refused until reopen', async () => {
    await setup();
    const { tx } = await open();
    const intent = { op: 'create' as const, hash: 'x', thinId: thinId(7), oldTransactionId: 2n, newTransactionId: 3n };
    MetadataStore.open(dir).writeIntent(intent);
    await expect(tx.create('n', { sizeBytes: bytes(1) })).rejects.toBeInstanceOf(PoolStateError);
    await expect(tx.delete('a')).rejects.toThrow(/reopened/);
    expect(MetadataStore.open(dir).readIntent()).toEqual(intent);
  });
});
