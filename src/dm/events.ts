// A device's event stream. The kernel counts events per device (md->event_nr: dm_table_event(),
// raised by a target, e.g. thin-pool's low water mark or a mode change) and globally
// (dm_global_event_nr: every device event, table swap, create, remove, rename). Two ways to wait:
// - 'poll' (DM_DEV_ARM_POLL, interface 4.36+): arm the control fd, read the device's counter, then
//   poll(2) the fd, which turns readable at the next global event. Arming before reading loses no
//   event; a wake-up for another device reads the counter again and waits on. An eventfd beside the
//   control fd ends the wait on close().
// - 'wait' (DM_DEV_WAIT, every kernel): blocks in the kernel until the device's counter differs.
//   It holds a reference on the device, and nothing but the next event ends it: close() returns at
//   once, but the worker thread stays blocked (and the process alive, and a remove of the device
//   waiting on it) until the device's next event. Used only when the kernel has no ARM_POLL.
// Both block on a libuv worker thread, never the event loop, and neither busy-loops.
import { DmControl, type DmControlOptions } from '../ioctl/dm-control.js';
import { DmError } from '../ioctl/errors.js';
import { Errno } from '../ioctl/errno.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, POLLERR, POLLIN, POLLNVAL, eventfdSignal, sysClose, sysEventfd, sysPollAsync } from '../ioctl/libc.js';
import { DM_COMMANDS } from '../structs/commands.js';
import { DeviceMapper } from './device-mapper.js';
import { InvalidArgumentError } from './errors.js';
import type { DeviceInfo } from './info.js';
import { describeRef, type DeviceRef } from './names.js';

export type DmEventMechanism = 'poll' | 'wait';

export interface DmEventStreamOptions {
  /** 'auto' (default): 'poll' when the driver speaks DM_DEV_ARM_POLL's version, else 'wait'. */
  mechanism?: 'auto' | DmEventMechanism;
  /** How to open the stream's own control fd (its ARM_POLL state is per open file). */
  control?: DmControlOptions;
}

export type DmEventResult =
  /** The device's counter moved: `eventNr - previousEventNr` (mod 2^32) events since the last result. */
  { type: 'event'; info: DeviceInfo; eventNr: number; previousEventNr: number } | { type: 'timeout' } | { type: 'closed' };

/** Whether a driver version has DM_DEV_ARM_POLL. */
export function hasArmPoll(driverVersion: readonly [number, number, number]): boolean {
  const [maj, min, patch] = DM_COMMANDS.DM_DEV_ARM_POLL.version;
  const [a, b, c] = driverVersion;
  return a === maj ? (b === min ? c >= patch : b > min) : a > maj;
}

export class DmEventStream {
  private last: number;
  private busy = false;
  private closed = false;
  /** Poll: the eventfd that ends a poll in flight. */
  private wakeFd = -1;
  /** Wait: the DM_DEV_WAIT in flight, kept across timeouts (it cannot be cancelled). */
  private pending: Promise<DeviceInfo> | undefined;
  private onClose: (() => void) | undefined;
  private released = false;

  private constructor(
    private readonly dm: DeviceMapper,
    private readonly control: DmControl,
    readonly ref: DeviceRef,
    readonly mechanism: DmEventMechanism,
    first: DeviceInfo,
  ) {
    this.last = first.eventNr;
  }

  /** Opens a control fd of its own and reads the device's counter: events after this one are reported. */
  static open(ref: DeviceRef, opts: DmEventStreamOptions = {}): DmEventStream {
    const control = DmControl.open(opts.control);
    const dm = DeviceMapper.open({ controlNode: control });
    let wakeFd = -1;
    try {
      const want = opts.mechanism ?? 'auto';
      const canPoll = hasArmPoll(control.driverVersion);
      if (want === 'poll' && !canPoll) {
        throw new DmError('DM_DEV_ARM_POLL', Errno.ENOTTY, describeRef(ref), control.controlPath);
      }
      const mechanism: DmEventMechanism = want === 'auto' ? (canPoll ? 'poll' : 'wait') : want;
      const info = current(dm, ref);
      if (mechanism === 'poll') wakeFd = sysEventfd(EFD_CLOEXEC | EFD_NONBLOCK);
      const s = new DmEventStream(dm, control, ref, mechanism, info);
      s.wakeFd = wakeFd;
      return s;
    } catch (e) {
      if (wakeFd >= 0) sysClose(wakeFd);
      dm.close();
      throw e;
    }
  }

