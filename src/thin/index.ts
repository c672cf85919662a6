// The thin-pool manager (Docker's devmapper DeviceSet): its public face.
export {
  DeviceSet,
  type DeviceSetExtras,
  type DeviceSetHook,
  type DevStatus,
  type DiskUsage,
  type HomeShutdown,
  type MountOptions,
  type PoolStatus,
  type ShutdownResult,
} from './device-set.js';
// The pool's own metadata put to use: its thin ids, their usage, the check before activation.
export type { DockerAdoption, OpenReconcile, PoolMetadataCheck, PoolThin } from './device-set.js';
export { metadataReadPath, withMetadataSnapshot } from './metadata/snapshot.js';
export { MetadataCheckError, MetadataSnapshotBusyError, PoolActiveError } from './errors.js';
export {
  CommandError,
  DeviceBusyError,
  DeviceExistsError,
  InvalidHashError,
  MetadataError,
  NotMountedError,
  OptionError,
  PoolLockedError,
  PoolOptionConflictError,
  PoolSpaceError,
  PoolStateError,
  TransactionMismatchError,
  UnknownDeviceError,
} from './errors.js';
// Growing a pool, also from the kernel's view alone (a process beside the one holding the home).
export { resizePool, resizePoolByName, THIN_METADATA_MAX_BYTES, type PoolResizeTarget, type ResizeOptions } from './resize.js';
export { RESIZE_LOCK_DIR, ResizeLockedError, resizeLockPath } from './resize-lock.js';
export { MetadataDeviceNotZeroedError } from './metadata-device.js';
export { DEFAULTS, XFS_MIN_BYTES, parsePoolOptions, parseSize, type FsType, type PoolOptions, type PoolOptionsInput } from './options.js';
export {
  type MetadataBlocks,
  type ReadOptions,
  type ThinDeviceInfo,
  type ThinDeviceUsage,
  type ThinMetadata,
  type ThinUsage,
  forEachMapping,
  openMetadataBlocks,
  withMetadataBlocks,
  readThinDevices,
  readThinUsage,
} from './metadata/index.js';
export { type MetadataCheck, type MetadataProblem, checkThinMetadata } from './metadata/index.js';
// Durable files, for the layers above that keep records beside the pool's.
export { fsyncDir, makeDirs } from './dirs.js';
export { writeFileAtomic } from './metadata-store.js';
// Watching a pool: its dm events, use and mode; lvm's auto-extend policy.
export {
  MONITOR_INTERVAL_MS,
  PoolMonitor,
  roomFor,
  type CheckReason,
  type PoolMode,
  type PoolMonitorEvent,
  type PoolMonitorOptions,
  type PoolPart,
  type PoolResize,
  type PoolSnapshot,
  type PoolUse,
} from './monitor.js';
export {
  AUTOEXTEND_DEFAULTS,
  AUTOEXTEND_MIN_THRESHOLD,
  autoextendOn,
  autoextendPolicy,
  extendDecision,
  overThreshold,
  type AutoextendPolicy,
  type ExtendDecision,
  type ExtendInput,
} from './autoextend.js';
