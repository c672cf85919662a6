// What containerd's snapshots service asks of a snapshotter, in this project's types. The gRPC
// server (server.ts) speaks containerd.services.snapshots.v1 on top of these; the snapshotter
// (snapshotter.ts) keeps the records and drives the pool.

/** containerd's snapshots.Kind, by its proto enum names (VIEW 1, ACTIVE 2, COMMITTED 3). */
export type SnapshotKind = 'view' | 'active' | 'committed';

/** Wall-clock time in nanoseconds since the epoch (CLOCK_REALTIME): containerd compares times exactly. */
export type TimeNs = bigint;

export interface SnapshotInfo {
  /** The key of an active or view snapshot, the name of a committed one. */
  name: string;
  /** The committed parent's name; '' for none. */
  parent: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  created: TimeNs;
  updated: TimeNs;
}

/** containerd.types.Mount. */
export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** containerd's snapshots.Usage: what the snapshot holds beyond its parent. */
export interface SnapshotUsage {
  size: bigint;
  inodes: bigint;
}

/** The snapshotter as the service calls it; keys and names are containerd's, never path components. */
export interface SnapshotterApi {
  prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]>;
  view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]>;
  mounts(key: string): Promise<Mount[]>;
  commit(name: string, key: string, labels: Record<string, string>): Promise<void>;
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  /** `fieldpaths` as containerd's update_mask: [] replaces all labels, else only 'labels' / 'labels.<key>'. */
  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, fieldpaths: readonly string[]): Promise<SnapshotInfo>;
  /** Every snapshot (the server filters and streams them). */
  list(): Promise<SnapshotInfo[]>;
  usage(key: string): Promise<SnapshotUsage>;
  /** Frees what removals left behind (deferred deletes); Unimplemented is also acceptable to containerd. */
  cleanup(): Promise<void>;
  /** Waits for calls in flight, releases the home; never shuts the pool down (mounts stay). */
  close(): Promise<void>;
}
