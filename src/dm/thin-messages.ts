// dm-thin pool messages (thin-provisioning.rst "Pool messages"), sent to the pool at sector 0 with
// their arguments checked again at this public edge (a JavaScript caller has no types): thin ids
// are 24-bit, transaction ids 64-bit.
import type { DeviceMapper } from './device-mapper.js';
import { InvalidArgumentError } from './errors.js';
import { thinId, u64, type DeviceRef, type ThinId } from './names.js';

type Messenger = Pick<DeviceMapper, 'message'>;

export function createThin(dm: Messenger, pool: DeviceRef, id: ThinId): void {
  dm.message(pool, 0n, `create_thin ${thinId(id)}`);
}

/** A snapshot `id` of `originId`; the origin must be suspended (or inactive) while this runs. */
export function createSnap(dm: Messenger, pool: DeviceRef, id: ThinId, originId: ThinId): void {
  thinId(id);
  thinId(originId);
  if (id === originId) throw new InvalidArgumentError('thin id', id, 'a snapshot needs an id other than its origin');
  dm.message(pool, 0n, `create_snap ${id} ${originId}`);
}

export function deleteThin(dm: Messenger, pool: DeviceRef, id: ThinId): void {
  dm.message(pool, 0n, `delete ${thinId(id)}`);
}

/** Sets the pool's transaction id from `old` (must match, or the kernel answers EINVAL) to `next`. */
export function setTransactionId(dm: Messenger, pool: DeviceRef, old: bigint, next: bigint): void {
  dm.message(pool, 0n, `set_transaction_id ${u64(old, 'old transaction id')} ${u64(next, 'new transaction id')}`);
}

export function reserveMetadataSnap(dm: Messenger, pool: DeviceRef): void {
  dm.message(pool, 0n, 'reserve_metadata_snap');
}

export function releaseMetadataSnap(dm: Messenger, pool: DeviceRef): void {
  dm.message(pool, 0n, 'release_metadata_snap');
}
