// dm-thin device ids are 24-bit (thin-provisioning.rst). The allocator hands out the next id
// after the last one used, wrapping at 2^24 and skipping ids the metadata already holds, so a
// deleted id is not reused at once (a crash could still have it in flight).
import { THIN_ID_MAX } from '../dm/names.js';

export class IdAllocatorFullError extends Error {
  override readonly name = 'IdAllocatorFullError';
  readonly code = 'ENOSPC';
  constructor() {
    super(`all ${THIN_ID_MAX + 1} thin device ids are in use`);
  }
}

export class IdAllocator {
  constructor(
    /** The next id to try, as persisted in the pool state. */
    public next: number,
    /** Ids held by the metadata. */
    private readonly used: Set<number> = new Set(),
  ) {
    if (!Number.isInteger(next) || next < 0 || next > THIN_ID_MAX) this.next = 0;
  }

  /** The first free id at or after `next` (wrapping); does not reserve it. */
  peek(after: number = this.next): number {
    let id = after % (THIN_ID_MAX + 1);
    for (let n = 0; n <= THIN_ID_MAX; n++) {
      if (!this.used.has(id)) return id;
      id = id === THIN_ID_MAX ? 0 : id + 1;
    }
    throw new IdAllocatorFullError();
  }

  /** Record `id` as used and move `next` past it. */
  take(id: number): void {
    this.used.add(id);
    this.next = id === THIN_ID_MAX ? 0 : id + 1;
  }

  release(id: number): void {
    this.used.delete(id);
  }

  has(id: number): boolean {
    return this.used.has(id);
  }
}
