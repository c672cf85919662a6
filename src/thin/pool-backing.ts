// What a live pool stands on, from the kernel's view alone: its table names the data and metadata
// devices as maj:min; each is a loop device (then its backing file is what grows) or another block
// device (grown by someone else: an LV, a partition, a SAN volume). sysfs gives the loop's file
// path in full; LOOP_GET_STATUS64's st_dev/st_ino decides that the path still names that file.
import { readFileSync, statSync } from 'node:fs';
import { blockDeviceSizeBytes } from '../blk/index.js';
import { ensureNode } from '../ioctl/index.js';
import { loopDevice, loopStatus, type LoopDevice, type LoopOptions } from '../loop/index.js';
import { type Bytes, bytes } from '../structs/units.js';
import { PoolFileMissingError, PoolStateError } from './errors.js';

/** The major number of loop devices (Documentation/admin-guide/devices.txt). */
const LOOP_MAJOR = 7;
const DELETED = ' (deleted)';

export type BackingDevice = { kind: 'loop'; devt: string; loop: LoopDevice; file: string } | { kind: 'block'; devt: string; path: string };

/**
 * The device `devt` (`maj:min`, as a pool's table names it). `asBlock`: a loop device is taken as
 * any block device (a pool on dm.datadev=/dev/loopN: the user grows its file, not us).
 */
export function backingOf(devt: string, loopOpts: LoopOptions = {}, asBlock = false): BackingDevice {
  const m = /^(\d+):(\d+)$/.exec(devt);
  if (!m) throw new PoolStateError(devt, `the pool's table names ${JSON.stringify(devt)}, not a maj:min device`);
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const sys = `/sys/dev/block/${devt}`;
  if (major === LOOP_MAJOR && !asBlock) {
    const loop = loopDevice(minorToLoopNumber(sys, devt));
    const file = readFileSync(`${sys}/loop/backing_file`, 'utf8').replace(/\n$/, '');
    if (file.endsWith(DELETED))
      throw new PoolFileMissingError(file.slice(0, -DELETED.length), `the backing file of loop device ${devt} was removed`);
    const info = loopStatus(loop, loopOpts);
    let st: { dev: bigint; ino: bigint };
    try {
      st = statSync(file, { bigint: true });
    } catch {
      throw new PoolFileMissingError(file, `loop device ${loop.path} is bound to it, but the path names nothing now`);
    }
    if (st.dev !== info.lo_device || st.ino !== info.lo_inode)
      throw new PoolFileMissingError(file, `loop device ${loop.path} backs another file than the one this path names now (renamed?)`);
    // A window onto part of the file does not grow with it.
    if (info.lo_offset !== 0n || info.lo_sizelimit !== 0n)
      throw new PoolStateError(devt, `loop device ${loop.path} has an offset or size limit: growing ${file} would not grow it`);
    return { kind: 'loop', devt, loop, file };
  }
  const name = /^DEVNAME=(.*)$/m.exec(readFileSync(`${sys}/uevent`, 'utf8'))?.[1];
  if (!name) throw new PoolStateError(devt, `block device ${devt} has no DEVNAME in ${sys}/uevent`);
  const path = `/dev/${name}`;
  // Hosts without udev (containers, minimal guests) may lack the node: make it, as for loops.
  ensureNode(path, { type: 'block', major, minor, mode: 0o660 });
  return { kind: 'block', devt, path };
}

/** loopN from sysfs's device name (minor numbers of loops are not N on every kernel: max_part). */
function minorToLoopNumber(sys: string, devt: string): number {
  const name = /^DEVNAME=(.*)$/m.exec(readFileSync(`${sys}/uevent`, 'utf8'))?.[1] ?? '';
  const m = /^loop(\d+)$/.exec(name);
  if (!m) throw new PoolStateError(devt, `device ${devt} has the loop major but is ${JSON.stringify(name)}, not a loop device`);
  return Number(m[1]);
}

/** The size it can grow to now: the backing file's for a loop device, BLKGETSIZE64's for any other. */
export function availableBytes(b: BackingDevice): Bytes {
  return b.kind === 'loop' ? bytes(statSync(b.file, { bigint: true }).size) : blockDeviceSizeBytes(b.path);
}
