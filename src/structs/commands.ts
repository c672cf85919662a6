// The DM commands of include/uapi/linux/dm-ioctl.h, one record each: the kernel's command number
// (enum dm_cmd_index), the ioctl request made from it, the lowest interface version that has the
// command, whether the kernel writes a payload back, and the codecs of the request and reply
// payloads. DmCmd, DM_COMMAND_MIN_VERSION, DmControl's buffer policy and decodeDmBuffer all read
// this table.
import { _IOWR } from './ioc.js';
import { DM_IOCTL, DM_IOCTL_SIZE, DM_NAME_LEN, DM_UUID_LEN, DmFlag, type DmVersion } from './dm-abi.js';
import type { DmIoctl } from './dm-ioctl.js';
import { decodeDev, encodeDev, type DevT } from './dev.js';
import { encodeTargetSpecs, encodeTargetSpecsReply, readTargetSpecs, type DmTargetSpecAt, type DmTargetSpecIn } from './target-spec.js';
import { decodeNameList, encodeNameList, type DmNameListEntry } from './name-list.js';
import { decodeTargetDeps, encodeTargetDeps } from './target-deps.js';
import { decodeTargetVersions, encodeTargetVersions, type DmTargetVersion } from './target-versions.js';
import { decodeTargetMsg, encodeTargetMsg } from './target-msg.js';
import { decodeStringPayload, encodeStringPayload } from './string-payload.js';

/**
 * A payload (the bytes data_start..data_size) as a value and back. `decode` reads what the header
 * says about it (target_count, flags) and gives undefined when the header says there is none;
 * `encode` of a decoded value gives the same bytes.
 */
export interface DmPayloadCodec<T> {
  decode(payload: Uint8Array, header: DmIoctl): T | undefined;
  encode(value: T): Uint8Array;
}

const tableLoadSpecs: DmPayloadCodec<{ specs: DmTargetSpecIn[] }> = {
  decode: (p, h): { specs: DmTargetSpecAt[] } => ({ specs: readTargetSpecs(p, h.target_count, 'relative') }),
  encode: ({ specs }) => encodeTargetSpecs(specs),
};

const statusSpecs: DmPayloadCodec<{ specs: DmTargetSpecAt[] }> = {
  decode: (p, h) => ({ specs: readTargetSpecs(p, h.target_count, 'from-start') }),
  encode: ({ specs }) => encodeTargetSpecsReply(specs),
};

type NameListDevice = Omit<DmNameListEntry, 'dev'> & { dev: DevT };
const nameList: DmPayloadCodec<{ devices: NameListDevice[] }> = {
  decode: (p) => ({ devices: decodeNameList(p).map((e) => ({ ...e, dev: decodeDev(e.dev) })) }),
  // Records carry the event_nr/flags tail when the kernel wrote one (4.46 and later).
  encode: ({ devices }) =>
    encodeNameList(
      devices.map((d) => ({ ...d, dev: encodeDev(d.dev) })),
      { withTail: devices.some((d) => d.event_nr !== undefined) },
    ),
};

const targetDeps: DmPayloadCodec<{ devs: DevT[] }> = {
  decode: (p) => ({ devs: decodeTargetDeps(p).map(decodeDev) }),
  encode: ({ devs }) => encodeTargetDeps(devs.map(encodeDev)),
};

const targetVersions: DmPayloadCodec<{ versions: DmTargetVersion[] }> = {
  decode: (p) => ({ versions: decodeTargetVersions(p) }),
  encode: ({ versions }) => encodeTargetVersions(versions),
};

const targetMsg: DmPayloadCodec<{ sector: bigint; message: string }> = {
  decode: (p) => decodeTargetMsg(p),
  encode: ({ sector, message }) => encodeTargetMsg(sector, message),
};

/** What a target wrote back to a message, present only with DM_DATA_OUT_FLAG. */
const targetMsgOut: DmPayloadCodec<{ data_out: string }> = {
  decode: (p, h) => (h.flags & DmFlag.DM_DATA_OUT_FLAG ? { data_out: decodeStringPayload(p, 'dm_target_msg_out') } : undefined),
  encode: ({ data_out }) => encodeStringPayload('dm_target_msg_out', 'data_out', data_out),
};

/** A new name, or a new uuid with DM_UUID_FLAG: one NUL-terminated string. */
const rename: DmPayloadCodec<{ new_name: string } | { new_uuid: string }> = {
  decode: (p, h) =>
    h.flags & DmFlag.DM_UUID_FLAG
      ? { new_uuid: decodeStringPayload(p, 'dm_rename_uuid') }
      : { new_name: decodeStringPayload(p, 'dm_rename_name') },
  encode: (v) =>
    'new_uuid' in v
      ? encodeStringPayload('dm_rename_uuid', 'new_uuid', v.new_uuid, DM_UUID_LEN)
      : encodeStringPayload('dm_rename_name', 'new_name', v.new_name, DM_NAME_LEN),
};

/** "cylinders heads sectors start" (see formatGeometry). */
const geometry: DmPayloadCodec<{ geometry: string }> = {
  decode: (p) => ({ geometry: decodeStringPayload(p, 'dm_geometry') }),
  encode: ({ geometry: g }) => encodeStringPayload('dm_geometry', 'geometry', g),
};

