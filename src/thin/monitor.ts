// Watching a pool from the kernel's side alone (no home lock: it runs beside the process that holds
// the pool). The pool's status is read at each of its dm events and on a slow timer, and what
// changed is reported: the low water marks crossed, the mode, data and metadata use. With an
// auto-extend policy, loop-backed data and metadata files grow when use exceeds the threshold, or
// at once when the pool is out of data space; the resume after the data grew puts a pool that was
// out_of_data_space back to rw (dm-thin's commit in preresume: check_for_data_space).
//
// The kernel's events for a pool (dm-thin.c, each a dm_table_event): free data blocks fell to the
// table's low water mark (once, re-armed by the next resume), free metadata blocks fell to the
// metadata low water mark, and every mode change (set_pool_mode). Plain use raises none: the timer
// is what sees use climb past a threshold that lies below the low water mark.
import { statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DeviceMapper } from '../dm/device-mapper.js';
import { DmEventStream, type DmEventMechanism } from '../dm/events.js';
import type { DeviceName } from '../dm/names.js';
import { parseThinPoolStatus, type ThinPoolStatus } from '../dm/status/thin-pool.js';
import { isThinPoolTarget, type ThinPoolTarget } from '../dm/targets.js';
import type { DmControlOptions } from '../ioctl/dm-control.js';
import { type Bytes, bytes, sectors, sectorsToBytes } from '../structs/units.js';
import { AUTOEXTEND_DEFAULTS, type AutoextendPolicy, autoextendOn, extendDecision, type ExtendDecision } from './autoextend.js';
import { PoolStateError } from './errors.js';
import { backingOf } from './pool-backing.js';
import { METADATA_BLOCK_BYTES } from './pool-setup.js';
import { reloadPoolFeatures, THIN_METADATA_MAX_BYTES, resizePoolByName } from './resize.js';

const ERROR_IF_NO_SPACE = 'error_if_no_space';

/** dmeventd's thin plugin looks at a pool every 10 s besides its events. */
export const MONITOR_INTERVAL_MS = 10_000;

export type PoolMode = 'rw' | 'ro' | 'out_of_data_space' | 'fail' | 'error';
export type PoolPart = 'data' | 'metadata';

export interface PoolUse {
  usedBlocks: number;
  totalBlocks: number;
  usedBytes: number;
  totalBytes: number;
  /** used / total in percent, two decimals. */
  percent: number;
}

/** What a check reads, for the events. */
export interface PoolSnapshot {
  mode: PoolMode;
  needsCheck: boolean;
  data?: PoolUse;
  metadata?: PoolUse;
}

interface Stamp {
  /** ISO 8601, milliseconds. */
  time: string;
  pool: string;
}

export type PoolMonitorEvent = Stamp &
  (
    | ({ event: 'start'; mechanism: DmEventMechanism; threshold: number; percent: number; intervalMs: number } & PoolSnapshot)
    /** The pool's dm event counter moved (kernel events since the last look, coalesced). */
    | { event: 'dm-event'; eventNr: number; previousEventNr: number }
    | { event: 'mode'; from: PoolMode; to: PoolMode; needsCheck: boolean; wasNeedsCheck: boolean }
    | ({ event: 'use'; reason: CheckReason } & PoolSnapshot)
    | { event: 'low-water'; part: PoolPart; freeBlocks: number; lowWaterMarkBlocks: number; kernelEvent: boolean }
    | {
        event: 'extend';
        part: PoolPart;
        /** What the look that decided it was woken by. */
        reason: CheckReason;
        fromBytes: number;
        toBytes: number;
        wantedBytes: number;
        limitedBy: 'room' | 'max' | null;
        percent: number;
        file: string;
      }
    | { event: 'no-room'; part: PoolPart; totalBytes: number; wantedBytes: number; roomBytes: number; limitedBy: 'room' | 'max' }
    | { event: 'extend-skipped'; part: PoolPart; reason: string }
    /** The pool's answer to a full pool: 'queue' (writes wait for the extension) or 'error' (they fail at once). */
    | { event: 'no-space-mode'; mode: 'queue' | 'error' }
    | { event: 'error'; message: string; code?: string }
    | { event: 'stop'; reason: 'closed' | 'pool removed' }
  );

export type CheckReason = 'start' | 'event' | 'interval' | 'extended';

/** Grows the pool's data and/or metadata to the sizes given (the loop files with them). */
export type PoolResize = (dm: DeviceMapper, poolName: DeviceName, target: { dataBytes?: Bytes; metadataBytes?: Bytes }) => Promise<void>;

