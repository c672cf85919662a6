// The snapshotter's face: containerd's snapshots service (serve) over the snapshotter. Kept off the
// package root, so that importing `devmapper` never loads gRPC: import `devmapper/snapshotter`.
export { Snapshotter, type SnapshotterExtras } from './snapshotter.js';
export { SnapshotError, type SnapshotErrorCode } from './errors.js';
export { parseFilter, parseFilters, parseSelectors, type FilterOperator, type Selector, type SnapshotPredicate } from './filters.js';
export { LIST_BATCH, serve, SocketAddressError, type ServeOptions, type SnapshotServer } from './server.js';
export { statusOf, type StatusError } from './status.js';
export type { Mount, SnapshotInfo, SnapshotKind, SnapshotterApi, SnapshotUsage, TimeNs } from './types.js';
export { nsOf, protoDir, SERVICE_NAME, snapshotsDefinition, timestampOf } from './wire.js';
