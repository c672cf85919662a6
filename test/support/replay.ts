// A Transport that replays golden ioctls: each request we send is checked against the request
// libdevmapper sent in the capture, and answered with the kernel's reply bytes and errno. What we
// deliberately send differently is listed in REPLAY_ALLOWED_DIFFERENCES and nowhere else.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DmControl } from '../../src/ioctl/dm-control.js';
import { DmError } from '../../src/ioctl/errors.js';
import type { IoctlArg, IoctlResult, Transport } from '../../src/ioctl/transport.js';
import { DeviceMapper, type DeviceMapperOptions } from '../../src/dm/device-mapper.js';
import type { NodeManager } from '../../src/dm/nodes.js';
import type { DevT } from '../../src/structs/dev.js';
import { DM_IOCTL_SIZE, DmFlag, decodeDmIoctl, dmCommandName, type DmIoctl } from '../../src/structs/dm-ioctl.js';
import { writeFields } from './buffers.js';
import { dmRecordsOf, type GoldenBufRecord, type GoldenName } from './golden.js';

/**
 * Where our requests may differ from libdevmapper's, and why:
 * - flags: DM_EXISTS_FLAG (0x4) is libdevmapper's private bit, never read by the kernel; we do not send it.
 * - data_size: commands that return no data get a buffer of header + input (the kernel copies in and
 *   allocates all of data_size); libdevmapper passes 16 KiB or its over-estimate for TABLE_LOAD.
 *   Trailing bytes past our payload must be zeros in the capture, so the difference is only length.
 */
export const REPLAY_ALLOWED_DIFFERENCES = {
  flagsWeDoNotSend: DmFlag.DM_EXISTS_FLAG,
  dataSize: 'ours: header + payload for commands without output; libdevmapper: 16 KiB or more',
} as const;

const HEADER_FIELDS = ['version', 'data_start', 'target_count', 'open_count', 'event_nr', 'dev', 'name', 'uuid'] as const;

export interface ReplayCall {
  command: string;
  record: GoldenBufRecord;
  sent: DmIoctl;
}

export class ReplayMismatch extends Error {
  override name = 'ReplayMismatch';
}

export class ReplayTransport implements Transport {
  private next = 0;
  readonly calls: ReplayCall[] = [];

  constructor(readonly records: readonly GoldenBufRecord[]) {}

  /**
   * The dm-control ioctls of golden commands, in capture order, as one session: each dmsetup
   * run began with its own DM_VERSION, which one open control node sends once, so the leading
   * DM_VERSION of every command after the first is left out.
   */
  static of(...commands: (GoldenName | number)[]): ReplayTransport {
    return new ReplayTransport(
      commands.flatMap((c, i) => {
        const records = dmRecordsOf(c);
        return i > 0 && records[0]?.req_name === 'DM_VERSION' ? records.slice(1) : records;
      }),
    );
  }

  get remaining(): number {
    return this.records.length - this.next;
  }

  /** Throws unless every captured ioctl was replayed. */
  assertDone(): void {
    if (this.remaining !== 0) {
      const left = this.records.slice(this.next).map((r) => `${r.label} ${r.req_name}`);
      throw new ReplayMismatch(`${this.remaining} captured ioctls not replayed: ${left.join('; ')}`);
    }
  }

  ioctl(_fd: number, request: number, arg: IoctlArg): IoctlResult {
    const record = this.records[this.next];
    const command = dmCommandName(request & 0xff) ?? `0x${request.toString(16)}`;
    if (!record) throw new ReplayMismatch(`${command}: sent after the last captured ioctl`);
    if (typeof arg === 'number') throw new ReplayMismatch(`${command}: an integer argument, dm commands take a buffer`);
    const where = `${record.label} ${record.req_name} (#${this.next})`;
    if (request >>> 0 !== record.req >>> 0) {
      throw new ReplayMismatch(`${where}: we sent ${command} (0x${(request >>> 0).toString(16)})`);
    }
    const sent = decodeDmIoctl(arg);
    checkRequest(where, arg, sent, record);
    this.next++;
    this.calls.push({ command, record, sent });
    if (record.ret === -1) return { ret: -1, errno: record.errno };
    const after = decodeDmIoctl(record.after);
    const before = decodeDmIoctl(record.before);
    // DM_VERSION and a few others leave data_size as sent: then it echoes ours, not libdevmapper's.
    const echoed = after.data_size === before.data_size;
    if (!echoed && after.data_size > arg.length) {
      throw new ReplayMismatch(`${where}: the kernel wrote ${after.data_size} bytes, our buffer holds ${arg.length}`);
    }
    arg.set(record.after.subarray(0, Math.min(arg.length, record.after.length)));
    if (echoed) writeFields(arg, 'dm_ioctl', { data_size: arg.length });
    return { ret: record.ret, errno: 0 };
  }

