// What `devmapper dm` computes beside the library's calls: tables from the command line in the
// order given, dmsetup's view of devices without a live table, and the hints of its errors (who
// holds a busy device, which target the kernel lacks, which thin id a pool lacks).
import { readFileSync } from 'node:fs';
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceInfo } from '../dm/info.js';
import { deviceName, deviceUuid, type DeviceName, type DeviceRef, type DeviceUuid } from '../dm/names.js';
import { isThinTarget, parseTable, type Target } from '../dm/targets.js';
import { DmError } from '../ioctl/errors.js';
import { formatDev, type DevT } from '../structs/dev.js';
import { findHolders } from '../thin/holders.js';
import { flag, str, type ArgToken, type Command, type Invocation } from './command.js';
import type { InfoView } from './dmsetup-format.js';
import { explain } from './errors.js';
import { OperationError, UsageError } from './usage.js';

/** The device's info as every dm command's --json shows it: with the read-ahead, as `dm info`. */
export function infoView(i: DeviceInfo): InfoView {
  return { ...i, readAheadSectors: readAheadSectors(i.dev) };
}

function readAheadSectors(dev: DevT): number | undefined {
  try {
    return Number(readFileSync(`/sys/dev/block/${formatDev(dev)}/bdi/read_ahead_kb`, 'utf8').trim()) * 2;
  } catch {
    return undefined;
  }
}

/** The live table's dependencies; none for a device without a live table (the kernel then has no list to give). */
export function depsOf(d: DeviceMapper, ref: DeviceRef): DevT[] {
  const i = d.info(ref);
  return i?.liveTable ? d.deps(ref) : [];
}

