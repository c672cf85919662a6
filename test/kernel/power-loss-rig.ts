// The rig of the power-loss tests: a home file system (ext4) on a dm-log-writes device, so every
// write that reaches it, the pool's own loop files included, is logged in completion order with
// its flushes; then the log replayed up to each flush and mark onto a fresh image, mounted (ext4
// recovers its journal) and handed to a check. As xfstests does with replay-log.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceMapper } from '../../src/dm/device-mapper.js';
import { MNT_DETACH, sysMount, sysUmount2 } from '../../src/ioctl/libc.js';
import { attachLoop, detachLoop, type LoopDevice, releaseLoop } from '../../src/loop/index.js';
import { sectors } from '../../src/structs/units.js';
import { isMounted } from '../../src/thin/mount.js';
import { dmName, RUN_DIR } from './support/env.js';
import {
  decodeLog,
  fileSource,
  flushPoints,
  LOG_MARK_FLAG,
  type LogSource,
  type LogWriteEntry,
  type LogWrites,
  markIndex,
  replayLog,
} from '../support/log-writes.js';

const MiB = 1024 * 1024;
/** The home file system: sparse, only what is written takes room (guest RAM: /tmp is tmpfs). */
export const HOME_BYTES = 512 * MiB;
/** The log device: holds every write of a scenario with one sector of header each. */
const LOG_BYTES = 1024 * MiB;
const SECTOR = 512;
/** Replayed images are copied in blocks of this size (every range the log ever wrote, rounded out). */
const COPY_BLOCK = 4096;

/**
 * The home's mount options. ext4's defaults hide a missing fsync before a rename: auto_da_alloc
 * starts writeback of a file's delayed-allocation data when it is renamed over another, so the new
 * file's data tends to reach the journal with the rename even without fsync. noauto_da_alloc
 * turns that off: a rename without its fsync then leaves, after a power loss, a file of size 0
 * (data=ordered, delalloc: the size is set when the blocks are allocated at writeback).
 */
