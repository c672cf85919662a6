// The transaction protocol when the metadata store's writes fail (ENOSPC) at each write of an
// operation. Either the failure is repaired at once (pool and metadata agree, nothing open), or the
// Transactions object refuses every later change until the pool is reopened, and the open intent
// is never replaced. After a reopen the pool and the metadata agree in every case.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { PoolReopenRequiredError, PoolStateError } from '../../src/thin/errors.js';
import { MetadataStore } from '../../src/thin/metadata-store.js';
import { Transactions } from '../../src/thin/transaction.js';
import { bytes } from '../../src/structs/units.js';
import { FakePool } from './thin-fake-pool.js';

const WRITES = ['writeIntent', 'writeDevice', 'writePoolState', 'removeDevice', 'clearIntent'] as const;
type Write = (typeof WRITES)[number];

/** Make the store's `failAt`-th write (counting from 0) throw ENOSPC; returns the writes made. */
function failWrite(store: MetadataStore, failAt: number): Write[] {
  const log: Write[] = [];
  const methods = store as unknown as Record<Write, (...args: unknown[]) => unknown>;
  for (const name of WRITES) {
    const real = methods[name].bind(store);
    methods[name] = (...args: unknown[]) => {
      log.push(name);
      if (log.length - 1 === failAt) throw Object.assign(new Error(`ENOSPC: no space left on device (${name})`), { code: 'ENOSPC' });
      return real(...args);
    };
  }
  return log;
}

let dir: string;
let pool: FakePool;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'thin-txf-'));
  pool = new FakePool();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const intentPath = () => join(dir, 'transaction-metadata');
const intentText = () => (existsSync(intentPath()) ? readFileSync(intentPath(), 'utf8') : null);

/** Base (id 0) and "a" (id 1), txid 2. */
async function setup(): Promise<void> {
  const { tx } = await Transactions.open(MetadataStore.open(dir), pool);
  await tx.create('', { sizeBytes: bytes(1 << 20) });
  await tx.create('a', { sizeBytes: bytes(1 << 20), origin: tx.devices.get('')! });
}

type Op = 'create' | 'snapshot' | 'delete';
function run(tx: Transactions, op: Op): Promise<unknown> {
  if (op === 'create') return tx.create('n', { sizeBytes: bytes(4096) });
  if (op === 'snapshot') return tx.create('n', { sizeBytes: bytes(4096), origin: tx.devices.get('a')! });
  return tx.delete('a');
}

function agree(tx: Transactions): void {
  const metaIds = [...tx.devices.values()].map((d) => d.deviceId).sort((a, b) => a - b);
  expect([...pool.ids.keys()].sort((a, b) => a - b)).toEqual(metaIds);
  expect(tx.transactionId).toBe(pool.txid);
  expect(existsSync(intentPath())).toBe(false);
}

/** How many store writes an operation makes when nothing fails. */
async function writesOf(op: Op): Promise<number> {
  const saved = { dir, pool };
  dir = mkdtempSync(join(tmpdir(), 'thin-txf-'));
  pool = new FakePool();
  try {
    await setup();
    const store = MetadataStore.open(dir);
    const log = failWrite(store, -1);
    const { tx } = await Transactions.open(store, pool);
    await run(tx, op);
    return log.length;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    ({ dir, pool } = saved);
  }
}

describe('ENOSPC at each write of an operation', () => {
  for (const op of ['create', 'snapshot', 'delete'] as const) {
    test(`${op}: every write`, async () => {
      const n = await writesOf(op);
      expect(n).toBeGreaterThanOrEqual(4);
      for (let failAt = 0; failAt < n; failAt++) {
        rmSync(dir, { recursive: true, force: true });
        dir = mkdtempSync(join(tmpdir(), 'thin-txf-'));
        pool = new FakePool();
        await setup();
        const store = MetadataStore.open(dir);
        const log = failWrite(store, failAt);
        const { tx } = await Transactions.open(store, pool);
        const first = await run(tx, op).then(
          () => null,
          (e: unknown) => e,
        );
        const where = `${op}, write ${failAt} (${log[failAt]})`;
        expect(first, where).toMatchObject({ code: 'ENOSPC' });
        // The next change: either the failure was repaired (agreement, nothing open) or refused.
        const before = intentText();
        const idsBefore = [...pool.ids.keys()];
        const next = await tx.create('m', { sizeBytes: bytes(4096), origin: tx.devices.get('')! }).then(
          () => null,
          (e: unknown) => e,
        );
        if (next === null) {
          expect(before, where).toBe(null);
          agree(tx);
        } else {
          expect(next, where).toBeInstanceOf(PoolReopenRequiredError);
          expect(next, where).toBeInstanceOf(PoolStateError);
          expect((next as Error).message, where).toMatch(/reopened.*ENOSPC/);
          expect(intentText(), where).toBe(before);
          expect([...pool.ids.keys()], where).toEqual(idsBefore);
          await expect(tx.delete(''), where).rejects.toBeInstanceOf(PoolReopenRequiredError);
        }
        // Reopen: agreement in every case, and the pool keeps working.
        const { tx: again } = await Transactions.open(MetadataStore.open(dir), pool);
        agree(again);
        await again.create('z', { sizeBytes: bytes(4096), origin: again.devices.get('')! });
        agree(again);
      }
    });
  }

  test('ENOSPC writing the device file after set_transaction_id: refused until reopened, then rolled forward', async () => {
    await setup();
    const store = MetadataStore.open(dir);
    // writes of a create: intent, its answer, device file, pool state, clear
    const log = failWrite(store, 2);
    const { tx } = await Transactions.open(store, pool);
    await expect(tx.create('n', { sizeBytes: bytes(4096) })).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(log[2]).toBe('writeDevice');
    expect(pool.txid).toBe(3n);
    const e = await tx.create('m', { sizeBytes: bytes(4096) }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(PoolReopenRequiredError);
    expect((e as PoolReopenRequiredError).firstFailure).toMatchObject({ code: 'ENOSPC' });
    expect(pool.ids.has(3)).toBe(false);
    const { tx: again, reconciled } = await Transactions.open(MetadataStore.open(dir), pool);
    expect(reconciled.action).toBe('rolled-forward');
    agree(again);
    expect(again.devices.get('n')?.deviceId).toBe(2);
  });
});
