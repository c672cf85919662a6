// A whole dm ioctl buffer -> a JSON-serialisable description: the header with its flags named,
// then the payload decoded by command and direction. For the `decode` CLI and for test failures.
import {
  DmCmd,
  DmFlag,
  DM_UDEV_FLAGS_SHIFT,
  DmUdevFlag,
  decodeDmIoctl,
  dmCommandName,
  dmFlagNames,
  dmPayload,
  type DmCommandName,
  type DmIoctl,
} from './dm-ioctl.js';
import { decodeDev } from './dev.js';
import { readTargetSpecs } from './target-spec.js';
import { decodeNameList } from './name-list.js';
import { decodeTargetDeps } from './target-deps.js';
import { decodeTargetVersions } from './target-versions.js';
import { decodeTargetMsg } from './target-msg.js';
import { decodeStringPayload } from './string-payload.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type DmDirection = 'request' | 'reply';

/** Accepts DM_TABLE_STATUS, TABLE_STATUS (any case) or the command number. */
export function parseDmCommand(text: string): DmCommandName | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return dmCommandName(Number(trimmed));
  const upper = trimmed.toUpperCase();
  const name = upper.startsWith('DM_') ? upper : `DM_${upper}`;
  return Object.hasOwn(DmCmd, name) ? (name as DmCommandName) : undefined;
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

function requestPayload(command: DmCommandName, h: DmIoctl, payload: Uint8Array): unknown {
  switch (command) {
    case 'DM_TABLE_LOAD':
      return { specs: readTargetSpecs(payload, h.target_count, 'relative') };
    case 'DM_TARGET_MSG':
      return decodeTargetMsg(payload);
    case 'DM_DEV_RENAME':
      return h.flags & DmFlag.DM_UUID_FLAG
        ? { new_uuid: decodeStringPayload(payload, 'dm_rename_uuid') }
        : { new_name: decodeStringPayload(payload, 'dm_rename_name') };
    case 'DM_DEV_SET_GEOMETRY':
      return { geometry: decodeStringPayload(payload, 'dm_geometry') };
    default:
      return undefined;
  }
}

function replyPayload(command: DmCommandName, h: DmIoctl, payload: Uint8Array): unknown {
  switch (command) {
    case 'DM_TABLE_STATUS':
    case 'DM_DEV_WAIT':
      return { specs: readTargetSpecs(payload, h.target_count, 'from-start') };
    case 'DM_LIST_DEVICES':
      return {
        devices: decodeNameList(payload).map((e) => ({ ...e, dev: decodeDev(e.dev) })),
      };
    case 'DM_TABLE_DEPS':
      return { devs: decodeTargetDeps(payload).map(decodeDev) };
    case 'DM_LIST_VERSIONS':
    case 'DM_GET_TARGET_VERSION':
      return { versions: decodeTargetVersions(payload) };
    case 'DM_TARGET_MSG':
      return h.flags & DmFlag.DM_DATA_OUT_FLAG ? { data_out: decodeStringPayload(payload, 'dm_target_msg_out') } : undefined;
    default:
      return undefined;
  }
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
  const decoded = direction === 'request' ? requestPayload(command, header, payload) : replyPayload(command, header, payload);
  out.payload = decoded === undefined ? null : toJson(decoded);
  return out;
}
