// Typed device-mapper targets and the table-line syntax that dmsetup and the kernel use:
// `<start> <length> <type> <params...>`, sectors of 512 bytes. The parameter grammars are the
// kernel's (Documentation/admin-guide/device-mapper/{linear,thin-provisioning,zero}.rst).
import { DM_MAX_TYPE_NAME } from '../structs/dm-ioctl.js';
import { InvalidArgumentError } from './errors.js';
import { type Sectors, sectors, u64 } from '../structs/units.js';
import { type ThinId, thinId } from './names.js';

interface TargetBase {
  startSector: Sectors;
  lengthSectors: Sectors;
}
export interface LinearTarget extends TargetBase {
  type: 'linear';
  /** "maj:min" or a block device path. */
  device: string;
  offsetSectors: Sectors;
}
export interface ThinPoolTarget extends TargetBase {
  type: 'thin-pool';
  metadataDevice: string;
  dataDevice: string;
  /** 128..2097152 sectors (64 KiB..1 GiB), a multiple of 128. */
  dataBlockSizeSectors: number;
  lowWaterMarkBlocks: bigint;
  /** skip_block_zeroing, ignore_discard, no_discard_passdown, read_only, error_if_no_space. */
  features: string[];
}
export interface ThinTarget extends TargetBase {
  type: 'thin';
  poolDevice: string;
  thinId: ThinId;
  externalOriginDevice?: string;
}
export interface ZeroTarget extends TargetBase {
  type: 'zero';
}
export interface ErrorTarget extends TargetBase {
  type: 'error';
}
/** Any other target type, its parameters kept as the text the kernel takes. */
export interface GenericTarget extends TargetBase {
  type: string;
  params: string;
}
export type Target = LinearTarget | ThinPoolTarget | ThinTarget | ZeroTarget | ErrorTarget | GenericTarget;

/** The thin-pool data block size bounds (DATA_DEV_BLOCK_SIZE_MIN/MAX_SECTORS in dm-thin.c). */
export const THIN_POOL_BLOCK_MIN_SECTORS = 128;
export const THIN_POOL_BLOCK_MAX_SECTORS = 2097152;

const TYPED = new Set(['linear', 'thin-pool', 'thin', 'zero', 'error']);

/** True when `t` is a target the library has no typed form for. */
export function isGenericTarget(t: Target): t is GenericTarget {
  return 'params' in t && !TYPED.has(t.type);
}

/** The targets parsed into typed fields: every member of Target but GenericTarget. */
export type TypedTarget = Exclude<Target, GenericTarget>;

/**
 * Narrows `t` to the typed target named `type`. A bare `t.type === 'thin-pool'` cannot narrow
 * Target: GenericTarget's `type: string` admits every name, and TypeScript has no "string except
 * these literals". The typed members are the ones without `params`, so a GenericTarget spelled with
 * a typed name (`{ type: 'linear', params }`) is not mistaken for one.
 */
export function isTargetType<K extends TypedTarget['type']>(t: Target, type: K): t is Extract<TypedTarget, { type: K }> {
  return t.type === type && !('params' in t);
}

export function isLinearTarget(t: Target): t is LinearTarget {
  return isTargetType(t, 'linear');
}

export function isThinPoolTarget(t: Target): t is ThinPoolTarget {
  return isTargetType(t, 'thin-pool');
}

export function isThinTarget(t: Target): t is ThinTarget {
  return isTargetType(t, 'thin');
}

function split(params: string): string[] {
  const trimmed = params.trim();
  return trimmed === '' ? [] : trimmed.split(/\s+/);
}

function bad(type: string, params: string, reason: string): InvalidArgumentError {
  return new InvalidArgumentError(`${type} target parameters`, params, reason);
}

function uint(type: string, params: string, field: string, s: string | undefined): bigint {
  if (s === undefined || !/^\d+$/.test(s)) throw bad(type, params, `${field} must be a non-negative integer, got ${s ?? 'nothing'}`);
  return u64(BigInt(s), `${type} ${field}`);
}

