// Every change of the pool's thin devices is a transaction between two stores that cannot be
// updated together: the kernel's pool (which commits each message on its own) and our metadata.
//
//   1. write the intent {op, hash, thin id, old txid, new txid} (atomic, durable; never over
//      another intent: one transaction at a time)
//      (a delete then discards and deactivates the device: once the discard began it is going)
//   2. send the message: create_thin / create_snap / delete
//      create/snapshot: on success, rewrite the intent with `created` (the id is ours);
//      on EEXIST (an id the pool holds and the metadata does not) the pool is unchanged: clear the
//      intent and try the next id, at most maxIdCollisions times, then ThinIdCollisionError
//   3. set_transaction_id old new
//   4. commit our metadata: the device file, then the pool state (next id, txid = new)
//   5. clear the intent
//
// The pool's transaction id says whether step 3 happened, so on open (and after any failure in
// this process) `reconcile` decides from (intent, metadata txid, pool txid):
//   - no intent:                    pool txid must equal the metadata's
//   - metadata txid == new:         step 4 done, finish (idempotent) and clear the intent
//   - pool txid == new:             roll forward: redo step 4, clear
//   - pool txid == old, create:     roll back: `delete` the thin id only if the intent says
//                                   `created` (ENODATA = already gone), clear
//   - pool txid == old, delete:     roll forward: `delete` (ENODATA = already gone), step 3, 4, 5;
//                                   if the kernel says EBUSY, the record is marked deleted (a
//                                   deletion retried on open): the data may already be discarded
//   - anything else:                TransactionMismatchError, nothing touched
// Each of those actions is idempotent, so a crash during reconcile is reconciled next time.
//
// Why `created`: EEXIST and a successful create_thin leave the pool at the same transaction id,
// so an intent alone cannot tell our new id from another user's. Reconcile deletes an id only when
// the pool's success answer was recorded; a crash between that answer and its record leaves the new
// (empty) id in the pool, unknown to the metadata. That leak is the price of never deleting an id
// the kernel may have refused us: a later create answered EEXIST for it skips it.
//
// A failure this process cannot repair (the metadata cannot be written, a recovery fails) leaves
// the intent on disk for the next open and makes this object refuse every later change
// (PoolReopenRequiredError). A read-only or needs_check pool answers messages with EOPNOTSUPP: open
// then leaves any intent for a later open, and every change is refused (PoolReadOnlyError).
import { join } from 'node:path';
import {
  DeviceExistsError,
  errnoOf,
  MetadataError,
  PoolReadOnlyError,
  PoolReopenRequiredError,
  PoolStateError,
  ThinIdCollisionError,
  TransactionMismatchError,
  UnknownDeviceError,
} from './errors.js';
import { thinId, type ThinId } from '../dm/names.js';
import { log } from '../ioctl/index.js';
import type { CrashHook, CrashPointName, TxStep } from './crash-points.js';
import { type Bytes, bytes } from '../structs/units.js';
import { IdAllocator, next as nextId } from './id-allocator.js';
import {
  BASE_HASH,
  POOL_STATE_FILE,
  type DeviceRecord,
  type Intent,
  type IntentOp,
  type MetadataStore,
  type PoolState,
} from './metadata-store.js';

/** What the transaction protocol needs of a pool; the real one sends dm messages. */
export interface PoolMessenger {
  poolTransactionId(): Promise<bigint>;
  /** Throws an error with code 'EEXIST' if the id is taken. */
  createThin(thinId: ThinId): Promise<void>;
  createSnap(thinId: ThinId, originId: ThinId): Promise<void>;
  /** Throws an error with code 'ENODATA' if the id does not exist, 'EBUSY' if it is open. */
  deleteThin(thinId: ThinId): Promise<void>;
  setTransactionId(oldId: bigint, newId: bigint): Promise<void>;
}

/** Called after each step (crash-points.ts); tests throw (or kill the process) here to simulate a crash. */
export type StepHook = CrashHook;

/** The thin-pool status modes in which the pool refuses changes. */
export type ReadOnlyMode = 'ro' | 'needs_check';