  async ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult> {
    await Promise.resolve();
    return this.ioctl(fd, request, arg);
  }
}

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

function checkRequest(where: string, ours: Uint8Array, sent: DmIoctl, record: GoldenBufRecord): void {
  const theirs = decodeDmIoctl(record.before);
  for (const field of HEADER_FIELDS) {
    const a = JSON.stringify(sent[field], (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v));
    const b = JSON.stringify(theirs[field], (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v));
    if (a !== b) throw new ReplayMismatch(`${where}: ${field} ours ${a}, captured ${b}`);
  }
  const expectedFlags = (theirs.flags & ~REPLAY_ALLOWED_DIFFERENCES.flagsWeDoNotSend) >>> 0;
  if (sent.flags !== expectedFlags) {
    throw new ReplayMismatch(
      `${where}: flags ours ${hex(sent.flags)}, captured ${hex(theirs.flags)} (less DM_EXISTS_FLAG: ${hex(expectedFlags)})`,
    );
  }
  if (sent.data_size !== ours.length) throw new ReplayMismatch(`${where}: data_size ${sent.data_size} != buffer ${ours.length}`);
  // The payload: byte for byte over the longer of the two, the shorter one read as zero-padded.
  const len = Math.max(ours.length, record.before.length);
  for (let i = DM_IOCTL_SIZE; i < len; i++) {
    const a = ours[i] ?? 0;
    const b = record.before[i] ?? 0;
    if (a !== b) {
      throw new ReplayMismatch(`${where}: payload byte ${i - DM_IOCTL_SIZE} ours ${hex(a)}, captured ${hex(b)}`);
    }
  }
}

/** Node operations recorded in memory, with an initial set of nodes (tests run without root). */
export class MemoryNodes implements NodeManager {
  readonly mapperDir = '/replay/dev/mapper';
  readonly nodes = new Map<string, DevT>();
  readonly ops: string[] = [];

  constructor(initial: Record<string, DevT> = {}) {
    for (const [name, dev] of Object.entries(initial)) this.nodes.set(name, dev);
  }
  add(name: string, dev: DevT): void {
    this.ops.push(`add ${name} ${dev.major}:${dev.minor}`);
    this.nodes.set(name, dev);
  }
  remove(name: string): void {
    this.ops.push(`remove ${name}`);
    this.nodes.delete(name);
  }
  rename(oldName: string, newName: string, dev?: DevT): void {
    this.ops.push(`rename ${oldName} ${newName}`);
    const d = this.nodes.get(oldName) ?? dev;
    this.nodes.delete(oldName);
    if (d) this.nodes.set(newName, d);
  }
  list(): string[] {
    return [...this.nodes.keys()];
  }
  exists(name: string): boolean {
    return this.nodes.has(name);
  }
}

export interface ReplaySession {
  dm: DeviceMapper;
  replay: ReplayTransport;
  nodes: MemoryNodes;
  /** Closes, removes the temp folder, and checks every captured ioctl was replayed. */
  finish(): void;
}

/**
 * A DeviceMapper whose control node replays `transport` (its first record is the DM_VERSION that
 * opening the control node sends, as every dmsetup run starts with).
 */
export function replayDeviceMapper(
  replay: ReplayTransport,
  opts: { nodes?: MemoryNodes } & Pick<DeviceMapperOptions, 'udev' | 'udevWaitMs'> = {},
): ReplaySession {
  const dir = mkdtempSync(join(tmpdir(), 'dm-replay-'));
  const controlPath = join(dir, 'control');
  writeFileSync(controlPath, '');
  const controlNode = DmControl.open({
    transport: replay,
    controlPath,
    miscClassDir: join(dir, 'no-sys'),
    procMiscPath: join(dir, 'no-proc-misc'),
    sys: { open: () => 3, close: () => undefined, mknod: () => undefined },
  });
  const nodes = opts.nodes ?? new MemoryNodes();
  const dm = DeviceMapper.open({ controlNode, nodes, udev: opts.udev ?? 'off', udevWaitMs: opts.udevWaitMs ?? 0 });
  return {
    dm,
    replay,
    nodes,
    finish() {
      dm.close();
      rmSync(dir, { recursive: true, force: true });
      replay.assertDone();
    },
  };
}

/** Runs `f` and returns the DmError it threw (fails otherwise). */
export async function dmErrorOf(f: () => unknown): Promise<DmError> {
  try {
    await f();
  } catch (err) {
    if (err instanceof DmError) return err;
    throw err;
  }
  throw new Error('expected a DmError, nothing was thrown');
}