/** A block device's kernel name (loop2, dm-4) from sysfs, for `deps -o devname`. */
export function blockDeviceName(dev: DevT): string | undefined {
  try {
    return /^DEVNAME=(.*)$/m.exec(readFileSync(`/sys/dev/block/${formatDev(dev)}/uevent`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/**
 * The table of `--table LINE` and `--table-file F|-` options, in command-line order; undefined when
 * none was given. Checked here so that a bad table is a usage error naming its line.
 */
export function tableFrom(tokens: readonly ArgToken[]): Target[] | undefined {
  const lines: string[] = [];
  let any = false;
  for (const t of tokens) {
    if (t.kind !== 'option' || t.value === undefined) continue;
    if (t.name === 'table') lines.push(t.value);
    else if (t.name === 'table-file') {
      try {
        lines.push(...readFileSync(t.value === '-' ? 0 : t.value, 'utf8').split('\n'));
      } catch (err) {
        throw explain(err);
      }
    } else continue;
    any = true;
  }
  if (!any) return undefined;
  const kept = lines.filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  const targets: Target[] = [];
  let next = 0n;
  for (const [k, line] of kept.entries()) {
    const where = `table line ${k + 1} '${line.trim()}'`;
    let t: Target;
    try {
      [t] = parseTable(line) as [Target];
    } catch (err) {
      throw new UsageError(`${where}: ${(err as Error).message.replace(/^invalid table line ".*?": /, '')}`);
    }
    if (t.lengthSectors === 0n) throw new UsageError(`${where}: length 0: a target maps at least one sector`);
    if (t.startSector !== next) {
      throw new UsageError(`${where}: starts at sector ${t.startSector}, expected ${next}: targets must follow each other from sector 0`);
    }
    next = t.startSector + t.lengthSectors;
    targets.push(t);
  }
  if (targets.length === 0) throw new UsageError('the table has no lines');
  return targets;
}

/** Why a device is busy: its holders by dm name, its mounts, its openers. `lasting`: waiting will not free it. */
export function busyReason(d: DeviceMapper, info: DeviceInfo): { text: string; hint: string; lasting: boolean } {
  const found = findHolders(info);
  const dmByMinor = new Map(d.list().map((e) => [`dm-${e.dev.minor}`, e.name]));
  const holders = found.holders.map((h) => dmByMinor.get(h) ?? h).sort();
  const mounts = found.mounts;
  const parts: string[] = [];
  if (holders.length > 0) parts.push(`held by ${holders.join(', ')}`);
  if (mounts.length > 0) parts.push(`mounted on ${mounts.join(', ')}`);
  if (info.openCount > 0 && parts.length === 0) parts.push(`open count ${info.openCount}`);
  if (info.deferredRemove) parts.push('a deferred remove is pending');
  if (parts.length === 0) parts.push('it was busy for a moment');
  const hint =
    holders.length > 0
      ? `remove ${holders.join(', ')} first`
      : mounts.length > 0
        ? `unmount ${mounts.join(', ')} first`
        : info.openCount > 0
          ? 'close what holds it open, or use --deferred (it goes with its last user)'
          : 'retry, or use --retry';
  return { text: parts.join('; '), hint, lasting: holders.length > 0 || mounts.length > 0 || info.deferredRemove };
}

/** A create or load error with what the user can do about it. */
export function createHint(
  d: DeviceMapper,
  err: unknown,
  ctx: { name: DeviceName; uuid: DeviceUuid | undefined; table: readonly Target[] },
): Error {
  if (!(err instanceof DmError)) return explain(err);
  if (err.code === 'EBUSY' && err.command === 'DM_DEV_CREATE') {
    if (d.info({ name: ctx.name }) !== null) {
      return new OperationError(
        `EBUSY: device ${ctx.name} already exists (see 'devmapper dm info ${ctx.name}'; remove it first or choose another name)`,
      );
    }
    if (ctx.uuid !== undefined && d.info({ uuid: ctx.uuid }) !== null) {
      return new OperationError(`EBUSY: a device with uuid ${ctx.uuid} already exists (choose another uuid)`);
    }
  }
  if (err.code === 'EINVAL') {
    const missing = [...new Set(ctx.table.map((t) => t.type))].filter((type) => d.targetVersion(type) === null);
    if (missing.length > 0) {
      const list = missing.map((m) => `'${m}'`).join(', ');
      return new OperationError(
        `EINVAL: the kernel has no target type ${list} (not in 'devmapper dm targets'; load the module that provides it, e.g. modprobe dm-${missing[0]})`,
      );
    }
  }
  if (err.code === 'ENODATA') {
    const thin = ctx.table.find(isThinTarget);
    if (thin) {
      // The pool as the table names it (a path or maj:min), shown by its dm name when it has one.
      const byDev = new Map(d.list().map((e) => [formatDev(e.dev), e.name]));
      const pool = byDev.get(thin.poolDevice) ?? thin.poolDevice.replace(/^\/dev\/mapper\//, '');
      return new OperationError(
        `ENODATA: the pool ${pool} has no thin device with id ${thin.thinId} (create it first: devmapper dm message ${pool} 0 create_thin ${thin.thinId})`,
      );
    }
  }
  return explain(err);
}

// ---- what every dm command uses ----------------------------------------------------------------

/** Opens the control node for one command and closes it whatever happens. */
export async function withDm<T>(fn: (d: DeviceMapper) => T | Promise<T>): Promise<T> {
  const d = DeviceMapper.open();
  try {
    return await fn(d);
  } catch (err) {
    throw explain(err);
  } finally {
    d.close();
  }
}

export const isJson = (inv: Invocation): boolean => flag(inv.values, 'json');
/** NAME, the first positional (the command's positionals make it present), checked as the kernel would. */
export const name0 = (inv: Invocation): DeviceName => checked(deviceName, inv.positionals[0] as string);
/** NAME when given. */
export const optName0 = (inv: Invocation): DeviceName | undefined => checked(deviceName, inv.positionals[0]);

/** A device named by NAME or `-u UUID`. */
export function refOf(inv: Invocation): DeviceRef {
  const uuid = str(inv.values, 'uuid');
  const name = inv.positionals[0];
  if (uuid !== undefined && name !== undefined) throw new UsageError('give NAME or -u UUID, not both');
  if (uuid !== undefined) return { uuid: checked(deviceUuid, uuid) };
  if (name === undefined) throw new UsageError('missing device name');
  return { name: checked(deviceName, name) };
}

export function mustInfo(d: DeviceMapper, ref: DeviceRef): DeviceInfo {
  const i = d.info(ref);
  const label = 'name' in ref ? ref.name : 'uuid' in ref ? `with uuid ${ref.uuid}` : '';
  if (i === null) throw new OperationError(`ENXIO: device ${label} does not exist (see 'devmapper dm ls')`);
  return i;
}

/**
 * A name or uuid from the command line, checked once here (a value the kernel would refuse is a
 * usage error, before anything is opened) and typed for the layers below.
 */
export function checked<T>(check: (s: string) => T, value: string): T;
export function checked<T>(check: (s: string) => T, value: string | undefined): T | undefined;
export function checked<T>(check: (s: string) => T, value: string | undefined): T | undefined {
  if (value === undefined) return undefined;
  try {
    return check(value);
  } catch (err) {
    throw explain(err);
  }
}

export const sortedNames = (d: DeviceMapper): DeviceName[] =>
  d
    .list()
    .map((e) => e.name)
    .sort();

export const ONE: Command['positionals'] = { min: 1, max: 1, missing: 'device name' };
export const NONE: Command['positionals'] = { min: 0, max: 0 };
export const OPTIONAL: Command['positionals'] = { min: 0, max: 1 };
