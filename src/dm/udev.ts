// Living with or without udev. libdevmapper tells udev's rules (10-dm.rules) what to do through
// flags in the high 16 bits of event_nr; the kernel passes the value on in the uevent's DM_COOKIE.
// We have no cookie semaphore (libdevmapper's SysV semaphore handshake), so the cookie (low 16 bits)
// is always 0, and where udev runs we wait for its node instead (bounded), as the captures of
// `dmsetup --noudevsync` do. The flags match the golden captures byte for byte:
//   udev not running / off (like DM_DISABLE_UDEV=1, golden udev-disabled.jsonl):
//     DEV_CREATE: DISABLE_DM_RULES | DISABLE_SUBSYSTEM_RULES                     = 0x0003 (0x30000)
//     resume, remove, rename: the same | PRIMARY_SOURCE                          = 0x0043 (0x430000)
//     and the library makes /dev/mapper/<name> itself.
//   udev running (like --noudevsync, golden noudevsync.jsonl):
//     DEV_CREATE: DISABLE_LIBRARY_FALLBACK                                       = 0x0020 (0x200000)
//     resume, remove, rename: DISABLE_LIBRARY_FALLBACK | PRIMARY_SOURCE          = 0x0060 (0x600000)
//     and udev's rules make the node; we wait for it, then fall back to making it ourselves.
// PRIMARY_SOURCE marks the uevent as one this call caused (resume/remove/rename generate one;
// create does not).
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DM_UDEV_FLAGS_SHIFT, DmUdevFlag } from '../structs/dm-ioctl.js';

export type UdevMode = 'auto' | 'on' | 'off';
export type UdevOp = 'create' | 'resume' | 'remove' | 'rename';

/** udev's control socket: its presence is how libdevmapper (and we) tell that udev runs. */
export const UDEV_CONTROL_PATH = '/run/udev/control';

export interface UdevPolicy {
  /** udev runs and owns /dev/mapper: we set its flags and wait for its nodes. */
  readonly running: boolean;
  /** How long to wait for udev to make or drop a node before doing it ourselves. */
  readonly waitMs: number;
}

/**
 * Whether to defer to udev. It only manages the real /dev: with another devDir (tests, chroots)
 * the library owns the nodes whatever runs.
 */
export function detectUdev(mode: UdevMode, devDir: string, controlPath = UDEV_CONTROL_PATH): boolean {
  if (mode === 'off') return false;
  if (devDir.replace(/\/+$/, '') !== '/dev') return false;
  return mode === 'on' || existsSync(controlPath);
}

/** event_nr for a command that udev's rules read: the flags in the high 16 bits, cookie 0. */
export function udevEventNr(policy: UdevPolicy, op: UdevOp, extraFlags = 0): number {
  const F = DmUdevFlag;
  let flags = policy.running
    ? F.DM_UDEV_DISABLE_LIBRARY_FALLBACK
    : F.DM_UDEV_DISABLE_DM_RULES_FLAG | F.DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG;
  if (op !== 'create') flags |= F.DM_UDEV_PRIMARY_SOURCE_FLAG;
  flags |= extraFlags & 0xffff;
  return (flags << DM_UDEV_FLAGS_SHIFT) >>> 0;
}

/** Polls `check` (backing off 2 -> 50 ms) until it holds; false when `timeoutMs` passes first. */
export async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    if (check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(delay);
  }
}
