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
