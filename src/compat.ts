// devmapper/compat: the Task API of Docker's Go devmapper package, for code ported from it. A Task
// runs through DeviceMapper; taskCreate() without one uses a process-wide default, which is why
// this lives apart from the package root. Its logging hooks (LogInit, LogInitVerbose,
// DevmapperLogger...) drive the library's log, the one setLogger/setLogLevel set at the root.
import {
  errnoNumber,
  formatLogMessage,
  log,
  setLogLevel,
  setLogger,
  type LogFields,
  type LogFn,
  type LogLevel,
  type LogThreshold,
} from './ioctl/index.js';

export {
  AddNodeType,
  DmTaskError,
  ErrBusy,
  ErrInvalidAddNode,
  ErrNilCookie,
  ErrTaskAddTarget,
  ErrTaskGetDriverVersion,
  ErrTaskGetInfo,
  ErrTaskRun,
  ErrTaskSetAddNode,
  ErrTaskSetCookie,
  ErrTaskSetMessage,
  ErrTaskSetName,
  ErrTaskSetRo,
  ErrTaskSetSector,
  Task,
  TaskType,
  setDefaultDeviceMapper,
  taskCreate,
  udevWait,
  type Info,
} from './dm/index.js';

// Docker's ProbeFsType(device) (string, error): here it returns the type or throws UnknownFsError.
export { probeFsType as ProbeFsType } from './blk/index.js';
// Docker's logging hooks. Levels are libdevmapper's _LOG_* numbers, as Docker's package passes
// them: the library's error, warn, info reach a DevmapperLogger as 3, 4, 6, and debug and trace
// (each ioctl, which libdevmapper logs at _LOG_DEBUG) as 7.

/** libdevmapper's _LOG_FATAL: the library has no message this severe. */
export const LogLevelFatal = 2;
/** _LOG_ERR */
export const LogLevelErr = 3;
/** _LOG_WARN */
export const LogLevelWarn = 4;
/** _LOG_NOTICE: the library's warn covers it. */
export const LogLevelNotice = 5;
/** _LOG_INFO */
export const LogLevelInfo = 6;
/** _LOG_DEBUG: debug messages and each ioctl. */
export const LogLevelDebug = 7;

const DM_LEVEL: Readonly<Record<LogLevel, number>> = {
  error: LogLevelErr,
  warn: LogLevelWarn,
  info: LogLevelInfo,
  debug: LogLevelDebug,
  trace: LogLevelDebug,
};

/**
 * Docker's logger interface: libdevmapper's record of a message. `file` and `line` are empty here
 * (the library has no C source to name); `dmError` is the errno of a failed ioctl, else 0.
 */
export interface DevmapperLogger {
  log(level: number, file: string, line: number, dmError: number, message: string): void;
}

let dmLogger: DevmapperLogger | null = null;

/** The errno of a record that names one (a failed ioctl's `result=EBUSY`), else 0. */
function dmErrorOf(fields: LogFields | undefined): number {
  const r = fields?.result;
  return typeof r === 'string' ? (errnoNumber(r) ?? 0) : 0;
}

const toDevmapperLogger: LogFn = (level, msg, fields) => {
  dmLogger?.log(DM_LEVEL[level], '', 0, dmErrorOf(fields), formatLogMessage(msg, fields));
};

/** Installs `logger` (null: silent again) and routes the library's log to it (LogWithErrnoInit). */
export function LogInit(logger: DevmapperLogger | null): void {
  dmLogger = logger;
  LogWithErrnoInit();
}

/** Routes the library's log to the logger LogInit installed, as Docker's call registers its callback. */
export function LogWithErrnoInit(): void {
  setLogger(dmLogger === null ? null : toDevmapperLogger);
}

/**
 * The most detailed libdevmapper level that reaches the logger: 7 (LogLevelDebug) or more lets
 * through each ioctl, 6 info, 4 and 5 warnings, 3 errors, less nothing.
 */
export function LogInitVerbose(level: number): void {
  const threshold: LogThreshold =
    level >= LogLevelDebug
      ? 'trace'
      : level >= LogLevelInfo
        ? 'info'
        : level >= LogLevelWarn
          ? 'warn'
          : level >= LogLevelErr
            ? 'error'
            : 'silent';
  setLogLevel(threshold);
}

/** Docker's name for libdevmapper's dm_log_init_verbose: the same as LogInitVerbose. */
export const DmLogInitVerbose: (level: number) => void = LogInitVerbose;

/**
 * A message in libdevmapper's form, into the library's log (as libdevmapper calls Docker's
 * callback): level 3 or less is an error, 4 and 5 a warning, 6 info, 7 debug.
 */
export function DevmapperLogCallback(level: number, file: string, line: number, dmErrnoOrClass: number, message: string): void {
  const fields = { file: file || undefined, line: line || undefined, dm_errno_or_class: dmErrnoOrClass || undefined };
  if (level <= LogLevelErr) log.error(message, fields);
  else if (level <= LogLevelNotice) log.warn(message, fields);
  else if (level === LogLevelInfo) log.info(message, fields);
  else log.debug(message, fields);
}
