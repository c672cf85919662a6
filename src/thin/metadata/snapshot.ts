// Reading a LIVE pool's metadata: the kernel rewrites its btrees while it runs, so a reader takes
// a metadata snapshot first (reserve_metadata_snap: the pool commits, then keeps a copy of its
// superblock whose roots it never frees) and reads those held roots, never the live ones. The
// snapshot is released whatever the reader did. A snapshot someone else holds is theirs: the pool
// takes only one (reserve answers EBUSY), and it is never released here.
//
// Which file to read: dm-bufio writes the metadata device with bios, bypassing its page cache, so
// a buffered read of /dev/loopN may see stale pages. A loop device's backing FILE is read instead
// (loop writes go through the file's page cache); any other block device is read after its buffer
// cache is flushed (openMetadataBlocks does that).
import { readFileSync } from 'node:fs';
import type { DeviceMapper } from '../../dm/device-mapper.js';
import { describeRef, type DeviceRef } from '../../dm/names.js';
import { parseThinPoolStatus } from '../../dm/status/thin-pool.js';
import { releaseMetadataSnap, reserveMetadataSnap } from '../../dm/thin-messages.js';
import { errnoOf, MetadataSnapshotBusyError, PoolFileMissingError } from '../errors.js';
import { type MetadataBlocks, withMetadataBlocks } from './blocks.js';

/** The major number of loop devices (Documentation/admin-guide/devices.txt). */
const LOOP_MAJOR = 7;

/**
 * What to read for a metadata device given as `maj:min` (a pool table's form): a loop device's
 * backing file, else the block device's /dev node. A path is returned as it is.
 */
export function metadataReadPath(device: string): string {
  const m = /^(\d+):(\d+)$/.exec(device);
  if (!m) return device;
  const sys = `/sys/dev/block/${device}`;
  if (Number(m[1]) === LOOP_MAJOR) {
    const file = readFileSync(`${sys}/loop/backing_file`, 'utf8').replace(/\n$/, '');
    if (file.endsWith(' (deleted)')) throw new PoolFileMissingError(file, `the backing file of loop device ${device} was removed`);
    return file;
  }
  const name = /^DEVNAME=(.*)$/m.exec(readFileSync(`${sys}/uevent`, 'utf8'))?.[1];
  if (!name) throw new PoolFileMissingError(`${sys}/uevent`, `block device ${device} has no DEVNAME: no /dev node to read`);
  return `/dev/${name}`;
}

/** The pool's held metadata root as its status says (null: none, or the status is unreadable). */
function heldRootOf(dm: DeviceMapper, pool: DeviceRef): bigint | null {
  try {
    const line = dm.status(pool, { noFlush: true })[0];
    if (line?.type !== 'thin-pool') return null;
    const s = parseThinPoolStatus(line.params);
    return s.state === 'ok' ? s.heldMetadataRoot : null;
  } catch {
    return null; // only for the message of the error being thrown
  }
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/**
 * A live pool: reserve_metadata_snap, `fn` over the metadata read from `metadataDevice` (read it
 * with `root: 'held'`), release_metadata_snap (always, also when `fn` throws). A snapshot held by
 * someone else: MetadataSnapshotBusyError (EBUSY), theirs left alone.
 */
export function withMetadataSnapshot<T>(dm: DeviceMapper, pool: DeviceRef, metadataDevice: string, fn: (blocks: MetadataBlocks) => T): T {
  try {
    reserveMetadataSnap(dm, pool);
  } catch (e) {
    if (errnoOf(e) === 'EBUSY') {
      throw new MetadataSnapshotBusyError(describeRef(pool), heldRootOf(dm, pool));
    }
    throw e;
  }
  let result: T | undefined;
  let failure: { error: unknown } | null = null;
  try {
    result = withMetadataBlocks(metadataDevice, fn);
  } catch (e) {
    failure = { error: e };
  }
  try {
    releaseMetadataSnap(dm, pool);
  } catch (e) {
    if (failure === null) throw e;
    throw new AggregateError([failure.error, e], `${messageOf(failure.error)}; and release_metadata_snap failed too: ${messageOf(e)}`);
  }
  if (failure !== null) throw failure.error;
  return result as T;
}
