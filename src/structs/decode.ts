// A whole dm ioctl buffer -> a JSON-serialisable description: the header with its flags named,
// then the payload decoded by the command's codec for that direction (commands.ts).
// For the `decode` CLI and for test failures.
import { DM_UDEV_FLAGS_SHIFT, DmFlag, DmUdevFlag } from './dm-abi.js';
import { DM_COMMANDS, dmCommandName, type DmCommand, type DmCommandName } from './commands.js';
import { decodeDmIoctl, dmFlagNames, dmPayload, type DmIoctl } from './dm-ioctl.js';
import { decodeDev } from './dev.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type DmDirection = 'request' | 'reply';

/** Accepts DM_TABLE_STATUS, TABLE_STATUS (any case) or the command number. */
export function parseDmCommand(text: string): DmCommandName | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return dmCommandName(Number(trimmed));
  const upper = trimmed.toUpperCase();
  const name = upper.startsWith('DM_') ? upper : `DM_${upper}`;
  return Object.hasOwn(DM_COMMANDS, name) ? (name as DmCommandName) : undefined;
}

/** bigints as decimal strings, Uint8Array as hex, recursively. */
export function toJson(value: unknown): JsonValue {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === 'object') {
    const out: { [key: string]: JsonValue } = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toJson(v);
    return out;
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null) return value;
  return String(value);
}

function udevFlagNames(eventNr: number): string[] {
  const bits = eventNr >>> DM_UDEV_FLAGS_SHIFT;
  return Object.entries(DmUdevFlag)
    .filter(([, bit]) => bits & bit)
    .map(([name]) => name);
}

function headerJson(h: DmIoctl): JsonValue {
  return toJson({
    version: h.version,
    data_size: h.data_size,
    data_start: h.data_start,
    target_count: h.target_count,
    open_count: h.open_count,
    flags: h.flags,
    flag_names: dmFlagNames(h.flags),
    event_nr: h.event_nr,
    udev_cookie: h.event_nr & 0xffff,
    udev_flag_names: udevFlagNames(h.event_nr),
    dev: decodeDev(h.dev),
    name: h.name,
    uuid: h.uuid,
  });
}

/**
 * Decodes a dm ioctl buffer (header + payload, padded to data_size). A reply with
 * DM_BUFFER_FULL_FLAG says so and decodes no payload: the kernel stopped mid-way.
 */
export function decodeDmBuffer(command: DmCommandName, buf: Uint8Array, direction: DmDirection): object {
  const header = decodeDmIoctl(buf);
  const out: { [key: string]: JsonValue } = { command, direction, header: headerJson(header) };
  if (direction === 'reply' && header.flags & DmFlag.DM_BUFFER_FULL_FLAG) {
    out.buffer_full = true;
    out.payload = null;
    return out;
  }
  const payload = dmPayload(buf, header);
  const spec: DmCommand = DM_COMMANDS[command];
  const codec = direction === 'request' ? spec.requestPayload : spec.replyPayload;
  const decoded = codec?.decode(payload, header);
  out.payload = decoded === undefined ? null : toJson(decoded);
  return out;
}