export interface PoolMonitorOptions {
  policy?: AutoextendPolicy;
  /** The look between events (default MONITOR_INTERVAL_MS). */
  intervalMs?: number;
  mechanism?: 'auto' | DmEventMechanism;
  /** The event stream's control fd (tests). */
  control?: DmControlOptions;
  onEvent: (e: PoolMonitorEvent) => void;
  resize?: PoolResize;
  /**
   * With data auto-extend on: a full pool holds writes until the monitor grew it (the pool's
   * `error_if_no_space` is dropped while the monitor runs, put back when it stops; dm-thin fails
   * held writes after its no_space_timeout, 60 s). Default true; false leaves the table alone.
   */
  holdWrites?: boolean;
}

/** A pool's loop file (the backing file of the loop device its table names), or why there is none. */
function loopFileOf(device: string): { file: string } | { why: string } {
  try {
    const b = backingOf(device);
    return b.kind === 'loop' ? { file: b.file } : { why: `the device ${device} (${b.path}) is not a loop device` };
  } catch (e) {
    return { why: (e as Error).message };
  }
}

/**
 * Free bytes for the files' growth on their file system: what statfs gives an unprivileged writer,
 * less the holes the pool's sparse files may still fill (a hole counts against the room it will take).
 */
export function roomFor(file: string, poolFiles: readonly string[]): bigint {
  const fs = statfsSync(dirname(file), { bigint: true });
  const dev = statSync(file, { bigint: true }).dev;
  let room = fs.bavail * fs.bsize;
  for (const f of poolFiles) {
    const st = statSync(f, { bigint: true });
    if (st.dev !== dev) continue;
    const hole = st.size - st.blocks * 512n;
    if (hole > 0n) room -= hole;
  }
  return room;
}

function use(used: bigint, total: bigint, unit: bigint): PoolUse {
  return {
    usedBlocks: Number(used),
    totalBlocks: Number(total),
    usedBytes: Number(used * unit),
    totalBytes: Number(total * unit),
    percent: total === 0n ? 0 : Number((used * 10000n) / total) / 100,
  };
}

function modeOf(st: ThinPoolStatus): PoolMode {
  if (st.state === 'Fail') return 'fail';
  if (st.state === 'Error') return 'error';
  return st.mode;
}

export class PoolMonitor {
  private readonly policy: AutoextendPolicy;
  private readonly intervalMs: number;
  private readonly resize: PoolResize;
  private stream: DmEventStream | undefined;
  private stopped = false;
  private last: PoolSnapshot | undefined;
  private below: Record<PoolPart, boolean> = { data: false, metadata: false };
  /** After a failed or refused extend: no new try before this time (ms), so events do not loop on it. */
  private retryAt: Record<PoolPart, number> = { data: 0, metadata: 0 };
  private said = new Set<string>();
  /** The pool's error_if_no_space was dropped by this monitor: put back at stop. */
  private queueing = false;

  constructor(
    private readonly dm: DeviceMapper,
    readonly poolName: DeviceName,
    private readonly opts: PoolMonitorOptions,
  ) {
    this.policy = opts.policy ?? AUTOEXTEND_DEFAULTS;
    this.intervalMs = opts.intervalMs ?? MONITOR_INTERVAL_MS;
    this.resize = opts.resize ?? ((dm, name, target) => resizePoolByName(dm, name, target));
  }

  /** Watches until stop() or the pool's removal. */
  async run(): Promise<'closed' | 'pool removed'> {
    const stream = DmEventStream.open({ name: this.poolName }, { ...optional(this.opts), mechanism: this.opts.mechanism ?? 'auto' });
    this.stream = stream;
    let ended: 'closed' | 'pool removed' | undefined;
    try {
      ended = await this.watch(stream);
      return ended;
    } catch (e) {
      if (this.dm.info({ name: this.poolName }) !== null) throw e;
      ended = 'pool removed';
      return ended;
    } finally {
      stream.close();
      if (this.queueing && ended !== 'pool removed') await this.noSpaceMode('error');
      if (ended) this.emit({ event: 'stop', reason: ended });
    }
  }

