// One line per failure, errno name first, then what failed and what to do:
//   `EBUSY: DM_DEV_REMOVE pool0: Device or resource busy (held by thin1; remove those first)`.
// Bad input the library refused before touching anything is a usage error (exit 2).
import { InvalidArgumentError } from '../dm/errors.js';
import { SysError } from '../ioctl/errors.js';
import { OptionError, InvalidHashError } from '../thin/errors.js';
import { OperationError, UsageError } from './usage.js';

/** What to do about an errno, when nothing more specific is known. */
export const ERRNO_HINTS: Readonly<Record<string, string>> = {
  EACCES: 'run as root',
  EPERM: 'run as root',
  ENXIO: "no such device: see 'devmapper dm ls'",
  EBUSY: "in use, or the name or uuid is taken: see 'devmapper dm ls --tree' and 'devmapper dm info NAME'",
  EEXIST: 'it exists already',
  EINVAL: "the kernel refused the arguments; its reason is in its log ('dmesg | tail')",
  ENODATA: "no such thin device id in the pool: create it with 'devmapper dm message POOL 0 create_thin ID'",
  EIO: "an I/O error below the device: see 'dmesg | tail'",
  ENOTBLK: 'not a block device',
  EWOULDBLOCK: 'wait for that process to finish',
  EROFS: 'the file is on a read-only file system: use --read-only',
  ENOSPC: "grow the pool ('devmapper pool resize SIZE') or remove layers",
  EUCLEAN: 'the metadata and the pool disagree: see docs/pool.md (Transactions)',
  ENOMEM: 'the kernel is short of memory: retry with a smaller table or free memory',
  ENOTTY: 'not a device of that kind',
};

/** Hints about what the kernel said; the library's own errors with these codes say more themselves. */
const KERNEL_ONLY = new Set(['EBUSY', 'EEXIST', 'EINVAL', 'ENODATA', 'EIO', 'ENXIO']);

/** `123n` (a BigInt's source text) as `123`: no message of ours shows JavaScript syntax. */
const plainNumbers = (s: string): string => s.replace(/\b(\d+)n\b/g, '$1');

/**
 * Reorders `what: EBUSY (Device or resource busy)` (the library's SysError form) as
 * `EBUSY: what: Device or resource busy`; any other line gets `CODE: ` in front unless it has it.
 */
export function errnoFirst(code: string, line: string): string {
  if (line.startsWith(`${code}:`) || line.startsWith(`${code} `)) return line;
  const m = new RegExp(`^(.*): ${code} \\((.*)\\)$`).exec(line);
  if (m) return `${code}: ${m[1]}: ${m[2]}`;
  const inner = new RegExp(`^(.*?)${code}: (.*)$`).exec(line);
  if (inner) return `${code}: ${inner[1]}${inner[2]}`;
  return `${code}: ${line}`;
}

/** Any error as the one line main prints; the hint maps error names or errno codes to advice. */
export function explain(err: unknown, hints: Readonly<Record<string, string>> = {}): Error {
  if (err instanceof UsageError || err instanceof OperationError) {
    err.message = plainNumbers(err.message);
    return err;
  }
  if (!(err instanceof Error)) return new OperationError(String(err));
  const firstLine = plainNumbers((err.message.split('\n')[0] ?? '').trim());
  if (err instanceof InvalidArgumentError || err instanceof OptionError || err instanceof InvalidHashError) {
    const u = new UsageError(firstLine.replace(/^invalid /, ''));
    if (err.stack) u.stack = err.stack;
    return u;
  }
  const code = (err as { code?: unknown }).code;
  let line = firstLine;
  if (typeof code === 'string') {
    line = errnoFirst(code, line);
    const general = err instanceof SysError || !KERNEL_ONLY.has(code) ? ERRNO_HINTS[code] : undefined;
    const hint = hints[err.name] ?? hints[code] ?? general;
    if (hint && !line.includes(hint)) line += ` (${hint})`;
  }
  const out = new OperationError(line);
  if (err.stack) out.stack = err.stack; // --debug shows where it really came from
  return out;
}
