// The snapshots service on the wire: the .proto files loaded at run time (proto-loader), and the
// conversions between containerd's messages and the snapshotter's types. Shared by the server and by
// clients (tests, tools) so both sides read the same descriptor.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import type { SnapshotInfo, SnapshotKind, TimeNs } from './types.js';

export const SERVICE_NAME = 'containerd.services.snapshots.v1.Snapshots';
export const SNAPSHOTS_PROTO = 'containerd/services/snapshots/v1/snapshots.proto';
export const MOUNT_PROTO = 'containerd/types/mount.proto';

/** proto-loader's options: field names as in the .proto, int64 as decimal strings, enums by name, defaults filled in. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/**
 * Where the .proto files are: beside this module (src/ through tsx, dist/ from tsc), or, in the CLI's
 * bundle (dist/cli/devmapper.cjs), in the dist/snapshotter/proto that the build copies there.
 */
export function protoDir(): string {
  const candidates = [new URL('./proto/', import.meta.url), new URL('../snapshotter/proto/', import.meta.url)];
  for (const url of candidates) {
    const dir = fileURLToPath(url);
    if (existsSync(`${dir}${SNAPSHOTS_PROTO}`)) return dir;
  }
  throw new Error(`ENOENT: ${SNAPSHOTS_PROTO} is in none of ${candidates.map((u) => fileURLToPath(u)).join(', ')}`);
}

let loaded: protoLoader.PackageDefinition | undefined;

/** The package definition of the snapshots service and the messages it uses (loaded once). */
export function snapshotsDefinition(): protoLoader.PackageDefinition {
  loaded ??= protoLoader.loadSync(SNAPSHOTS_PROTO, { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
  return loaded;
}

// ---- messages as proto-loader presents them ------------------------------------------------------

/** google.protobuf.Timestamp; seconds is an int64 (a decimal string in, a string or number out). */
export interface WireTimestamp {
  seconds: string | number;
  nanos: number;
}

export type WireKind = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';

export interface WireInfo {
  name: string;
  parent: string;
  kind: WireKind;
  created_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  labels: Record<string, string>;
}

const NS_PER_S = 1_000_000_000n;

/** Nanoseconds since the epoch as a Timestamp: seconds rounded down, nanos in [0, 1e9), nothing lost. */
export function timestampOf(ns: TimeNs): WireTimestamp {
  let seconds = ns / NS_PER_S;
  let nanos = ns % NS_PER_S;
  if (nanos < 0n) {
    seconds -= 1n;
    nanos += NS_PER_S;
  }
  return { seconds: seconds.toString(), nanos: Number(nanos) };
}

/** A Timestamp as nanoseconds since the epoch; an absent one is 0. */
export function nsOf(ts: WireTimestamp | null | undefined): TimeNs {
  if (!ts) return 0n;
  return BigInt(ts.seconds) * NS_PER_S + BigInt(ts.nanos);
}

const KIND_TO_WIRE: Readonly<Record<SnapshotKind, WireKind>> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

export function wireKind(kind: SnapshotKind): WireKind {
  return KIND_TO_WIRE[kind];
}

/** The snapshotter's kind of a wire Kind; UNKNOWN has none. */
export function kindOf(kind: WireKind): SnapshotKind | undefined {
  return (Object.keys(KIND_TO_WIRE) as SnapshotKind[]).find((k) => KIND_TO_WIRE[k] === kind);
}

export function wireInfo(info: SnapshotInfo): WireInfo {
  return {
    name: info.name,
    parent: info.parent,
    kind: wireKind(info.kind),
    created_at: timestampOf(info.created),
    updated_at: timestampOf(info.updated),
    labels: { ...info.labels },
  };
}