  private async watch(stream: DmEventStream): Promise<'closed'> {
    if (this.stopped) return 'closed';
    if (autoextendOn(this.policy) && this.opts.holdWrites !== false) await this.noSpaceMode('queue');
    const snap = this.read();
    this.emit({ event: 'start', mechanism: stream.mechanism, ...this.policy, intervalMs: this.intervalMs, ...snap.view });
    await this.check('start', snap);
    let nextTick = Date.now() + this.intervalMs;
    for (;;) {
      const r = await stream.next(Math.max(0, nextTick - Date.now()));
      if (r.type === 'closed') return 'closed';
      if (r.type === 'event') {
        this.emit({ event: 'dm-event', eventNr: r.eventNr, previousEventNr: r.previousEventNr });
        await this.check('event');
      } else {
        nextTick = Date.now() + this.intervalMs;
        await this.check('interval');
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.stream?.close();
  }

  /** Switch the pool's answer to a full pool (reloadPoolFeatures); a failure is reported, not thrown. */
  private async noSpaceMode(mode: 'queue' | 'error'): Promise<void> {
    try {
      const changed = await reloadPoolFeatures(this.dm, this.poolName, (f) =>
        mode === 'queue' ? f.filter((x) => x !== ERROR_IF_NO_SPACE) : f.includes(ERROR_IF_NO_SPACE) ? [...f] : [...f, ERROR_IF_NO_SPACE],
      );
      if (mode === 'queue') this.queueing = changed;
      else this.queueing = false;
      if (changed) this.emit({ event: 'no-space-mode', mode });
    } catch (e) {
      const err = e as { message?: string; code?: unknown };
      this.emit({ event: 'error', message: String(err.message), ...(typeof err.code === 'string' ? { code: err.code } : {}) });
    }
  }

  private emit(e: DistributiveOmit<PoolMonitorEvent, 'time' | 'pool'>): void {
    this.opts.onEvent({ time: new Date().toISOString(), pool: this.poolName, ...e } as PoolMonitorEvent);
  }

  /** The pool's status and table now. */
  private read(): { st: ThinPoolStatus; table: ThinPoolTarget; view: PoolSnapshot } {
    const line = this.dm.status({ name: this.poolName })[0];
    const table = this.dm.table({ name: this.poolName })[0];
    if (!line || !table || !isThinPoolTarget(table)) {
      throw new PoolStateError(this.poolName, `not a thin-pool (table: ${table?.type ?? 'none'})`);
    }
    const st = parseThinPoolStatus(line.params);
    const view: PoolSnapshot = { mode: modeOf(st), needsCheck: st.state === 'ok' && st.needsCheck };
    if (st.state === 'ok') {
      view.data = use(st.usedDataBlocks, st.totalDataBlocks, sectorsToBytes(sectors(table.dataBlockSizeSectors)));
      view.metadata = use(st.usedMetadataBlocks, st.totalMetadataBlocks, BigInt(METADATA_BLOCK_BYTES));
    }
    return { st, table, view };
  }

  private async check(reason: CheckReason, snap = this.read()): Promise<void> {
    const { st, table, view } = snap;
    const prev = this.last;
    this.last = view;
    if (prev && (prev.mode !== view.mode || prev.needsCheck !== view.needsCheck)) {
      this.emit({ event: 'mode', from: prev.mode, to: view.mode, needsCheck: view.needsCheck, wasNeedsCheck: prev.needsCheck });
    }
    if (prev && (prev.data?.usedBlocks !== view.data?.usedBlocks || prev.metadata?.usedBlocks !== view.metadata?.usedBlocks)) {
      this.emit({ event: 'use', reason, ...view });
    }
    if (st.state !== 'ok') return;
    const kernelEvent = reason === 'event';
    this.lowWater('data', st.totalDataBlocks - st.usedDataBlocks, table.lowWaterMarkBlocks, kernelEvent);
    if (st.metadataLowWatermark !== undefined) {
      this.lowWater('metadata', st.totalMetadataBlocks - st.usedMetadataBlocks, st.metadataLowWatermark, kernelEvent);
    }
    if (autoextendOn(this.policy) && !st.needsCheck && st.mode !== 'ro' && (await this.autoextend(st, table, reason))) {
      await this.check('extended');
    }
  }

  private lowWater(part: PoolPart, free: bigint, mark: bigint, kernelEvent: boolean): void {
    const below = free <= mark;
    if (below && !this.below[part]) {
      this.emit({ event: 'low-water', part, freeBlocks: Number(free), lowWaterMarkBlocks: Number(mark), kernelEvent });
    }
    this.below[part] = below;
  }

  /** Extends what the policy asks for; true when the pool was resized. */
  private async autoextend(st: Extract<ThinPoolStatus, { state: 'ok' }>, table: ThinPoolTarget, reason: CheckReason): Promise<boolean> {
    const now = Date.now();
    const blockBytes = sectorsToBytes(sectors(table.dataBlockSizeSectors));
    const backing: Record<PoolPart, { file: string } | { why: string }> = {
      data: loopFileOf(table.dataDevice),
      metadata: loopFileOf(table.metadataDevice),
    };
    const poolFiles = Object.values(backing).flatMap((b) => ('file' in b ? [b.file] : []));
    const parts: { part: PoolPart; used: bigint; total: bigint; unit: bigint; force: boolean; max?: Bytes }[] = [
      {
        part: 'data',
        used: st.usedDataBlocks * blockBytes,
        total: st.totalDataBlocks * blockBytes,
        unit: blockBytes,
        force: st.mode === 'out_of_data_space',
      },
      {
        part: 'metadata',
        used: st.usedMetadataBlocks * BigInt(METADATA_BLOCK_BYTES),
        total: st.totalMetadataBlocks * BigInt(METADATA_BLOCK_BYTES),
        unit: BigInt(METADATA_BLOCK_BYTES),
        force: false,
        max: THIN_METADATA_MAX_BYTES,
      },
    ];
    const target: { dataBytes?: Bytes; metadataBytes?: Bytes } = {};
    const planned: { part: PoolPart; d: Extract<ExtendDecision, { action: 'extend' }>; from: bigint; used: bigint; file: string }[] = [];
    let taken = 0n;
    for (const p of parts) {
      if (now < this.retryAt[p.part]) continue;
      const b = backing[p.part];
      const probe = extendDecision(this.policy, {
        usedBytes: bytes(p.used),
        totalBytes: bytes(p.total),
        unitBytes: bytes(p.unit),
        roomBytes: 1n << 62n,
        force: p.force,
        ...(p.max !== undefined ? { maxBytes: p.max } : {}),
      });
      if (probe.action === 'none') continue;
      if ('why' in b) {
        this.once(`skip:${p.part}:${b.why}`, () => this.emit({ event: 'extend-skipped', part: p.part, reason: b.why }));
        this.retryAt[p.part] = now + this.intervalMs;
        continue;
      }
      const file = b.file;
      const room = roomFor(file, poolFiles) - taken;
      const d = extendDecision(this.policy, {
        usedBytes: bytes(p.used),
        totalBytes: bytes(p.total),
        unitBytes: bytes(p.unit),
        roomBytes: room,
        force: p.force,
        ...(p.max !== undefined ? { maxBytes: p.max } : {}),
      });
      if (d.action === 'no-room') {
        this.once(`no-room:${p.part}:${p.total}`, () =>
          this.emit({
            event: 'no-room',
            part: p.part,
            totalBytes: Number(p.total),
            wantedBytes: Number(d.wantedBytes),
            roomBytes: Number(room > 0n ? room : 0n),
            limitedBy: d.limitedBy,
          }),
        );
        this.retryAt[p.part] = now + this.intervalMs;
        continue;
      }
      if (d.action !== 'extend') continue;
      taken += d.sizeBytes - p.total;
      planned.push({ part: p.part, d, from: p.total, used: p.used, file });
      if (p.part === 'data') target.dataBytes = d.sizeBytes;
      else target.metadataBytes = d.sizeBytes;
    }
    if (planned.length === 0) return false;
    try {
      await this.resize(this.dm, this.poolName, target);
    } catch (e) {
      const err = e as Error & { code?: unknown };
      this.emit({ event: 'error', message: err.message, ...(typeof err.code === 'string' ? { code: err.code } : {}) });
      for (const p of planned) this.retryAt[p.part] = now + this.intervalMs;
      return false;
    }
    for (const { part, d, from, used, file } of planned) {
      this.emit({
        event: 'extend',
        part,
        reason,
        fromBytes: Number(from),
        toBytes: Number(d.sizeBytes),
        wantedBytes: Number(d.wantedBytes),
        limitedBy: d.limitedBy,
        percent: from === 0n ? 0 : Number((used * 10000n) / from) / 100,
        file,
      });
    }
    return true;
  }

  /** Says a thing once per key (a refusal repeated at every event would flood the stream). */
  private once(key: string, say: () => void): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    say();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function optional(o: PoolMonitorOptions): { control?: DmControlOptions } {
  return o.control ? { control: o.control } : {};
}
