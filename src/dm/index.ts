// The typed device-mapper API.
export { DeviceMapper, type DeviceMapperOptions } from './device-mapper.js';
export { InvalidArgumentError } from './errors.js';
export { DmError } from '../ioctl/errors.js';
export type { DeviceInfo, DeviceListEntry } from './info.js';
export {
  THIN_ID_MAX,
  checkDeviceRef,
  deviceName,
  deviceUuid,
  sectors,
  thinId,
  type DeviceName,
  type DeviceRef,
  type DeviceUuid,
  type ThinId,
} from './names.js';
export { MapperNodes, DM_NODE_MODE, type MakeNode, type NodeManager } from './nodes.js';
export { UDEV_CONTROL_PATH, detectUdev, udevEventNr, type UdevMode, type UdevOp, type UdevPolicy } from './udev.js';
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
  type ErrorTarget,
  type GenericTarget,
  type LinearTarget,
  type Target,
  type ThinPoolTarget,
  type ThinTarget,
  type TypedTarget,
  type ZeroTarget,
} from './targets.js';
export { parseThinPoolStatus, type ThinPoolStatus } from './status/thin-pool.js';
export { parseThinStatus, type ThinStatus } from './status/thin.js';
export {
  createSnap,
  createThin,
  deleteThin,
  releaseMetadataSnap,
  reserveMetadataSnap,
  setTransactionId,
} from './thin-messages.js';
export type { CreateOptions } from './commands/create.js';
export type { DeviceListView } from './commands/list.js';
export { DEFAULT_REMOVE_RETRY, type RemoveOptions, type RetryPolicy } from './commands/remove.js';
export type { ResumeOptions, SuspendOptions } from './commands/suspend.js';
export type { TargetStatus } from './commands/status.js';
export type { Geometry } from './commands/set-geometry.js';
export type { DmTargetVersion } from '../structs/target-versions.js';
export { removeByPrefix, teardownOrder, type TeardownNode, type TeardownOptions, type TeardownResult } from './teardown.js';
export * from './task.js';
export {
  DmEventStream,
  hasArmPoll,
  type DmEventMechanism,
  type DmEventResult,
  type DmEventStreamOptions,
} from './events.js';