function checkDevice(type: string, field: string, dev: string): string {
  if (typeof dev !== 'string' || dev === '' || /\s/.test(dev)) {
    throw new InvalidArgumentError(`${type} ${field}`, dev, 'must be "maj:min" or a device path without spaces');
  }
  return dev;
}

function checkBlockSize(n: number): number {
  if (!Number.isInteger(n) || n < THIN_POOL_BLOCK_MIN_SECTORS || n > THIN_POOL_BLOCK_MAX_SECTORS || n % THIN_POOL_BLOCK_MIN_SECTORS !== 0) {
    throw new InvalidArgumentError(
      'thin-pool data block size',
      n,
      `must be ${THIN_POOL_BLOCK_MIN_SECTORS}..${THIN_POOL_BLOCK_MAX_SECTORS} sectors in multiples of ${THIN_POOL_BLOCK_MIN_SECTORS}`,
    );
  }
  return n;
}

function checkType(type: string): string {
  if (typeof type !== 'string' || type === '' || /\s/.test(type) || Buffer.byteLength(type, 'utf8') >= DM_MAX_TYPE_NAME) {
    throw new InvalidArgumentError('target type', type, `must be 1..${DM_MAX_TYPE_NAME - 1} bytes without spaces`);
  }
  return type;
}

/** A target from its type and parameter text, typed when the library knows the type. */
export function parseTarget(type: string, startSector: bigint, lengthSectors: bigint, params: string): Target {
  checkType(type);
  const base = { startSector: sectors(startSector, 'start sector'), lengthSectors: sectors(lengthSectors, 'length') };
  const args = split(params);
  switch (type) {
    case 'linear': {
      if (args.length !== 2) throw bad(type, params, `takes <device> <offset>, got ${args.length} arguments`);
      return {
        type,
        ...base,
        device: checkDevice(type, 'device', args[0]!),
        offsetSectors: sectors(uint(type, params, 'offset', args[1])),
      };
    }
    case 'thin-pool': {
      if (args.length < 4)
        throw bad(type, params, 'takes <metadata dev> <data dev> <block size> <low water mark> [<#features> <feature>...]');
      const blockSize = uint(type, params, 'data block size', args[2]);
      const features: string[] = [];
      if (args.length > 4) {
        const count = Number(uint(type, params, 'feature count', args[4]));
        if (args.length !== 5 + count) throw bad(type, params, `feature count ${count} but ${args.length - 5} features follow`);
        features.push(...args.slice(5));
      }
      return {
        type,
        ...base,
        metadataDevice: checkDevice(type, 'metadata device', args[0]!),
        dataDevice: checkDevice(type, 'data device', args[1]!),
        dataBlockSizeSectors: checkBlockSize(Number(blockSize)),
        lowWaterMarkBlocks: uint(type, params, 'low water mark', args[3]),
        features: checkFeatures(features),
      };
    }
    case 'thin': {
      if (args.length !== 2 && args.length !== 3) throw bad(type, params, 'takes <pool dev> <dev id> [<external origin dev>]');
      const id = uint(type, params, 'device id', args[1]);
      const t: ThinTarget = { type, ...base, poolDevice: checkDevice(type, 'pool device', args[0]!), thinId: thinId(Number(id)) };
      if (args[2] !== undefined) t.externalOriginDevice = checkDevice(type, 'external origin device', args[2]);
      return t;
    }
    case 'zero':
    case 'error': {
      if (args.length !== 0) throw bad(type, params, 'takes no parameters');
      const t: ZeroTarget | ErrorTarget = type === 'zero' ? { type, ...base } : { type, ...base };
      return t;
    }
    default:
      return { type, ...base, params: params.trim() };
  }
}

function checkFeatures(features: string[]): string[] {
  for (const f of features) {
    if (!/^[a-z_]+$/.test(f)) throw new InvalidArgumentError('thin-pool feature', f, 'must be a word such as skip_block_zeroing');
  }
  return features;
}

