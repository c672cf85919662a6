// Errors of the thin-pool manager. Each carries an errno-like `code` so callers can branch on it
// the way they do on DmError, and names the pool or device it is about.
import { basename } from 'node:path';
import type { MetadataProblem } from './metadata/checker.js';

/** A dm.* option (or typed option) that is unknown, malformed or contradicts another. */
export class OptionError extends Error {
  override readonly name: string = 'OptionError';
  readonly code = 'EINVAL';
  constructor(
    /** The option key as Docker spells it, e.g. `dm.basesize`. */
    readonly key: string,
    readonly value: string | undefined,
    reason: string,
  ) {
    super(value === undefined ? `${key}: ${reason}` : `${key}=${JSON.stringify(value)}: ${reason}`);
  }
}

/** A device hash the store cannot hold (empty, '/', too long, reserved). */
export class InvalidHashError extends Error {
  override readonly name = 'InvalidHashError';
  readonly code = 'EINVAL';
  constructor(
    readonly hash: string,
    reason: string,
  ) {
    super(`invalid device hash ${JSON.stringify(hash.length > 80 ? `${hash.slice(0, 77)}...` : hash)}: ${reason}`);
  }
}

/** Another live process owns the home folder. */
export class PoolLockedError extends Error {
  override readonly name = 'PoolLockedError';
  readonly code = 'EWOULDBLOCK';
  constructor(
    readonly lockPath: string,
    /** The holder's pid as written in the lock file. */
    readonly holderPid: number,
  ) {
    super(`${lockPath} is held by process ${holderPid}: one process at a time may own a pool's home folder`);
  }
}