export type ReconcileResult =
  | { action: 'none' }
  | { action: 'rolled-forward' | 'rolled-back'; intent: Intent }
  /** A read-only pool: the intent is left for an open of the pool once it is writable. */
  | { action: 'pending'; intent: Intent };

export interface TransactionOptions {
  hook?: StepHook;
  /** Before reconcile acts on an intent: e.g. deactivate its device, resume a suspended origin. */
  prepare?: (intent: Intent) => Promise<void>;
  /** How many taken ids (EEXIST: unknown to our metadata) to skip before giving up. */
  maxIdCollisions?: number;
  /** The pool's name, for errors. */
  poolName?: string;
  /** The pool is read-only: open leaves any intent alone and every change is refused. */
  readOnly?: ReadOnlyMode;
}

/** What a delete did: the thin id is gone, or the device was busy after its data was destroyed. */
export type DeleteResult = 'deleted' | 'deferred';

export class Transactions {
  readonly devices: Map<string, DeviceRecord>;
  readonly ids: IdAllocator;
  private state: PoolState;
  /** The intent this process wrote and has not yet cleared (with what it learned since). */
  private open: Intent | null = null;
  /** The failure that left a transaction open: every later change is refused. */
  private failure: unknown = null;

  private constructor(
    private readonly store: MetadataStore,
    private readonly pool: PoolMessenger,
    private readonly opts: TransactionOptions,
    state: PoolState,
    devices: Map<string, DeviceRecord>,
  ) {
    this.state = state;
    this.devices = devices;
    this.ids = new IdAllocator(state.nextDeviceId, new Set([...devices.values()].map((d) => d.deviceId)));
  }

  /**
   * Load the metadata, reconcile any open intent with the pool, and check the transaction ids.
   * A read-only pool (opts.readOnly) is only checked: an intent stays for a later open.
   */
  static async open(
    store: MetadataStore,
    pool: PoolMessenger,
    opts: TransactionOptions = {},
  ): Promise<{ tx: Transactions; reconciled: ReconcileResult }> {
    let state = store.readPoolState();
    const devices = store.readDevices();
    if (state === null) {
      if (devices.size > 0 || store.readIntent() !== null) {
        throw new MetadataError(join(store.dir, POOL_STATE_FILE), 'missing, but the folder holds device files or an intent');
      }
      if (opts.readOnly) throw new PoolReadOnlyError(opts.poolName ?? '(pool)', opts.readOnly, 'start a new metadata folder');
      // A new metadata folder adopts the pool's current transaction id.
      state = { nextDeviceId: thinId(0), transactionId: await pool.poolTransactionId() };
      store.writePoolState(state);
    }
    const tx = new Transactions(store, pool, opts, state, devices);
    const reconciled = opts.readOnly ? await tx.checkReadOnly() : await tx.reconcile();
    return { tx, reconciled };
  }

  get transactionId(): bigint {
    return this.state.transactionId;
  }

  get nextDeviceId(): number {
    return this.state.nextDeviceId;
  }

  /** The pool's read-only mode, if it was opened read-only. */
  get readOnly(): ReadOnlyMode | undefined {
    return this.opts.readOnly;
  }

  private get poolName(): string {
    return this.opts.poolName ?? '(pool)';
  }

  private step(point: CrashPointName): void {
    this.opts.hook?.(point);
  }

  private txStep(op: IntentOp, step: TxStep): void {
    this.step(`${op}:${step}`);
  }

  /** Refuse a change when the pool is read-only or an earlier failure left a transaction open. */
  private writable(what: string): void {
    if (this.failure !== null) throw new PoolReopenRequiredError(this.poolName, this.failure);
    if (this.opts.readOnly) throw new PoolReadOnlyError(this.poolName, this.opts.readOnly, what);
  }

