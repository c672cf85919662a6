// Every change of the pool's thin devices is a transaction between two stores that cannot be
// updated together: the kernel's pool (which commits each message on its own) and our metadata.
//
//   1. write the intent {op, hash, thin id, old txid, new txid} (atomic, durable)
//      (a delete then discards and deactivates the device: past this point it is going)
//   2. send the message: create_thin / create_snap / delete
//   3. set_transaction_id old new
//   4. commit our metadata: the device file, then the pool state (next id, txid = new)
//   5. clear the intent
//
// The pool's transaction id says whether step 3 happened, so on open (and after any failure in
// this process) `reconcile` decides from (intent, metadata txid, pool txid):
//   - no intent:                    pool txid must equal the metadata's
//   - metadata txid == new:         step 4 done, finish (idempotent) and clear the intent
//   - pool txid == new:             roll forward: redo step 4, clear
//   - pool txid == old, create:     roll back: `delete` the thin id (ENODATA = never created), clear
//   - pool txid == old, delete:     roll forward: `delete` (ENODATA = already gone), step 3, 4, 5;
//                                   if the kernel says EBUSY, roll back (the device stays)
//   - anything else:                TransactionMismatchError, nothing touched
// Each of those actions is idempotent, so a crash during reconcile is reconciled next time.
import { join } from 'node:path';
import { DeviceExistsError, errnoOf, MetadataError, TransactionMismatchError, UnknownDeviceError } from './errors.js';
import { thinId, type ThinId } from '../dm/names.js';
import type { TxStep } from './crash-points.js';
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
export type StepHook = (op: IntentOp, point: TxStep) => void;

export type ReconcileResult = { action: 'none' } | { action: 'rolled-forward' | 'rolled-back'; intent: Intent };

export interface TransactionOptions {
  hook?: StepHook;
  /** Before reconcile acts on an intent: e.g. deactivate its device, resume a suspended origin. */
  prepare?: (intent: Intent) => Promise<void>;
  /** How many taken ids (EEXIST: unknown to our metadata) to skip before giving up. */
  maxIdCollisions?: number;
}

export class Transactions {
  readonly devices: Map<string, DeviceRecord>;
  readonly ids: IdAllocator;
  private state: PoolState;

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

