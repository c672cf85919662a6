// The snapshotter's records: one JSON file per snapshot in <home>/snapshots/, named by the
// snapshot's own id (containerd's keys are long and hold '/': never a file or dm name). Each write
// is atomic and durable (temp file, fsync, rename, fsync of the folder), so a crash leaves the old
// record or the new one. `state` says how far the snapshot's device got:
//   creating  the record came first; the device may or may not exist (open deletes both)
//   ready     the device exists: the snapshot is what the record says
//   removing  the removal began (open finishes it)
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, makeDirs, writeFileAtomic } from '../thin/index.js';
import type { SnapshotInfo, SnapshotKind } from './types.js';

export type RecordState = 'creating' | 'ready' | 'removing';

export interface SnapshotRecord extends SnapshotInfo {
  /** The DeviceSet hash of the snapshot's thin device: `snap-<n>`. */
  id: string;
  state: RecordState;
}

/** Ids of snapshot devices: `snap-<n>`, n from 1; the base the snapshotter's parentless snapshots start from. */
export const ID_PREFIX = 'snap-';
export const BASE_ID = 'snap-base';
const ID = /^snap-([1-9][0-9]{0,15})$/;
const FILE_SUFFIX = '.json';
/** The base's record: written once the base is ready (base.ts). */
export const BASE_RECORD = 'base.json';
const TMP_PREFIX = '.tmp-';

const KINDS: readonly SnapshotKind[] = ['view', 'active', 'committed'];
const STATES: readonly RecordState[] = ['creating', 'ready', 'removing'];

/** The number of a snapshot id, or null for anything else (the base, a foreign hash). */
export function idNumber(id: string): number | null {
  const m = ID.exec(id);
  return m ? Number(m[1]) : null;
}

export function idOf(n: number): string {
  return `${ID_PREFIX}${n}`;
}

/** A record that cannot be read as one: names the file and what is wrong. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
  readonly code = 'EUCLEAN';
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`snapshot record ${path}: ${problem}`);
  }
}

/** A record as its file holds it: times as decimal strings of nanoseconds (JSON numbers lose them). */
export function encodeRecord(r: SnapshotRecord): string {
  const o = {
    id: r.id,
    state: r.state,
    name: r.name,
    parent: r.parent,
    kind: r.kind,
    labels: r.labels,
    created: r.created.toString(),
    updated: r.updated.toString(),
  };
  return `${JSON.stringify(o, null, 2)}\n`;
}

function stringField(path: string, o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new RecordError(path, `${key} is not a string`);
  return v;
}

function timeField(path: string, o: Record<string, unknown>, key: string): bigint {
  const v = o[key];
  if (typeof v !== 'string' || !/^(0|[1-9][0-9]{0,19})$/.test(v) || BigInt(v) >= 2n ** 64n) {
    throw new RecordError(path, `${key} is not a time in nanoseconds (a decimal string)`);
  }
  return BigInt(v);
}

function labelsField(path: string, o: Record<string, unknown>): Record<string, string> {
  const v = o['labels'];
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RecordError(path, 'labels is not an object');
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new RecordError(path, `label ${JSON.stringify(k)} is not a string`);
    out[k] = x;
  }
  return out;
}

/** Parse and check one record file's text; `path` names it in errors. */
export function decodeRecord(path: string, text: string): SnapshotRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new RecordError(path, `corrupted JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RecordError(path, 'not a JSON object');
  const o = v as Record<string, unknown>;
  const id = stringField(path, o, 'id');
  if (idNumber(id) === null) throw new RecordError(path, `id ${JSON.stringify(id)} is not snap-<n>`);
  const state = o['state'];
  if (!STATES.includes(state as RecordState))
    throw new RecordError(path, `state ${JSON.stringify(state)} is not one of ${STATES.join(', ')}`);
  const kind = o['kind'];
  if (!KINDS.includes(kind as SnapshotKind)) throw new RecordError(path, `kind ${JSON.stringify(kind)} is not one of ${KINDS.join(', ')}`);
  const name = stringField(path, o, 'name');
  if (name === '') throw new RecordError(path, 'name is empty');
  return {
    id,
    state: state as RecordState,
    name,
    parent: stringField(path, o, 'parent'),
    kind: kind as SnapshotKind,
    labels: labelsField(path, o),
    created: timeField(path, o, 'created'),
    updated: timeField(path, o, 'updated'),
  };
}

/** The folder of records. Only one process uses it at a time (the pool's home lock). */
export class RecordStore {
  private constructor(readonly dir: string) {}

  /** Open (creating) the folder; temp files a crash left are removed. */
  static open(dir: string): RecordStore {
    makeDirs(dir, 0o700);
    let removed = false;
    for (const name of readdirSync(dir)) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      unlinkSync(join(dir, name));
      removed = true;
    }
    if (removed) fsyncDir(dir);
    return new RecordStore(dir);
  }

  private fileOf(id: string): string {
    return join(this.dir, `${id}${FILE_SUFFIX}`);
  }

  /** Every snapshot record, by id order. A file whose name and id disagree is refused. */
  readAll(): SnapshotRecord[] {
    const out: SnapshotRecord[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith(FILE_SUFFIX) || name === BASE_RECORD) continue;
      const path = join(this.dir, name);
      const rec = decodeRecord(path, readFileSync(path, 'utf8'));
      if (`${rec.id}${FILE_SUFFIX}` !== name) throw new RecordError(path, `holds id ${rec.id}, not its file name's`);
      out.push(rec);
    }
    return out.sort((a, b) => idNumber(a.id)! - idNumber(b.id)!);
  }

  write(r: SnapshotRecord): void {
    writeFileAtomic(this.fileOf(r.id), encodeRecord(r));
  }

  /** Remove a record (durably); an absent one is not an error. */
  remove(id: string): void {
    try {
      unlinkSync(this.fileOf(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    fsyncDir(this.dir);
  }

  /** The base is ready: its record exists. */
  hasBase(): boolean {
    try {
      readFileSync(join(this.dir, BASE_RECORD));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  writeBase(info: { id: string; filesystem: string; created: bigint }): void {
    const o = { id: info.id, filesystem: info.filesystem, created: info.created.toString() };
    writeFileAtomic(join(this.dir, BASE_RECORD), `${JSON.stringify(o, null, 2)}\n`);
  }
}
