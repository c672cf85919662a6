// devmapper: Linux device-mapper, loop devices and a dm-thin pool manager over raw ioctls.
// The package root: what a program that manages devices needs, each name chosen. The kernel
// struct codecs are `devmapper/structs`, Docker's Go Task API is `devmapper/compat`, the reply
// encoders and fault injection for tests are `devmapper/testing`; libc stays internal.

// The typed device-mapper API: one method per DM command.
export {
  DeviceMapper,
  DEFAULT_REMOVE_RETRY,
  type CreateOptions,
  type DeviceInfo,
  type DeviceListEntry,
  type DeviceListView,
  type DeviceMapperOptions,
  type DmTargetVersion,
  type Geometry,
  type MakeNode,
  type NodeManager,
  type RemoveOptions,
  type ResumeOptions,
  type RetryPolicy,
  type SuspendOptions,
  type TargetStatus,
  type UdevMode,
} from './dm/index.js';
export type { DmControl, DmControlOptions, IoctlArg, IoctlResult, Transport } from './ioctl/index.js';

// Names, uuids, thin ids, sectors and bytes, validated where they enter.
export {
  THIN_ID_MAX,
  checkDeviceRef,
  deviceName,
  deviceUuid,
  thinId,
  type DeviceName,
  type DeviceRef,
  type DeviceUuid,
  type ThinId,
} from './dm/index.js';
export { formatDev, type DevT } from './structs/index.js';
export {
  SECTOR_SHIFT,
  SECTOR_SIZE,
  SectorAlignmentError,
  bytes,
  bytesToSectors,
  sectors,
  sectorsToBytes,
  u64,
  type Bytes,
  type Sectors,
} from './structs/index.js';

// Targets and their table lines; the status lines of dm-thin.
export {
  THIN_POOL_BLOCK_MAX_SECTORS,
  THIN_POOL_BLOCK_MIN_SECTORS,
  checkTable,
  formatTableLine,
  formatTargetParams,
  isGenericTarget,
  isLinearTarget,
  isTargetType,
  isThinPoolTarget,
  isThinTarget,
  parseTable,
  parseTableLine,
  parseTarget,
  parseThinPoolStatus,
  parseThinStatus,
  type ErrorTarget,
  type GenericTarget,
  type LinearTarget,
  type Target,
  type ThinPoolStatus,
  type ThinPoolTarget,
  type ThinStatus,
  type ThinTarget,
  type TypedTarget,
  type ZeroTarget,
} from './dm/index.js';

// dm-thin pool messages.
export {
  createSnap,
  createThin,
  deleteThin,
  releaseMetadataSnap,
  reserveMetadataSnap,
  setTransactionId,
} from './dm/index.js';

// Loop devices.
export {
  attachLoop,
  detachLoop,
  findLoopByFile,
  listLoops,
  loopDevice,
  loopStatus,
  releaseLoop,
  setLoopCapacity,
  type AttachOptions,
  type BoundLoop,
  type DetachOptions,
  type LoopDevice,
  type LoopOptions,
  type LoopRef,
} from './loop/index.js';
export type { LoopInfo64 } from './structs/index.js';

// Block devices.
export {
  blockDeviceSizeBytes,
  discard,
  flushBuffers,
  logicalSectorSizeBytes,
  physicalSectorSizeBytes,
  probeFsType,
  readFsSuperblock,
  UnknownFsError,
  type BlkOptions,
  type FsSuperblock,
  type FsSuperblockType,
  type PathOrFd,
} from './blk/index.js';

// The thin-pool manager and the storage driver over it.
export {
  DeviceSet,
  parsePoolOptions,
  parseSize,
  type DevStatus,
  type DeviceSetExtras,
  type DeviceSetHook,
  type DiskUsage,
  type FsType,
  type PoolOptions,
  type PoolOptionsInput,
  type PoolStatus,
} from './thin/index.js';
export {
  MetadataCheckError,
  MetadataSnapshotBusyError,
  PoolActiveError,
  metadataReadPath,
  withMetadataSnapshot,
  type DockerAdoption,
  type OpenReconcile,
  type PoolMetadataCheck,
  type PoolThin,
} from './thin/index.js';
// Growing a pool from the kernel's view alone (a process beside the one holding its home).
export { resizePoolByName, ResizeLockedError, THIN_METADATA_MAX_BYTES, type PoolResizeTarget } from './thin/index.js';
// A device's dm events; a pool's watcher with lvm's auto-extend policy (`devmapper pool monitor`).
export { DmEventStream, hasArmPoll, type DmEventMechanism, type DmEventResult, type DmEventStreamOptions } from './dm/index.js';
export {
  AUTOEXTEND_DEFAULTS,
  MONITOR_INTERVAL_MS,
  PoolMonitor,
  autoextendPolicy,
  extendDecision,
  type AutoextendPolicy,
  type ExtendDecision,
  type PoolMonitorEvent,
  type PoolMonitorOptions,
  type PoolResize,
} from './thin/index.js';
export { MetadataDeviceNotZeroedError } from './thin/index.js';
export { Driver } from './driver/index.js';

// dm-thin's own metadata, read without thin-provisioning-tools.
export {
  forEachMapping,
  openMetadataBlocks,
  withMetadataBlocks,
  readThinDevices,
  readThinUsage,
  type MetadataBlocks,
  type ReadOptions,
  type ThinDeviceInfo,
  type ThinDeviceUsage,
  type ThinMetadata,
  type ThinUsage,
} from './thin/index.js';
export { checkThinMetadata, type MetadataCheck, type MetadataProblem } from './thin/index.js';
export type { SpaceMapRoot, ThinSuperblock } from './structs/index.js';

// The library's log: silent until a logger is installed (docs/api.md, Logging).
export {
  LOG_LEVELS,
  formatLogLine,
  getLogLevel,
  parseLogLevel,
  setLogLevel,
  setLogger,
  stderrLogger,
  type LogFieldValue,
  type LogFields,
  type LogFn,
  type LogLevel,
  type LogThreshold,
} from './ioctl/index.js';

// Errors: each carries the errno name as `code` where the kernel or libc gave one.
export {
  DmError,
  DmVersionError,
  Errno,
  NoDeviceMapperError,
  SysError,
  errnoMessage,
  errnoName,
  errnoNumber,
} from './ioctl/index.js';
export { InvalidArgumentError } from './dm/index.js';
export { DecodeError, EncodeError, ThinMetadataError } from './structs/index.js';
export { LoopNotOursError } from './loop/index.js';
export {
  CommandError,
  DeviceBusyError,
  DeviceExistsError,
  InvalidHashError,
  MetadataError,
  NotMountedError,
  OptionError,
  PoolLockedError,
  PoolSpaceError,
  PoolStateError,
  TransactionMismatchError,
  UnknownDeviceError,
} from './thin/index.js';