/** What the table says of one command. */
export interface DmCommandFacts {
  /** enum dm_cmd_index: DM_VERSION_CMD = 0 ... */
  readonly nr: number;
  /**
   * The lowest interface version at which the command exists; sent in `version` as libdevmapper
   * does, so that an older kernel refuses a command it does not know with EINVAL instead of guessing.
   */
  readonly version: DmVersion;
  /** The kernel writes a payload and signals DM_BUFFER_FULL_FLAG when it does not fit. */
  readonly returnsData: boolean;
  readonly requestPayload?: AnyDmPayloadCodec;
  readonly replyPayload?: AnyDmPayloadCodec;
}

/** Any DmPayloadCodec, whatever its value type. */
export interface AnyDmPayloadCodec {
  decode(payload: Uint8Array, header: DmIoctl): unknown;
  encode(value: never): Uint8Array;
}

const FACTS = {
  DM_VERSION: { nr: 0, version: [4, 0, 0], returnsData: false },
  DM_REMOVE_ALL: { nr: 1, version: [4, 0, 0], returnsData: false },
  DM_LIST_DEVICES: { nr: 2, version: [4, 0, 0], returnsData: true, replyPayload: nameList },
  DM_DEV_CREATE: { nr: 3, version: [4, 0, 0], returnsData: false },
  DM_DEV_REMOVE: { nr: 4, version: [4, 0, 0], returnsData: false },
  DM_DEV_RENAME: { nr: 5, version: [4, 0, 0], returnsData: false, requestPayload: rename },
  DM_DEV_SUSPEND: { nr: 6, version: [4, 0, 0], returnsData: false },
  DM_DEV_STATUS: { nr: 7, version: [4, 0, 0], returnsData: false },
  DM_DEV_WAIT: { nr: 8, version: [4, 0, 0], returnsData: true, replyPayload: statusSpecs },
  DM_TABLE_LOAD: { nr: 9, version: [4, 0, 0], returnsData: false, requestPayload: tableLoadSpecs },
  DM_TABLE_CLEAR: { nr: 10, version: [4, 0, 0], returnsData: false },
  DM_TABLE_DEPS: { nr: 11, version: [4, 0, 0], returnsData: true, replyPayload: targetDeps },
  DM_TABLE_STATUS: { nr: 12, version: [4, 0, 0], returnsData: true, replyPayload: statusSpecs },
  DM_LIST_VERSIONS: { nr: 13, version: [4, 1, 0], returnsData: true, replyPayload: targetVersions },
  DM_TARGET_MSG: { nr: 14, version: [4, 2, 0], returnsData: true, requestPayload: targetMsg, replyPayload: targetMsgOut },
  DM_DEV_SET_GEOMETRY: { nr: 15, version: [4, 6, 0], returnsData: false, requestPayload: geometry },
  DM_DEV_ARM_POLL: { nr: 16, version: [4, 36, 0], returnsData: false },
  // The target's name travels in dm_ioctl.name; the request payload is empty (see targetVersionRequest).
  DM_GET_TARGET_VERSION: { nr: 17, version: [4, 41, 0], returnsData: true, replyPayload: targetVersions },
} as const satisfies Record<string, DmCommandFacts>;

export type DmCommandName = keyof typeof FACTS;

/** One command's record, with its name and its ioctl request number. */
export interface DmCommand extends DmCommandFacts {
  readonly name: DmCommandName;
  /** `_IOWR(DM_IOCTL, nr, struct dm_ioctl)`: the request number passed to ioctl(2). */
  readonly request: number;
}
/** The record of command K, with its codecs' own value types. */
export type DmCommandOf<K extends DmCommandName> = (typeof FACTS)[K] & { readonly name: K; readonly request: number };

/** `_IOWR(DM_IOCTL, nr, struct dm_ioctl)`: the request number passed to ioctl(2). */
export function dmRequest(nr: number): number {
  return _IOWR(DM_IOCTL, nr, DM_IOCTL_SIZE);
}

function build(): { readonly [K in DmCommandName]: DmCommandOf<K> } {
  const out: Partial<Record<DmCommandName, DmCommand>> = {};
  for (const name of Object.keys(FACTS) as DmCommandName[]) {
    const facts: DmCommandFacts = FACTS[name];
    // One object shape for all commands, so DmControl's reads of them stay monomorphic.
    out[name] = {
      name,
      nr: facts.nr,
      request: dmRequest(facts.nr),
      version: facts.version,
      returnsData: facts.returnsData,
      requestPayload: facts.requestPayload,
      replyPayload: facts.replyPayload,
    };
  }
  return out as { readonly [K in DmCommandName]: DmCommandOf<K> };
}

/** Every DM command by its name. */
export const DM_COMMANDS = build();

/** The commands in number order: DM_COMMAND_LIST[nr].nr === nr. */
export const DM_COMMAND_LIST: readonly DmCommand[] = Object.values(DM_COMMANDS).sort((a, b) => a.nr - b.nr);

/** The kernel's command numbers (enum dm_cmd_index) by name. */
export const DmCmd = Object.fromEntries(DM_COMMAND_LIST.map((c) => [c.name, c.nr])) as {
  readonly [K in DmCommandName]: (typeof FACTS)[K]['nr'];
};
export type DmCommandNr = (typeof DmCmd)[DmCommandName];

/** The lowest interface version of each command (see DmCommandFacts.version). */
export const DM_COMMAND_MIN_VERSION = Object.fromEntries(DM_COMMAND_LIST.map((c) => [c.name, c.version])) as Record<
  DmCommandName,
  DmVersion
>;

/** The command's name from its number, or undefined for a number the kernel does not define. */
export function dmCommandName(nr: number): DmCommandName | undefined {
  return DM_COMMAND_LIST[nr]?.name;
}