/** The on-disk metadata is unreadable or inconsistent with itself. */
export class MetadataError extends Error {
  override readonly name = 'MetadataError';
  readonly code = 'EUCLEAN';
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: ${reason}`);
  }
}

/** An inactive pool's metadata fails the check (thin_check's job): the pool is not activated. */
export class MetadataCheckError extends Error {
  override readonly name = 'MetadataCheckError';
  readonly code = 'EUCLEAN';
  constructor(
    readonly poolName: string,
    /** The metadata file or device that was read. */
    readonly path: string,
    readonly problems: readonly MetadataProblem[],
  ) {
    const shown = problems.slice(0, 3).map(formatCheckProblem).join('; ');
    const more = problems.length > 3 ? `; and ${problems.length - 3} more` : '';
    super(
      `pool ${poolName}: its metadata ${path} fails the check (${problems.length} problem${problems.length === 1 ? '' : 's'}: ${shown}${more}); ` +
        'not activated (repair it with thin_repair, or open with dm.thin_check=false at your own risk)',
    );
  }
}

/** `block 17: btree node ...`, or the finding alone when it is not about one block. */
export function formatCheckProblem(p: MetadataProblem): string {
  return p.block === null ? p.what : `block ${p.block}: ${p.what}`;
}

/** reserve_metadata_snap answered EBUSY: the pool already holds a metadata snapshot, not ours. */
export class MetadataSnapshotBusyError extends Error {
  override readonly name = 'MetadataSnapshotBusyError';
  readonly code = 'EBUSY';
  constructor(
    readonly poolName: string,
    /** The held snapshot's root block as the pool's status reports it, if it could be read. */
    readonly heldRoot: bigint | null,
  ) {
    super(
      `pool ${poolName} already holds a metadata snapshot${heldRoot === null ? '' : ` (held root ${heldRoot})`} that another ` +
        `program took (thin_ls -m, thin_dump -m?): it is left alone; once that program is done, ` +
        `'dmsetup message ${poolName} 0 release_metadata_snap' releases it`,
    );
  }
}

/** An operation that needs the pool down (nothing in the kernel using its metadata) found it active. */
export class PoolActiveError extends Error {
  override readonly name = 'PoolActiveError';
  readonly code = 'EBUSY';
  constructor(
    readonly poolName: string,
    what: string,
  ) {
    super(`pool ${poolName} is active: ${what} needs it shut down (the kernel writes its metadata while it runs)`);
  }
}

/** The pool's transaction id agrees neither with the metadata nor with the open intent. */
export class TransactionMismatchError extends Error {
  override readonly name = 'TransactionMismatchError';
  readonly code = 'EUCLEAN';
  constructor(
    readonly poolName: string,
    readonly poolTransactionId: bigint,
    readonly metadataTransactionId: bigint,
    detail = '',
  ) {
    super(
      `pool ${poolName} has transaction id ${poolTransactionId} but the metadata says ${metadataTransactionId}` +
        (detail ? `: ${detail}` : '') +
        ' (was the pool used by another program, or the metadata folder replaced?)',
    );
  }
}

/** A device hash the metadata does not know. */
export class UnknownDeviceError extends Error {
  override readonly name = 'UnknownDeviceError';
  readonly code = 'ENOENT';
  constructor(readonly hash: string) {
    super(`unknown device ${hash === '' ? '(base)' : JSON.stringify(hash)}`);
  }
}

/** A device hash that is already taken. */
export class DeviceExistsError extends Error {
  override readonly name = 'DeviceExistsError';
  readonly code = 'EEXIST';
  constructor(readonly hash: string) {
    super(`device ${JSON.stringify(hash)} already exists`);
  }
}

/** The pool is short of data or metadata space (under dm.min_free_space, or out of space). */
export class PoolSpaceError extends Error {
  override readonly name = 'PoolSpaceError';
  readonly code = 'ENOSPC';
  constructor(
    readonly poolName: string,
    reason: string,
  ) {
    super(`pool ${poolName}: ${reason}`);
  }
}

/** The pool is in a state that forbids changes (Fail, Error, needs_check, read-only). */
export class PoolStateError extends Error {
  override readonly name = 'PoolStateError';
  readonly code = 'EIO';
  constructor(
    readonly poolName: string,
    reason: string,
  ) {
    super(`pool ${poolName}: ${reason}`);
  }
}

/** A device that stays busy after retries, with who holds it. */
export class DeviceBusyError extends Error {
  override readonly name = 'DeviceBusyError';
  readonly code = 'EBUSY';
  constructor(
    readonly deviceName: string,
    /** Human-readable holders: open count, /sys holders, mount points. */
    readonly holders: string[],
  ) {
    super(`device ${deviceName} is busy${holders.length ? `: ${holders.join('; ')}` : ''}`);
  }
}

/** An external program (mkfs) that failed. The message names the stderr line that says why. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  readonly code = 'EIO';
  /** The line of stderr that says why it failed (see reasonLine). */
  readonly reason: string;
  constructor(
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    const reason = reasonLine(stderr);
    super(
      `${basename(argv[0] ?? 'command')} failed (exit ${exitCode ?? 'signal'})${reason ? `: ${reason}` : ''}\n${argv.join(' ')}\n${stderr.trim().slice(0, 2000)}`,
    );
    this.reason = reason;
  }
}

/**
 * The line of a tool's stderr that says why it failed: the last line before its usage text that is
 * not a warning. mkfs.xfs, for one, may warn first and then print "Filesystem must be larger than
 * 300MB." followed by its usage.
 */
export function reasonLine(stderr: string): string {
  const lines: string[] = [];
  for (const raw of stderr.split('\n')) {
    const line = raw.trim();
    if (/^usage:/i.test(line)) break;
    if (line === '' || /\bwarning\b/i.test(line)) continue;
    lines.push(line);
  }
  return lines.at(-1) ?? stderr.trim().split('\n')[0] ?? '';
}

/** An option that an existing pool cannot take: its value differs from what the pool has. */
export class PoolOptionConflictError extends OptionError {
  override readonly name = 'PoolOptionConflictError';
  constructor(
    key: string,
    value: string,
    /** What the pool has, in the option's own spelling (e.g. "1G", "xfs"). */
    readonly current: string,
    why: string,
  ) {
    super(key, value, `the pool already has ${current} (${why}); this option only applies when the pool is created`);
  }
}

/** The errno-like code of any error (DmError, SysError, Node's fs errors, ours), if it has one. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A device that is not mounted where an unmount was asked. */
export class NotMountedError extends Error {
  override readonly name = 'NotMountedError';
  readonly code = 'EINVAL';
  constructor(readonly hash: string) {
    super(`device ${hash === '' ? '(base)' : JSON.stringify(hash)} is not mounted`);
  }
}

/** A mount option list or SELinux mount label that would not reach mount(2) as written. */
export class MountOptionError extends Error {
  override readonly name = 'MountOptionError';
  readonly code = 'EINVAL';
  constructor(
    /** The option list or label as given. */
    readonly value: string,
    reason: string,
  ) {
    super(`mount option ${JSON.stringify(value)}: ${reason}`);
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/**
 * A pool transaction failed and this process could not bring the pool and the metadata back into
 * agreement: the intent stays on disk, and nothing more is changed until the pool is reopened
 * (open reconciles the intent).
 */
export class PoolReopenRequiredError extends PoolStateError {
  constructor(
    poolName: string,
    /** The failure that left the transaction open. */
    readonly firstFailure: unknown,
  ) {
    super(poolName, `must be reopened before any other change: a transaction was left open by ${messageOf(firstFailure)}`);
  }
}

/** The pool's metadata mode forbids changes: its devices can be activated and mounted read-only. */
export class PoolReadOnlyError extends PoolStateError {
  constructor(
    poolName: string,
    /** The thin-pool status: `ro` (metadata error or out of metadata space) or `needs_check`. */
    readonly mode: 'ro' | 'needs_check',
    what: string,
  ) {
    super(poolName, `is ${mode === 'ro' ? 'read-only (ro)' : 'flagged needs_check (run thin_check/thin_repair)'}: cannot ${what}`);
  }
}

/** Every thin id tried is already in the pool (EEXIST) without being in the metadata. */
export class ThinIdCollisionError extends Error {
  override readonly name = 'ThinIdCollisionError';
  readonly code = 'EEXIST';
  constructor(
    readonly poolName: string,
    /** The ids the pool answered EEXIST for, in order; none of them was touched. */
    readonly tried: number[],
  ) {
    super(
      `pool ${poolName} already holds thin ids ${tried.join(', ')} that the metadata does not know ` +
        '(another user of the pool, or ids leaked by a crash); none was touched',
    );
  }
}

/** A dm device has a device's name but not its thin target, and something holds it open. */
export class DeviceTableMismatchError extends Error {
  override readonly name = 'DeviceTableMismatchError';
  readonly code = 'EBUSY';
  constructor(
    readonly deviceName: string,
    /** What the device has instead: its table, or that it has none. */
    found: string,
    readonly holders: string[],
  ) {
    super(
      `device ${deviceName} exists with ${found}, not its thin target, and is held open` +
        `${holders.length ? ` (${holders.join('; ')})` : ''}: close it or remove it (dmsetup remove) first`,
    );
  }
}

/** A file an existing pool is made of is missing (a loop data or metadata file): never recreated. */
export class PoolFileMissingError extends Error {
  override readonly name = 'PoolFileMissingError';
  readonly code = 'ENOENT';
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path} is missing: ${reason}`);
  }
}

/**
 * A home folder (or its lock file) another user could tamper with: not ours, writable by group or
 * others, or a lock that is not a plain file of its own (a symlink, a hard link, a fifo).
 */
export class UnsafeHomeError extends Error {
  override readonly name = 'UnsafeHomeError';
  constructor(
    readonly path: string,
    /** EPERM: wrong owner or mode; ELOOP: a symlink; EINVAL: not a regular file or directory, or hard-linked. */
    readonly code: 'EPERM' | 'ELOOP' | 'EINVAL',
    reason: string,
  ) {
    super(`${path}: ${reason}`);
  }
}
