// An in-memory thin pool for the transaction protocol's unit tests: a fake of OUR PoolMessenger
// interface with the kernel's documented answers (EEXIST, ENODATA, EBUSY, EINVAL on a txid
// mismatch). The kernel tier runs the real one.
import type { PoolMessenger } from '../../src/thin/transaction.js';

export class KernelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

export class FakePool implements PoolMessenger {
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
