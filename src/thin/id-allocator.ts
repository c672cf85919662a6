// dm-thin device ids are 24-bit (thin-provisioning.rst). The allocator hands out the next id
// after the last one used, wrapping at 2^24 and skipping ids the metadata already holds, so a
// deleted id is not reused at once (a crash could still have it in flight).
import { THIN_ID_MAX, type ThinId } from '../dm/names.js';

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
    public next: ThinId,
    /** Ids held by the metadata. */
    private readonly used: Set<ThinId> = new Set(),
  ) {
    if (!Number.isInteger(next) || next < 0 || next > THIN_ID_MAX) this.next = 0 as ThinId;
  }

  /** The first free id at or after `next` (wrapping); does not reserve it. */
  peek(after: number = this.next): ThinId {
    let id = (after % (THIN_ID_MAX + 1)) as ThinId;
    for (let n = 0; n <= THIN_ID_MAX; n++) {
      if (!this.used.has(id)) return id;
      id = next(id);
    }
    throw new IdAllocatorFullError();
  }

  /** Record `id` as used and move `next` past it. */
  take(id: ThinId): void {
    this.used.add(id);
    this.next = next(id);
  }

  release(id: ThinId): void {
    this.used.delete(id);
  }

  has(id: ThinId): boolean {
    return this.used.has(id);
  }
}

/** The id after `id`, wrapping at 2^24. */
export function next(id: ThinId): ThinId {
  return (id === THIN_ID_MAX ? 0 : id + 1) as ThinId;
}
