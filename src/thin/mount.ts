// Mounting thin devices with mount(2)/umount2(2) (through src/ioctl), and reading the mount table
// from /proc/self/mountinfo (to answer "is it mounted" and "who holds this device").
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  MS_NOATIME,
  MS_NODEV,
  MS_NODIRATIME,
  MS_NOEXEC,
  MS_NOSUID,
  MS_RDONLY,
  MS_RELATIME,
  MS_SYNCHRONOUS,
  sysMount,
  sysUmount2,
} from '../ioctl/libc.js';
import type { FsSuperblockType } from '../blk/index.js';
import { log } from '../ioctl/index.js';
import { errnoOf, MountOptionError } from './errors.js';

// Options that are mount(2) flags rather than file system data: [set, clear].
const FLAGS: Record<string, [number, number]> = {
  ro: [MS_RDONLY, 0],
  rw: [0, MS_RDONLY],
  nosuid: [MS_NOSUID, 0],
  suid: [0, MS_NOSUID],
  nodev: [MS_NODEV, 0],
  dev: [0, MS_NODEV],
  noexec: [MS_NOEXEC, 0],
  exec: [0, MS_NOEXEC],
  sync: [MS_SYNCHRONOUS, 0],
  async: [0, MS_SYNCHRONOUS],
  noatime: [MS_NOATIME, 0],
  atime: [0, MS_NOATIME],
  nodiratime: [MS_NODIRATIME, 0],
  diratime: [0, MS_NODIRATIME],
  relatime: [MS_RELATIME, 0],
  norelatime: [0, MS_RELATIME],
  defaults: [0, 0],
};

/**
 * Splits one `a,b=c,...` group on the commas outside double quotes, as mount(8) (libmount) does:
 * `context="s0:c1,c2"` is one option, its quotes kept for the file system to read.
 */
function splitOptions(group: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < group.length; i++) {
    const c = group[i];
    if (c === '"') quoted = !quoted;
    else if (c === ',' && !quoted) {
      out.push(group.slice(start, i));
      start = i + 1;
    }
  }
  if (quoted) throw new MountOptionError(group, 'unbalanced double quote');
  out.push(group.slice(start));
  return out;
}

/** Split `a,b=c,...` options into mount(2) flags and the file system's data string. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const group of options) {
    for (const opt of splitOptions(group)) {
      if (opt === '') continue;
      const f = FLAGS[opt];
      if (f) flags = (flags | f[0]) & ~f[1];
      else data.push(opt);
    }
  }
  return { flags, data: data.join(',') };
}

/**
 * An SELinux label as it can go in `context="..."`: a '"' would end the quoted value early (and
 * what follows would be read as options), a control character (newline, NUL) is no label's. The
 * commas of an MLS category list (s0:c1,c2) stay inside the quotes.
 */
export function checkMountLabel(label: string): string {
  if (label.includes('"')) throw new MountOptionError(label, "an SELinux label cannot contain '\"'");
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
  if (/[\x00-\x1f\x7f]/.test(label)) throw new MountOptionError(label, 'an SELinux label cannot contain a control character');
  return label;
}

/** The option list used for a thin device: dm.mountopt, `nouuid` for xfs (every snapshot shares
 *  the base's uuid), and an SELinux context when a label is given and SELinux is on. The label is
 *  checked either way, so a bad one fails alike on every host. `discard` is not here: mountThin
 *  adds it. */
export function mountOptionsFor(fs: FsSuperblockType, mountOptions: readonly string[], mountLabel = ''): string[] {
  checkMountLabel(mountLabel);
  const opts = [...mountOptions];
  if (fs === 'xfs') opts.push('nouuid');
  if (mountLabel !== '' && existsSync('/sys/fs/selinux/enforce')) opts.push(`context="${mountLabel}"`);
  return opts;
}

/** Whether the options choose discard themselves (`discard`, `discard=...`, `nodiscard`): then no default is added. */
export function choosesDiscard(options: readonly string[]): boolean {
  return options.some((group) => splitOptions(group).some((o) => o === 'discard' || o === 'nodiscard' || o.startsWith('discard=')));
}

export function mount(device: string, target: string, fs: string, options: readonly string[]): void {
  const { flags, data } = parseMountOptions(options);
  sysMount(device, target, fs, flags, data === '' ? null : data);
  log.info('mounted', { device, target, fs, flags, data });
}