/** The parameter text the kernel takes for `t` (TABLE_LOAD), validating the typed fields. */
export function formatTargetParams(t: Target): string {
  if ('params' in t) {
    checkType(t.type);
    if (t.params.includes('\0')) throw new InvalidArgumentError(`${t.type} target parameters`, t.params, 'contain a NUL byte');
    return t.params;
  }
  switch (t.type) {
    case 'linear':
      return `${checkDevice('linear', 'device', t.device)} ${sectors(t.offsetSectors, 'linear offset')}`;
    case 'thin-pool': {
      const head = [
        checkDevice('thin-pool', 'metadata device', t.metadataDevice),
        checkDevice('thin-pool', 'data device', t.dataDevice),
        checkBlockSize(t.dataBlockSizeSectors),
        u64(t.lowWaterMarkBlocks, 'thin-pool low water mark'),
      ].join(' ');
      // No feature count when there are none: the kernel takes the short form, as dmsetup users write it.
      return t.features.length === 0 ? head : `${head} ${t.features.length} ${checkFeatures(t.features).join(' ')}`;
    }
    case 'thin': {
      const head = `${checkDevice('thin', 'pool device', t.poolDevice)} ${thinId(t.thinId)}`;
      return t.externalOriginDevice === undefined
        ? head
        : `${head} ${checkDevice('thin', 'external origin device', t.externalOriginDevice)}`;
    }
    case 'zero':
    case 'error':
      return '';
  }
}

/** A target as a dmsetup table line, without a trailing space. */
export function formatTableLine(t: Target): string {
  const params = formatTargetParams(t);
  checkLineHead(t);
  const head = `${t.startSector} ${t.lengthSectors} ${t.type}`;
  return params === '' ? head : `${head} ${params}`;
}

/** The `<start> <length> <type>` of a target's line: u64 sector counts and a type the kernel takes. */
function checkLineHead(t: Target): void {
  sectors(t.startSector, 'start sector');
  sectors(t.lengthSectors, 'length');
  checkType(t.type);
}

/** One dmsetup table line: `<start> <length> <type> [<params>]`. */
export function parseTableLine(line: string): Target {
  const m = /^\s*(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/s.exec(line);
  if (!m) throw new InvalidArgumentError('table line', line, 'expected "<start> <length> <type> [<params>]"');
  const [, start, length, type, params] = m;
  if (!/^\d+$/.test(start!)) throw new InvalidArgumentError('table line', line, `start sector ${start} is not a number`);
  if (!/^\d+$/.test(length!)) throw new InvalidArgumentError('table line', line, `length ${length} is not a number`);
  return parseTarget(type!, BigInt(start!), BigInt(length!), params ?? '');
}

/** A whole table, one target per line; blank lines and `#` comments are skipped. */
export function parseTable(text: string): Target[] {
  const targets: Target[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    targets.push(parseTableLine(line));
  }
  return targets;
}

/** Checks a table before TABLE_LOAD: every target valid, starts contiguous from 0, lengths > 0. */
export function checkTable(targets: readonly Target[]): void {
  checkedTableParams(targets);
}

/**
 * checkTable's checks, giving back each target's parameter text: what DM_TABLE_LOAD sends, formatted
 * once (the snapshot cycle loads a table each time).
 */
export function checkedTableParams(targets: readonly Target[]): string[] {
  const params: string[] = [];
  let next = 0n;
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i] as Target;
    // formatTableLine's checks, in its order, without joining the line.
    params.push(formatTargetParams(t));
    checkLineHead(t);
    if (t.lengthSectors === 0n) throw new InvalidArgumentError(`target ${i} length`, t.lengthSectors, 'must be > 0');
    if (t.startSector !== next) {
      throw new InvalidArgumentError(
        `target ${i} start sector`,
        t.startSector,
        `must be ${next}: targets must be contiguous from sector 0`,
      );
    }
    next = t.startSector + t.lengthSectors;
  }
  return params;
}