  /** Run one transaction; a failure that escapes it with its intent still open poisons the object. */
  private async transaction<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (this.open !== null && this.failure === null) this.failure = e;
      throw e;
    }
  }

  /** Step 1: the intent, durable; never over another one. */
  private begin(intent: Intent): void {
    const found = this.store.hasIntent() ? this.store.readIntent() : null;
    if (found !== null) {
      this.failure ??= new PoolStateError(this.poolName, `an open ${found.op} of ${JSON.stringify(found.hash)} is on disk`);
      throw new PoolReopenRequiredError(this.poolName, this.failure);
    }
    this.open = intent;
    try {
      this.store.writeIntent(intent);
    } catch (e) {
      // Nothing was sent: the transaction is over if no intent is left on disk.
      this.end();
      throw e;
    }
  }

  /** Step 5 (or the end of a transaction that changed nothing). */
  private end(): void {
    this.store.clearIntent();
    this.open = null;
  }

  /**
   * Create a thin device (no origin: create_thin) or a snapshot of `origin` (create_snap).
   * `aroundMessage` wraps the message, e.g. to suspend and resume an active origin.
   */
  async create(
    hash: string,
    opts: { sizeBytes: Bytes; origin?: DeviceRecord; aroundMessage?: (send: () => Promise<void>) => Promise<void> },
  ): Promise<DeviceRecord> {
    this.writable(`create ${JSON.stringify(hash)}`);
    if (this.devices.has(hash)) throw new DeviceExistsError(hash);
    return this.transaction(async () => {
      const origin = opts.origin;
      const op: IntentOp = origin ? 'snapshot' : 'create';
      const maxCollisions = this.opts.maxIdCollisions ?? 1000;
      const taken: ThinId[] = [];
      let from: number = this.ids.next;
      for (;;) {
        const thinId = this.ids.peek(from);
        const intent: Intent = {
          op,
          hash,
          thinId,
          sizeBytes: opts.sizeBytes,
          oldTransactionId: this.state.transactionId,
          newTransactionId: this.state.transactionId + 1n,
        };
        if (origin) {
          intent.originId = origin.deviceId;
          intent.originHash = origin.hash;
        }
        this.begin(intent);
        this.txStep(op, 'intent-written');
        const send = origin ? () => this.pool.createSnap(thinId, origin.deviceId) : () => this.pool.createThin(thinId);
        try {
          await (opts.aroundMessage ? opts.aroundMessage(send) : send());
        } catch (e) {
          if (errnoOf(e) === 'EEXIST') {
            // The id is in the pool but not in our metadata (another user of the pool, or a leak)
            // and the pool did not change: never ours to delete. Skip it.
            this.end();
            taken.push(thinId);
            this.step(`${op}:id-collision`);
            if (taken.length > maxCollisions) throw new ThinIdCollisionError(this.poolName, taken);
            from = thinId + 1;
            continue;
          }
          // Refused: the pool did not create the id.
          await this.recoverAfter(e);
          throw e;
        }
        intent.created = true;
        try {
          this.store.writeIntent(intent);
        } catch (e) {
          // We know the id is ours: undo it now.
          await this.recoverAfter(e);
          throw e;
        }
        this.txStep(op, 'message-sent');
        await this.finish(intent);
        const rec = this.devices.get(hash);
        if (!rec) throw new Error(`internal: ${hash} missing after commit`);
        return rec;
      }
    });
  }

  /**
   * Delete a device's thin id. `beforeMessage` runs once the intent is durable (discard,
   * deactivate) and calls `destroying()` before it destroys data: a failure before that keeps the
   * device; from then on the delete only goes forward, and a busy device is left as a pending
   * deletion (its record marked deleted, retried on open): 'deferred'.
   */
  async delete(hash: string, opts: { beforeMessage?: (destroying: () => void) => Promise<void> } = {}): Promise<DeleteResult> {
    this.writable(`delete ${JSON.stringify(hash)}`);
    const rec = this.devices.get(hash);
    if (!rec) throw new UnknownDeviceError(hash);
    return this.transaction(async () => {
      const intent: Intent = {
        op: 'delete',
        hash,
        thinId: rec.deviceId,
        oldTransactionId: this.state.transactionId,
        newTransactionId: this.state.transactionId + 1n,
      };
      this.begin(intent);
      this.txStep('delete', 'intent-written');
      let destroyed = false;
      try {
        await opts.beforeMessage?.(() => {
          destroyed = true;
        });
        await this.pool.deleteThin(rec.deviceId);
      } catch (e) {
        if (errnoOf(e) !== 'ENODATA') {
          if (!destroyed) {
            // Nothing changed in the pool and no data was touched: drop the intent, keep the device.
            this.end();
            throw e;
          }
          if (errnoOf(e) === 'EBUSY') {
            this.defer(intent);
            return 'deferred';
          }
          // Past the point of no return: reconcile completes it (or defers it) if it can.
          const r = await this.recoverAfter(e);
          if (r.action === 'rolled-forward') return this.devices.has(hash) ? 'deferred' : 'deleted';
          throw e;
        }
      }
      this.txStep('delete', 'message-sent');
      await this.finish(intent);
      return 'deleted';
    });
  }

  /** Update a device's record outside any pool transaction (e.g. the base became initialized). */
  updateDevice(rec: DeviceRecord): void {
    this.writable(`update ${JSON.stringify(rec.hash)}`);
    if (!this.devices.has(rec.hash)) throw new UnknownDeviceError(rec.hash);
    this.store.writeDevice(rec);
    this.devices.set(rec.hash, rec);
  }

  /** Steps 3..5; on a failure of set_transaction_id, reconcile and rethrow (unless that completed it). */
  private async finish(intent: Intent): Promise<void> {
    try {
      await this.pool.setTransactionId(intent.oldTransactionId, intent.newTransactionId);
    } catch (e) {
      const r = await this.recoverAfter(e);
      if (r.action === 'rolled-forward') return;
      throw e;
    }
    this.txStep(intent.op, 'txid-set');
    this.commit(intent, true);
    this.end();
    this.txStep(intent.op, 'intent-cleared');
  }

  /**
   * After a failure with an intent open: bring pool and metadata back into agreement from what
   * this process knows, before reporting `cause`. If that fails too the intent stays for the next
   * open and the object is unusable.
   */
  private async recoverAfter(cause: unknown): Promise<ReconcileResult> {
    const intent = this.open;
    if (intent === null) throw new Error('internal: recovery without an open intent');
    try {
      const r = await this.settle(intent);
      this.open = null;
      return r;
    } catch (e) {
      this.failure = cause;
      throw new AggregateError(
        [cause, e],
        `${(cause as Error).message}; and recovery failed (the intent stays for the next open): ${(e as Error).message}`,
      );
    }
  }

  /** A delete past the point of no return that finds the device busy: pending, retried on open. */
  private defer(intent: Intent): void {
    const rec = this.devices.get(intent.hash) ?? this.store.readDevice(intent.hash);
    if (rec && rec.deviceId === intent.thinId && !rec.deleted) {
      const pending = { ...rec, deleted: true };
      this.store.writeDevice(pending);
      this.devices.set(intent.hash, pending);
    }
    this.end();
  }

  /** Step 4, idempotent. */
  private commit(intent: Intent, hooks: boolean): void {
    const { op, hash, thinId } = intent;
    if (op === 'delete') {
      const rec = this.devices.get(hash) ?? this.store.readDevice(hash);
      if (rec && rec.deviceId === thinId) {
        this.store.removeDevice(hash);
        this.devices.delete(hash);
        this.ids.release(thinId);
      }
    } else {
      const rec: DeviceRecord = {
        hash,
        deviceId: thinId,
        sizeBytes: intent.sizeBytes ?? bytes(0),
        transactionId: intent.newTransactionId,
        // The base is initialized once formatted; snapshots inherit their origin's file system.
        initialized: hash !== BASE_HASH,
        deleted: false,
      };
      this.store.writeDevice(rec);
      this.devices.set(hash, rec);
      this.ids.take(thinId);
    }
    if (hooks) this.txStep(op, 'device-committed');
    const next = op === 'delete' ? this.ids.next : nextId(thinId);
    this.state = { nextDeviceId: next, transactionId: intent.newTransactionId };
    this.ids.next = next;
    this.store.writePoolState(this.state);
    if (hooks) this.txStep(op, 'state-committed');
  }

  /** Bring the pool and the metadata into agreement; see the protocol at the top of this file. */
  private async reconcile(): Promise<ReconcileResult> {
    const intent = this.store.readIntent();
    return intent === null ? this.agreed() : this.settle(intent);
  }

  /** No intent: the pool's transaction id must be the metadata's. */
  private async agreed(): Promise<ReconcileResult> {
    const poolTx = await this.pool.poolTransactionId();
    if (poolTx !== this.state.transactionId) throw new TransactionMismatchError(this.poolName, poolTx, this.state.transactionId);
    return { action: 'none' };
  }

  /** A read-only pool: check the transaction ids, leave an intent as it is, hide a pending delete's device. */
  private async checkReadOnly(): Promise<ReconcileResult> {
    const intent = this.store.readIntent();
    if (intent === null) return this.agreed();
    const poolTx = await this.pool.poolTransactionId();
    const metaTx = this.state.transactionId;
    const known = [intent.oldTransactionId, intent.newTransactionId];
    if (!known.includes(poolTx) || !known.includes(metaTx)) throw this.mismatch(intent, poolTx);
    const rec = this.devices.get(intent.hash);
    // The device may be discarded already: never offered as a device (in memory only).
    if (intent.op === 'delete' && rec && rec.deviceId === intent.thinId) this.devices.set(intent.hash, { ...rec, deleted: true });
    return { action: 'pending', intent };
  }

  private mismatch(intent: Intent, poolTx: bigint): TransactionMismatchError {
    return new TransactionMismatchError(
      this.poolName,
      poolTx,
      this.state.transactionId,
      `open ${intent.op} of ${JSON.stringify(intent.hash)} expected ${intent.oldTransactionId} or ${intent.newTransactionId}`,
    );
  }

  /** Reconcile one intent (from disk, or this process's own with what it learned). */
  private async settle(intent: Intent): Promise<ReconcileResult> {
    const poolTx = await this.pool.poolTransactionId();
    const metaTx = this.state.transactionId;
    log.info('reconcile: open intent', { op: intent.op, hash: intent.hash, metadata_txid: metaTx, pool_txid: poolTx });
    const forward = async (): Promise<ReconcileResult> => {
      await this.opts.prepare?.(intent);
      this.step('rollforward:prepared');
      this.commit(intent, false);
      this.step('rollforward:committed');
      this.end();
      return { action: 'rolled-forward', intent };
    };
    if (metaTx === intent.newTransactionId) {
      if (poolTx !== intent.newTransactionId) throw this.mismatch(intent, poolTx);
      return forward();
    }
    if (metaTx !== intent.oldTransactionId) throw this.mismatch(intent, poolTx);
    if (poolTx === intent.newTransactionId) return forward();
    if (poolTx !== intent.oldTransactionId) throw this.mismatch(intent, poolTx);
    await this.opts.prepare?.(intent);
    if (intent.op === 'delete') {
      this.step('rollforward:prepared');
      try {
        await this.pool.deleteThin(intent.thinId);
      } catch (e) {
        if (errnoOf(e) === 'EBUSY') {
          // The device may already be discarded: it stays a pending deletion, never a device.
          log.info('reconcile: thin device busy, its delete deferred', { hash: intent.hash, thin_id: intent.thinId });
          this.defer(intent);
          return { action: 'rolled-forward', intent };
        }
        if (errnoOf(e) !== 'ENODATA') throw e;
      }
      this.step('rollforward:message-sent');
      await this.pool.setTransactionId(intent.oldTransactionId, intent.newTransactionId);
      this.step('rollforward:txid-set');
      this.commit(intent, false);
      this.step('rollforward:committed');
      this.end();
      return { action: 'rolled-forward', intent };
    }
    this.step('rollback:prepared');
    if (intent.created === true) {
      // The pool answered the create: the id is ours.
      try {
        await this.pool.deleteThin(intent.thinId);
      } catch (e) {
        if (errnoOf(e) !== 'ENODATA') throw e;
      }
      this.step('rollback:message-sent');
    }
    // Step 4 cannot have begun (the pool never reached the new txid), but be strict: a device
    // file naming this very transaction is dropped with the thin id it names.
    const stray = this.store.readDevice(intent.hash);
    if (stray && stray.deviceId === intent.thinId && stray.transactionId === intent.newTransactionId) {
      this.store.removeDevice(intent.hash);
      this.devices.delete(intent.hash);
      this.ids.release(intent.thinId);
    }
    this.end();
    return { action: 'rolled-back', intent };
  }
}
