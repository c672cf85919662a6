// The golden ioctl captures (test/golden, README there): typed records with the buffers
// padded back to `size`. A missing folder is a loud error: these tests never skip.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** test/golden in the repository, or $DEVMAPPER_GOLDEN. */
export const GOLDEN_DIR = process.env.DEVMAPPER_GOLDEN ?? resolve(projectRoot, 'test', 'golden');

export const IOCTL_FILES = ['udev-disabled.compact.jsonl', 'noudevsync.compact.jsonl', 'plain.compact.jsonl'] as const;
export type IoctlFile = (typeof IOCTL_FILES)[number];

export type FdKind = 'dm-control' | 'loop-control' | 'loop-block';

/** dm_before/dm_after as the capture tool printed them (flags/event_nr/dev as hex strings). */
export interface GoldenDmHeader {
  version: [number, number, number];
  data_size: number;
  data_start: number;
  target_count: number;
  open_count: number;
  flags: string;
  event_nr: string;
  dev: string;
  name: string;
  uuid: string;
}

interface RecordBase {
  file: IoctlFile;
  seq: number;
  pid: number;
  label: string;
  /** The command's `n` in commands.jsonl (the number before ':' in label). */
  n: number;
  argv: string;
  fd_path: string;
  fd_kind: FdKind;
  req: number;
  req_name: string;
  ioc: { dir: number; type: string; nr: number; size: number };
  ret: number;
  errno: number;
  errno_name: string;
}

export interface GoldenArgRecord extends RecordBase {
  kind: 'arg';
  arg: number;
}

export interface GoldenBufRecord extends RecordBase {
  kind: 'buf';
  size: number;
  /** Padded with zeros to `size`. */
  before: Uint8Array;
  after: Uint8Array;
  dm_before?: GoldenDmHeader;
  dm_after?: GoldenDmHeader;
}

export type GoldenRecord = GoldenArgRecord | GoldenBufRecord;

export interface GoldenCommand {
  n: number;
  mode: string;
  label: string;
  cmd: string;
  rc: number;
  stdout: string;
  stderr: string;
}

function requireDir(): void {
  if (!existsSync(join(GOLDEN_DIR, 'README.md'))) {
    throw new Error(
      `golden captures not found at ${GOLDEN_DIR} (test/golden in the repository, or $DEVMAPPER_GOLDEN). The golden tests never skip.`,
    );
  }
}