  /** The last event number reported (or read at open). */
  get eventNr(): number {
    return this.last;
  }

  /**
   * The next event of the device, or 'timeout' after `timeoutMs` (-1: none), or 'closed' once
   * close() was called. One call at a time. Events that came while nobody waited are reported at
   * once (coalesced: one result for all of them). A removed device rejects with ENXIO.
   */
  async next(timeoutMs = -1): Promise<DmEventResult> {
    if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
      throw new InvalidArgumentError('timeout', timeoutMs, 'must be a number of milliseconds, or -1 for none');
    }
    if (this.busy) throw new InvalidArgumentError('next', 'a call in flight', 'one next() at a time');
    if (this.closed) return { type: 'closed' };
    this.busy = true;
    try {
      return this.mechanism === 'poll' ? await this.nextByPoll(timeoutMs) : await this.nextByWait(timeoutMs);
    } finally {
      this.busy = false;
      if (this.closed) this.release();
    }
  }

  /** Ends the stream: a next() in flight resolves 'closed'. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.mechanism === 'poll' && this.busy) eventfdSignal(this.wakeFd);
    this.onClose?.();
    if (!this.busy) this.release();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Extract<DmEventResult, { type: 'event' }>> {
    for (;;) {
      const r = await this.next();
      if (r.type === 'closed') return;
      if (r.type === 'event') yield r;
    }
  }

  private event(info: DeviceInfo): DmEventResult {
    const previousEventNr = this.last;
    this.last = info.eventNr;
    return { type: 'event', info, eventNr: info.eventNr, previousEventNr };
  }

  private async nextByPoll(timeoutMs: number): Promise<DmEventResult> {
    const deadline = timeoutMs < 0 ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    for (;;) {
      if (this.closed) return { type: 'closed' };
      // Armed first: an event after the read below makes the fd readable.
      this.dm.armPoll();
      const info = current(this.dm, this.ref);
      if (info.eventNr !== this.last) return this.event(info);
      const left = deadline - Date.now();
      if (left <= 0) return { type: 'timeout' };
      const [ctl, wake] = await sysPollAsync(
        [
          { fd: this.control.fd, events: POLLIN },
          { fd: this.wakeFd, events: POLLIN },
        ],
        Number.isFinite(left) ? left : -1,
      );
      if (wake) return { type: 'closed' };
      if ((ctl ?? 0) & (POLLERR | POLLNVAL)) {
        throw new DmError('DM_DEV_ARM_POLL', Errno.EBADF, describeRef(this.ref), this.control.controlPath);
      }
    }
  }

  private async nextByWait(timeoutMs: number): Promise<DmEventResult> {
    if (this.pending === undefined) this.pending = this.dm.waitEvent(this.ref, this.last);
    const wait = this.pending;
    const timers: NodeJS.Timeout[] = [];
    const other = new Promise<'timeout' | 'closed'>((resolve) => {
      this.onClose = () => resolve('closed');
      if (timeoutMs >= 0) timers.push(setTimeout(() => resolve('timeout'), timeoutMs));
    });
    try {
      const r = await Promise.race([wait, other]);
      if (r === 'timeout') return { type: 'timeout' };
      if (r === 'closed') return { type: 'closed' };
      this.pending = undefined;
      // DM_DEV_WAIT returns at once when the counter differs: a stale start number costs one call.
      return r.eventNr === this.last ? this.nextByWait(timeoutMs) : this.event(r);
    } catch (e) {
      this.pending = undefined;
      throw e;
    } finally {
      for (const t of timers) clearTimeout(t);
      this.onClose = undefined;
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.wakeFd >= 0) sysClose(this.wakeFd);
    this.wakeFd = -1;
    // A DM_DEV_WAIT in flight keeps using the fd: closed when it returns.
    if (this.pending) {
      const dm = this.dm;
      this.pending.then(
        () => dm.close(),
        () => dm.close(),
      );
    } else this.dm.close();
  }
}

function current(dm: DeviceMapper, ref: DeviceRef): DeviceInfo {
  const info = dm.info(ref);
  if (info === null) throw new DmError('DM_DEV_STATUS', Errno.ENXIO, describeRef(ref));
  return info;
}
