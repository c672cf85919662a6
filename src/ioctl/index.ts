// The system-call layer: the only module that reaches the kernel (through libc.ts).
export type { IoctlArg, IoctlResult, Transport } from './transport.js';
export { errnoMessage, errnoName, errnoNumber, Errno } from './errno.js';
export { SysError, DmError, NoDeviceMapperError } from './errors.js';
export * from './libc.js';
export {
  LOG_LEVELS,
  formatLogLine,
  formatLogMessage,
  getLogLevel,
  ioctlResultText,
  log,
  logIoctl,
  parseLogLevel,
  setLogLevel,
  setLogger,
  stderrLogger,
  type Log,
  type LogFieldValue,
  type LogFields,
  type LogFn,
  type LogLevel,
  type LogThreshold,
} from './log.js';
export { FaultInjectingTransport, type FaultMatch, type IoctlCall } from './fault.js';
export { ensureNode, type EnsureNodeResult, type NodeSpec, type NodeSys } from './nodes.js';
export {
  DmControl,
  DmVersionError,
  DM_CONTROL_PATH,
  DM_INITIAL_BUFFER_SIZE,
  DM_MAX_BUFFER_SIZE,
  findDmMiscDev,
  type DmControlOptions,
  type DmControlSys,
  type DmReply,
  type DmRunRequest,
} from './dm-control.js';