export const HOME_MOUNT_DATA = 'noauto_da_alloc';
/** mkfs of the home: few inodes and a small journal keep the log and each copy small. */
const HOME_MKFS = ['-F', '-q', '-b', '4096', '-N', '1024', '-J', 'size=8', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0'];

/** The mark dm-log-writes' destructor logs itself (log_writes_dtr): not one of a scenario's. */
export const END_MARK = 'dm-log-writes-end';

/** One replay point: after a flush/FUA entry, or a mark (an acknowledged operation). */
export interface ReplayPoint {
  index: number;
  kind: 'flush' | 'mark';
  /** The last mark before (or at) this point, and the one after it (the operation in flight). */
  lastMark: string;
  nextMark: string | undefined;
  /** Later flush entries that leave the very same image (no write in between). */
  same: number;
}

export class LogRig {
  readonly dir: string;
  readonly mnt: string;
  readonly home: string;
  private readonly lowerFile: string;
  private readonly logFile: string;
  private lower?: LoopDevice;
  private logDev?: LoopDevice;
  readonly name;
  private log?: { log: LogWrites; src: LogSource; fd: number };
  /** Milliseconds spent copying images, attaching and mounting them, and checking them. */
  readonly timing = { copy: 0, mount: 0, check: 0 };

  constructor(
    private readonly dm: DeviceMapper,
    tag: string,
  ) {
    this.dir = join(RUN_DIR, `pl-${tag}`);
    this.mnt = join(this.dir, 'mnt');
    this.home = join(this.mnt, 'home');
    this.lowerFile = join(this.dir, 'lower.img');
    this.logFile = join(this.dir, 'log.img');
    this.name = dmName(`pl-${tag}`);
  }

  get devicePath(): string {
    return join(this.dm.mapperDir, this.name);
  }

  /** Zeroed lower and log devices, the log-writes device over them, mkfs, mount, the home folder. */
  async start(): Promise<void> {
    mkdirSync(this.mnt, { recursive: true });
    sparse(this.lowerFile, HOME_BYTES);
    sparse(this.logFile, LOG_BYTES);
    this.lower = await attachLoop(this.lowerFile, { autoclear: true });
    this.logDev = await attachLoop(this.logFile, { autoclear: true });
    await this.dm.create(this.name, {
      table: [
        {
          type: 'log-writes',
          startSector: sectors(0n),
          lengthSectors: sectors(BigInt(HOME_BYTES / SECTOR)),
          params: `${this.lower.major}:${this.lower.minor} ${this.logDev.major}:${this.logDev.minor}`,
        },
      ],
    });
    // The loops live as long as the log-writes device holds them (autoclear).
    releaseLoop(this.lower);
    releaseLoop(this.logDev);
    execFileSync('mkfs.ext4', [...HOME_MKFS, this.devicePath], { stdio: 'pipe' });
    sysMount(this.devicePath, this.mnt, 'ext4', 0, HOME_MOUNT_DATA);
    mkdirSync(this.home);
  }

  /** `mark <label>` on the log-writes device (logged once every write before it is). */
  mark(label: string): void {
    this.dm.message({ name: this.name }, 0n, `mark ${label}`);
  }

  /** Unmount, remove the log-writes device (its destructor writes the final super), decode the log. */
  async stop(): Promise<LogWrites> {
    if (isMounted(this.mnt)) sysUmount2(this.mnt, 0);
    await this.dm.remove({ name: this.name }, { retry: true });
    const fd = openSync(this.logFile, 'r');
    const src = fileSource(fd);
    this.log = { log: decodeLog(src, { targetBytes: HOME_BYTES }), src, fd };
    return this.log.log;
  }

  /** Every flush/FUA entry and every mark from the mark `from` on, with the marks around each. */
  points(from: string): ReplayPoint[] {
    const log = this.requireLog().log;
    const start = markIndex(log, from);
    const flushes = new Set(flushPoints(log));
    const out: ReplayPoint[] = [];
    const isMarkEntry = (e: LogWriteEntry) => (e.flags & LOG_MARK_FLAG) !== 0 && e.mark !== END_MARK;
    const marks = log.entries.filter((e) => isMarkEntry(e) && e.index >= start);
    let lastData = -1;
    let last: ReplayPoint | undefined;
    for (const e of log.entries) {
      if ((e.flags & LOG_MARK_FLAG) === 0 && e.nrSectors > 0n) lastData = e.index;
      if (e.index < start) continue;
      const isMark = isMarkEntry(e);
      if (!isMark && !flushes.has(e.index)) continue;
      const before = marks.filter((m) => m.index <= e.index);
      const after = marks.find((m) => m.index > e.index);
      const p: ReplayPoint = {
        index: e.index,
        kind: isMark ? 'mark' : 'flush',
        lastMark: before[before.length - 1]!.mark!,
        nextMark: after?.mark,
        same: 0,
      };
      // A flush with no write since the point before it leaves the same image, expected to hold
      // the same: counted with that point rather than replayed again.
      if (last && !isMark && lastData < last.index && last.lastMark === p.lastMark && last.nextMark === p.nextMark) {
        last.same++;
        continue;
      }
      out.push(p);
      last = p;
    }
    return out;
  }

  /**
   * Replay the log onto a zeroed image up to each point in turn; for each, a fresh copy of the
   * image is attached to a loop device, mounted, and `check` runs on its home folder.
   */
  async replayEach(points: ReplayPoint[], check: (p: ReplayPoint, home: string) => Promise<void>): Promise<void> {
    const { log, src } = this.requireLog();
    const cursorFile = join(this.dir, 'cursor.img');
    const trialFile = join(this.dir, 'trial.img');
    const trialMnt = join(this.dir, 'trial');
    mkdirSync(trialMnt, { recursive: true });
    sparse(cursorFile, HOME_BYTES);
    const written = new Uint8Array(HOME_BYTES / COPY_BLOCK);
    const cursor = openSync(cursorFile, 'r+');
    try {
      let next = 0;
      for (const p of points) {
        replayLog(log, src, cursor, p.index, {
          from: next,
          targetBytes: HOME_BYTES,
          onWrite: (x) => written.fill(1, Math.floor(x.start / COPY_BLOCK), Math.ceil(x.end / COPY_BLOCK)),
        });
        next = p.index + 1;
        const t0 = performance.now();
        copyWritten(cursor, trialFile, written);
        this.timing.copy += performance.now() - t0;
        const loop = await attachLoop(trialFile, { autoclear: true });
        try {
          sysMount(loop.path, trialMnt, 'ext4', 0, HOME_MOUNT_DATA);
        } finally {
          releaseLoop(loop);
        }
        const t1 = performance.now();
        this.timing.mount += t1 - t0;
        try {
          await check(p, join(trialMnt, 'home'));
        } finally {
          this.timing.check += performance.now() - t1;
          if (isMounted(trialMnt)) sysUmount2(trialMnt, 0);
          rmSync(trialFile, { force: true });
        }
      }
    } finally {
      closeSync(cursor);
      rmSync(cursorFile, { force: true });
    }
  }

  /** Remove whatever is left (after a failure) and the rig's files. */
  async cleanup(): Promise<void> {
    for (const m of [join(this.dir, 'trial'), this.mnt]) if (isMounted(m)) sysUmount2(m, MNT_DETACH);
    if (this.dm.info({ name: this.name })) await this.dm.remove({ name: this.name }, { retry: true });
    if (this.log) closeSync(this.log.fd);
    this.log = undefined;
    // Autoclear detached them with the log-writes device; detach any still bound to our files.
    const files: [LoopDevice | undefined, string][] = [
      [this.lower, this.lowerFile],
      [this.logDev, this.logFile],
    ];
    for (const [l, file] of files) {
      if (l) await detachLoop(l.number, { expectBackingFile: file }).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private requireLog(): { log: LogWrites; src: LogSource } {
    if (!this.log) throw new Error('the log is read by stop()');
    return this.log;
  }
}

function sparse(path: string, size: number): void {
  writeFileSync(path, '');
  truncateSync(path, size);
}

/** A fresh sparse image holding the cursor's content wherever the log ever wrote. */
function copyWritten(cursor: number, path: string, written: Uint8Array): void {
  sparse(path, HOME_BYTES);
  const out = openSync(path, 'r+');
  const buf = Buffer.alloc(256 * COPY_BLOCK);
  try {
    for (let b = 0; b < written.length; ) {
      if (!written[b]) {
        b++;
        continue;
      }
      let end = b;
      while (end < written.length && written[end] && end - b < buf.length / COPY_BLOCK) end++;
      const len = (end - b) * COPY_BLOCK;
      let got = 0;
      while (got < len) got += readSync(cursor, buf, got, len - got, b * COPY_BLOCK + got);
      let put = 0;
      while (put < len) put += writeSync(out, buf, put, len - put, b * COPY_BLOCK + put);
      b = end;
    }
  } finally {
    closeSync(out);
  }
}