/**
 * Mount a thin device with `discard` unless the options choose (dm.mountopt=nodiscard): a file
 * deleted in the file system then unmaps its blocks in the pool (and a loop-backed pool punches
 * them out of its data file). A file system that does not take `discard` (EINVAL: the ext2
 * driver) is mounted again without it, as Docker's driver did. `nodiscard` goes to the kernel as
 * given (ext4 and xfs take it, and on ext4 it overrides a `discard` that tune2fs made a default
 * mount option); a driver that refuses it (EINVAL) has no discard to turn off, and is mounted once
 * more without the word. Returns whether the mount has the default `discard`.
 */
export function mountThin(device: string, target: string, fs: FsSuperblockType, options: readonly string[]): { discard: boolean } {
  const attempts: { options: readonly string[]; discard: boolean }[] = [];
  if (!choosesDiscard(options)) attempts.push({ options: ['discard', ...options], discard: true });
  attempts.push({ options, discard: false });
  const withoutNodiscard = options.map((group) =>
    splitOptions(group)
      .filter((o) => o !== 'nodiscard')
      .join(','),
  );
  if (withoutNodiscard.join(',') !== options.join(','))
    attempts.push({ options: withoutNodiscard.filter((g) => g !== ''), discard: false });
  for (const [i, a] of attempts.entries()) {
    try {
      mount(device, target, fs, a.options);
      return { discard: a.discard };
    } catch (e) {
      if (errnoOf(e) !== 'EINVAL' || i === attempts.length - 1) throw e;
    }
  }
  throw new Error('unreachable: the last attempt returns or throws');
}

export function unmount(target: string, flags = 0): void {
  sysUmount2(target, flags);
  log.info('unmounted', { target, flags });
}

/**
 * umount2 with retries while EBUSY (a file closed a moment ago may still pin the mount): about a
 * second in all. A path that is no longer mounted (EINVAL) counts as done. Rethrows the last error.
 */
export async function unmountRetrying(target: string, attempts = 10, delayMs = 100): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      unmount(target);
      return;
    } catch (e) {
      const code = (e as { code?: unknown } | null)?.code;
      if (code === 'EINVAL' && !isMounted(target)) return;
      if (code !== 'EBUSY' || attempt >= attempts) throw e;
      log.info('mount busy: retrying umount2', { target, attempt: attempt + 1, of: attempts, delay_ms: delayMs });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

export interface MountEntry {
  mountId: number;
  /** major:minor of the mounted device (st_dev). */
  majorMinor: string;
  mountPoint: string;
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parse /proc/self/mountinfo (proc(5)); lines that do not parse are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const [id, , majMin, , mountPoint] = left;
    const [fsType, source] = right;
    if (id === undefined || majMin === undefined || mountPoint === undefined || fsType === undefined) continue;
    out.push({
      mountId: Number(id),
      majorMinor: majMin,
      mountPoint: unescapeOctal(mountPoint),
      fsType,
      source: unescapeOctal(source ?? ''),
    });
  }
  return out;
}

export function mountTable(path = '/proc/self/mountinfo'): MountEntry[] {
  return parseMountInfo(readFileSync(path, 'utf8'));
}

export function isMounted(path: string, table: MountEntry[] = mountTable()): boolean {
  const p = resolve(path);
  return table.some((m) => m.mountPoint === p);
}

/** Mount points of a device, by its major:minor. */
export function mountsOf(majorMinor: string, table?: MountEntry[]): MountEntry[] {
  return table ? table.filter((m) => m.majorMinor === majorMinor) : mountsOfDevice(majorMinor);
}

/**
 * mountsOf read from the kernel's table, parsing only the lines that hold ` majorMinor ` (those
 * that can name the device; mountsOf's test then decides): a layer's mount and unmount each look
 * up one device, and parsing the whole table was most of what a layer allocated (bench P4).
 */
export function mountsOfDevice(majorMinor: string, path = '/proc/self/mountinfo'): MountEntry[] {
  const text = readFileSync(path, 'utf8');
  const needle = ` ${majorMinor} `;
  const out: MountEntry[] = [];
  for (let at = text.indexOf(needle); at >= 0; ) {
    const start = text.lastIndexOf('\n', at) + 1;
    const nl = text.indexOf('\n', at);
    const end = nl < 0 ? text.length : nl;
    for (const m of parseMountInfo(text.slice(start, end))) if (m.majorMinor === majorMinor) out.push(m);
    at = text.indexOf(needle, end);
  }
  return out;
}