function readJsonl(file: string): Record<string, unknown>[] {
  requireDir();
  return readFileSync(join(GOLDEN_DIR, file), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Hex with trailing zero bytes stripped -> exactly `size` bytes. */
export function padHex(hex: string, size: number): Uint8Array {
  const bytes = Buffer.from(hex, 'hex');
  if (bytes.length > size) throw new Error(`golden buffer of ${bytes.length} bytes exceeds its size ${size}`);
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

let cache: GoldenRecord[] | undefined;

/** Every ioctl record of the three capture files, in file order. */
export function loadRecords(): GoldenRecord[] {
  if (cache) return cache;
  const records: GoldenRecord[] = [];
  for (const file of IOCTL_FILES) {
    for (const raw of readJsonl(file)) {
      const label = String(raw.label);
      const base: RecordBase = {
        file,
        seq: Number(raw.seq),
        pid: Number(raw.pid),
        label,
        n: Number(label.split(':')[0]),
        argv: String(raw.argv),
        fd_path: String(raw.fd_path),
        fd_kind: raw.fd_kind as FdKind,
        req: Number(raw.req),
        req_name: String(raw.req_name),
        ioc: raw.ioc as RecordBase['ioc'],
        ret: Number(raw.ret),
        errno: Number(raw.errno),
        errno_name: String(raw.errno_name ?? ''),
      };
      if (typeof raw.before === 'string' && typeof raw.after === 'string') {
        const size = Number(raw.size);
        const rec: GoldenBufRecord = { ...base, kind: 'buf', size, before: padHex(raw.before, size), after: padHex(raw.after, size) };
        if (raw.dm_before) rec.dm_before = raw.dm_before as GoldenDmHeader;
        if (raw.dm_after) rec.dm_after = raw.dm_after as GoldenDmHeader;
        records.push(rec);
      } else {
        records.push({ ...base, kind: 'arg', arg: Number(raw.arg) });
      }
    }
  }
  cache = records;
  return records;
}

/**
 * The captured commands by name: `n` in commands.jsonl (the number before ':' in a record's label),
 * with the label it was captured under.
 */
export const GOLDEN = {
  version: 1, // dmsetup version
  targets: 2, // dmsetup targets
  targetVersion: 3, // dmsetup target-version thin-pool
  lsEmpty: 4, // dmsetup ls (empty)
  loopFindFree: 5, // losetup -f (find free)
  loopAttachMeta: 6, // losetup -f --show meta.img
  loopAttachData: 7, // losetup -f --show data.img
  loopAttachLin: 8, // losetup -f --show lin.img
  loopFindByFile: 9, // losetup -j lin.img
  loopListAll: 10, // losetup -a
  loopListLin: 11, // losetup -l LIN
  loopSetCapacity: 12, // losetup -c LIN (LOOP_SET_CAPACITY)
  loopAttachReadOnlyOffset: 13, // losetup -r -o 4096 --sizelimit 1048576 --show -f lin.img
  loopAttachBlockSize: 14, // losetup -b 4096 --show -f lin.img (LOOP_CONFIGURE block_size)
  loopDirectIoEinval: 15, // losetup --direct-io=on DIO (tmpfs: EINVAL)
  loopDetachRoDio: 16, // losetup -d RO DIO
  loopDetachAgainEnxio: 17, // losetup -d RO again (error: not attached)
  loopDetachNeverUsedEnxio: 18, // losetup -d /dev/loop7 (never used)
  createLin0: 19, // dmsetup create lin0 linear
  createLin0AgainEbusy: 20, // dmsetup create lin0 again (EBUSY)
  createBadTargetEinval: 21, // dmsetup create bad target (EINVAL)
  createBadLinearArgsEnodev: 22, // dmsetup create bad linear args (EINVAL)
  createLin2UuidReadonly: 23, // dmsetup create --uuid --readonly lin2
  createEmpty0NoTable: 24, // dmsetup create --notable empty0
  loadEmpty0: 25, // dmsetup load empty0
  infoEmpty0Inactive: 26, // dmsetup info empty0 (inactive table)
  tableInactiveEmpty0: 27, // dmsetup table --inactive empty0
  resumeEmpty0: 28, // dmsetup resume empty0
  ls: 29, // dmsetup ls
  lsTargetLinear: 30, // dmsetup ls --target linear
  lsTree: 31, // dmsetup ls --tree
  tableLin0: 32, // dmsetup table lin0
  tableAll: 33, // dmsetup table (all)
  statusLin0: 34, // dmsetup status lin0
  infoLin0: 35, // dmsetup info lin0
  infoColumns: 36, // dmsetup info -c
  infoByUuid: 37, // dmsetup info -u DMGOLD-lin2-uuid
  infoByMajorMinor: 38, // dmsetup info -j 7 -m 0? (by major/minor of lin0)
  depsLin0: 39, // dmsetup deps lin0
  depsLin0Devname: 40, // dmsetup deps -o devname lin0
  suspendLin0: 41, // dmsetup suspend lin0
  infoLin0Suspended: 42, // dmsetup info lin0 (suspended)
  resumeLin0: 43, // dmsetup resume lin0
  suspendNoLockfsNoFlush: 44, // dmsetup suspend --nolockfs --noflush lin0
  resumeNoFlush: 45, // dmsetup resume --noflush lin0
  reloadLin0: 46, // dmsetup reload lin0 (bigger)
  tableInactiveLin0: 47, // dmsetup table --inactive lin0
  clearLin0: 48, // dmsetup clear lin0
  reloadLin0Again: 49, // dmsetup reload lin0 again
  resumeLin0Reloaded: 50, // dmsetup resume lin0 (swap in reloaded table)
  setGeometryLin0: 51, // dmsetup setgeometry lin0
  waitLin0: 52, // dmsetup wait lin0 99 (event_nr differs -> returns)
  renameLin0: 53, // dmsetup rename lin0 lin1
  renameSetUuid: 54, // dmsetup rename lin1 --setuuid
  renameMissingEnxio: 55, // dmsetup rename nonexistent (ENXIO)
  removeMissingEnxio: 56, // dmsetup remove nonexistent (ENXIO)
  messageMissingEnxio: 57, // dmsetup message nonexistent (ENXIO)
  messageLinearEinval: 58, // dmsetup message linear (EINVAL: no message fn)
  infoMissing: 59, // dmsetup info nonexistent
  statusMissingEnxio: 60, // dmsetup status nonexistent
  createBig0: 61, // dmsetup create big0 (2000 targets)
  tableBig0: 62, // dmsetup table big0 (DM_BUFFER_FULL retry)
  statusBig0: 63, // dmsetup status big0
  depsBig0: 64, // dmsetup deps big0
  createPool: 65, // dmsetup create pool thin-pool
  statusPool: 66, // dmsetup status pool
  tablePool: 67, // dmsetup table pool
  messageCreateThin: 68, // dmsetup message pool create_thin 0
  messageCreateThinAgainEexist: 69, // dmsetup message pool create_thin 0 again (EEXIST?)
  messageBogusEinval: 70, // dmsetup message pool bogus (EINVAL)
  createThin0: 71, // dmsetup create thin0
  statusThin0: 72, // dmsetup status thin0
  suspendThin0: 73, // dmsetup suspend thin0
  messageCreateSnap: 74, // dmsetup message pool create_snap 1 0
  resumeThin0: 75, // dmsetup resume thin0
  messageSetTransactionId: 76, // dmsetup message pool set_transaction_id 0 1
  messageSetTransactionIdEinval: 77, // dmsetup message pool set_transaction_id 0 5 (EINVAL: wrong old id)
  messageReserveMetadataSnap: 78, // dmsetup message pool reserve_metadata_snap
  statusPoolHeldRoot: 79, // dmsetup status pool (after txn id + metadata snap)
  messageReleaseMetadataSnap: 80, // dmsetup message pool release_metadata_snap
  createSnap1: 81, // dmsetup create snap1 (thin id 1)
  statusTargetThin: 82, // dmsetup status --target thin
  tableTargetThinPool: 83, // dmsetup table --target thin-pool
  depsThin0: 84, // dmsetup deps thin0
  lsTreePool: 85, // dmsetup ls --tree (pool)
  removePoolEbusy: 86, // dmsetup remove pool (in use -> EBUSY)
  messageDeleteOpenEbusy: 87, // dmsetup message pool delete 1 (open -> EBUSY?)
  removeSnap1: 88, // dmsetup remove snap1
  messageDeleteSnap1: 89, // dmsetup message pool delete 1
  messageDeleteMissingEnodata: 90, // dmsetup message pool delete 7 (nonexistent thin)
  removeThin0: 91, // dmsetup remove thin0
  messageDeleteThin0: 92, // dmsetup message pool delete 0
  removePool: 93, // dmsetup remove pool
  removeRetryBig0: 94, // dmsetup remove --retry big0
  removeAll: 95, // dmsetup remove_all (lin1, lin2, empty0 left)
  lsAfterRemoveAll: 96, // dmsetup ls (after remove_all)
  noUdevSyncCreate: 97, // dmsetup --noudevsync create lin0
  noUdevSyncSuspend: 98, // dmsetup --noudevsync suspend lin0
  noUdevSyncResume: 99, // dmsetup --noudevsync resume lin0
  noUdevSyncRename: 100, // dmsetup --noudevsync rename lin0 lin1
  noUdevSyncRemove: 101, // dmsetup --noudevsync remove lin1
  plainCreate: 102, // dmsetup create lin0 (plain)
  plainSuspend: 103, // dmsetup suspend lin0 (plain)
  plainResume: 104, // dmsetup resume lin0 (plain)
  plainRemove: 105, // dmsetup remove lin0 (plain)
  loopDetachMetaDataLin: 106, // losetup -d META DATA LIN
  loopAttachLinAgain: 107, // losetup -f --show lin.img (again)
  loopDetachAll: 108, // losetup -D (detach all)
} as const;
export type GoldenName = keyof typeof GOLDEN;

/** A command's `n`, from its name or its number. */
export function goldenN(command: GoldenName | number): number {
  return typeof command === 'number' ? command : GOLDEN[command];
}

export function loadCommands(): GoldenCommand[] {
  return readJsonl('commands.jsonl') as unknown as GoldenCommand[];
}

export function command(name: GoldenName | number): GoldenCommand {
  const n = goldenN(name);
  const c = loadCommands().find((x) => x.n === n);
  if (!c) throw new Error(`no golden command ${n}`);
  return c;
}

/** The records of a command, in order. */
export function recordsOf(name: GoldenName | number): GoldenRecord[] {
  const n = goldenN(name);
  return loadRecords().filter((r) => r.n === n);
}

/** A command's dm-control records, in order. */
export function dmRecordsOf(name: GoldenName | number): GoldenBufRecord[] {
  return recordsOf(name).filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.fd_kind === 'dm-control');
}

/** The `index`th record of `request` (e.g. DM_TABLE_STATUS) in a command's dm-control records. */
export function dmRecord(name: GoldenName | number, request: string, index = 0): GoldenBufRecord {
  const rec = dmRecordsOf(name).filter((r) => r.req_name === request)[index];
  if (!rec) throw new Error(`no ${request} #${index} in golden command ${String(name)}`);
  return rec;
}

export function dmRecords(): GoldenBufRecord[] {
  return loadRecords().filter((r): r is GoldenBufRecord => r.kind === 'buf' && r.fd_kind === 'dm-control');
}