  /** Load the metadata, reconcile any open intent with the pool, and check the transaction ids. */
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
      // A new metadata folder adopts the pool's current transaction id.
      state = { nextDeviceId: thinId(0), transactionId: await pool.poolTransactionId() };
      store.writePoolState(state);
    }
    const tx = new Transactions(store, pool, opts, state, devices);
    const reconciled = await tx.reconcile();
    return { tx, reconciled };
  }

  get transactionId(): bigint {
    return this.state.transactionId;
  }

  get nextDeviceId(): number {
    return this.state.nextDeviceId;
  }

  private step(op: IntentOp, point: TxStep): void {
    this.opts.hook?.(op, point);
  }

  /**
   * Create a thin device (no origin: create_thin) or a snapshot of `origin` (create_snap).
   * `aroundMessage` wraps the message, e.g. to suspend and resume an active origin.
   */
  async create(
    hash: string,
    opts: { sizeBytes: Bytes; origin?: DeviceRecord; aroundMessage?: (send: () => Promise<void>) => Promise<void> },
  ): Promise<DeviceRecord> {
    if (this.devices.has(hash)) throw new DeviceExistsError(hash);
    const origin = opts.origin;
    const op: IntentOp = origin ? 'snapshot' : 'create';
    const maxCollisions = this.opts.maxIdCollisions ?? 1000;
    let from: number = this.ids.next;
    for (let collisions = 0; ; collisions++) {
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
      this.store.writeIntent(intent);
      this.step(op, 'intent-written');
      const send = origin ? () => this.pool.createSnap(thinId, origin.deviceId) : () => this.pool.createThin(thinId);
      try {
        await (opts.aroundMessage ? opts.aroundMessage(send) : send());
      } catch (e) {
        if (errnoOf(e) === 'EEXIST' && collisions < maxCollisions) {
          // The id is in the pool but not in our metadata (another user of the pool, or a leak):
          // leave it alone and try the next one. The next intent replaces this one.
          from = thinId + 1;
          continue;
        }
        await this.recoverAfter(e);
        throw e;
      }
      this.step(op, 'message-sent');
      await this.finish(intent);
      const rec = this.devices.get(hash);
      if (!rec) throw new Error(`internal: ${hash} missing after commit`);
      return rec;
    }
  }

  /**
   * Delete a device's thin id. `beforeMessage` runs once the intent is durable (discard, deactivate):
   * from then on a crash completes the delete rather than leaving a half-wiped device.
   */
  async delete(hash: string, opts: { beforeMessage?: () => Promise<void> } = {}): Promise<void> {
    const rec = this.devices.get(hash);
    if (!rec) throw new UnknownDeviceError(hash);
    const intent: Intent = {
      op: 'delete',
      hash,
      thinId: rec.deviceId,
      oldTransactionId: this.state.transactionId,
      newTransactionId: this.state.transactionId + 1n,
    };
    this.store.writeIntent(intent);
    this.step('delete', 'intent-written');
    try {
      await opts.beforeMessage?.();
      await this.pool.deleteThin(rec.deviceId);
    } catch (e) {
      if (errnoOf(e) !== 'ENODATA') {
        // Nothing changed in the pool: drop the intent, keep the device.
        this.store.clearIntent();
        throw e;
      }
    }
    this.step('delete', 'message-sent');
    await this.finish(intent);
  }

  /** Update a device's record outside any pool transaction (e.g. the base became initialized). */
  updateDevice(rec: DeviceRecord): void {
    if (!this.devices.has(rec.hash)) throw new UnknownDeviceError(rec.hash);
    this.store.writeDevice(rec);
    this.devices.set(rec.hash, rec);
  }

  /** Steps 3..5; on a failure of set_transaction_id, reconcile (roll back) and rethrow. */
  private async finish(intent: Intent): Promise<void> {
    try {
      await this.pool.setTransactionId(intent.oldTransactionId, intent.newTransactionId);
    } catch (e) {
      await this.recoverAfter(e);
      throw e;
    }
    this.step(intent.op, 'txid-set');
    this.commit(intent, true);
    this.store.clearIntent();
    this.step(intent.op, 'intent-cleared');
  }

  /** After a failed message: bring pool and metadata back into agreement before reporting `cause`. */
  private async recoverAfter(cause: unknown): Promise<void> {
    try {
      await this.reconcile();
    } catch (e) {
      throw new AggregateError(
        [cause, e],
        `${(cause as Error).message}; and recovery failed (the intent stays for the next open): ${(e as Error).message}`,
      );
    }
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
    if (hooks) this.step(op, 'device-committed');
    const next = op === 'delete' ? this.ids.next : nextId(thinId);
    this.state = { nextDeviceId: next, transactionId: intent.newTransactionId };
    this.ids.next = next;
    this.store.writePoolState(this.state);
    if (hooks) this.step(op, 'state-committed');
  }

  /** Bring the pool and the metadata into agreement; see the protocol at the top of this file. */
  async reconcile(poolName = '(pool)'): Promise<ReconcileResult> {
    const intent = this.store.readIntent();
    const poolTx = await this.pool.poolTransactionId();
    const metaTx = this.state.transactionId;
    if (intent === null) {
      if (poolTx !== metaTx) throw new TransactionMismatchError(poolName, poolTx, metaTx);
      return { action: 'none' };
    }
    const mismatch = () =>
      new TransactionMismatchError(
        poolName,
        poolTx,
        metaTx,
        `open ${intent.op} of ${JSON.stringify(intent.hash)} expected ${intent.oldTransactionId} or ${intent.newTransactionId}`,
      );
    if (metaTx === intent.newTransactionId) {
      if (poolTx !== intent.newTransactionId) throw mismatch();
      await this.opts.prepare?.(intent);
      this.commit(intent, false);
      this.store.clearIntent();
      return { action: 'rolled-forward', intent };
    }
    if (metaTx !== intent.oldTransactionId) throw mismatch();
    if (poolTx === intent.newTransactionId) {
      await this.opts.prepare?.(intent);
      this.commit(intent, false);
      this.store.clearIntent();
      return { action: 'rolled-forward', intent };
    }
    if (poolTx !== intent.oldTransactionId) throw mismatch();
    await this.opts.prepare?.(intent);
    if (intent.op === 'delete') {
      try {
        await this.pool.deleteThin(intent.thinId);
      } catch (e) {
        if (errnoOf(e) === 'EBUSY') {
          this.store.clearIntent();
          return { action: 'rolled-back', intent };
        }
        if (errnoOf(e) !== 'ENODATA') throw e;
      }
      await this.pool.setTransactionId(intent.oldTransactionId, intent.newTransactionId);
      this.commit(intent, false);
      this.store.clearIntent();
      return { action: 'rolled-forward', intent };
    }
    try {
      await this.pool.deleteThin(intent.thinId);
    } catch (e) {
      if (errnoOf(e) !== 'ENODATA') throw e;
    }
    // Step 4 cannot have begun (the pool never reached the new txid), but be strict: a device
    // file naming this very transaction is dropped with the thin id it names.
    const stray = this.store.readDevice(intent.hash);
    if (stray && stray.deviceId === intent.thinId && stray.transactionId === intent.newTransactionId) {
      this.store.removeDevice(intent.hash);
      this.devices.delete(intent.hash);
      this.ids.release(intent.thinId);
    }
    this.store.clearIntent();
    return { action: 'rolled-back', intent };
  }
}
