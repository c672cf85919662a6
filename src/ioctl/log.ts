// The library's log: silent until a program installs a logger. The levels are libdevmapper's
// (_LOG_ERR; _LOG_WARN and _LOG_NOTICE as one; _LOG_INFO; _LOG_DEBUG) plus `trace`, one line per
// ioctl, which libdevmapper logs at _LOG_DEBUG. A call below the level in effect returns after
// one comparison; callers on the ioctl path test `log.enabled('trace')` before building fields, so
// that a silent library allocates nothing there (elsewhere, on paths that are not hot, a call's
// fields object is all a silent log costs).
import { errnoName } from './errno.js';
import type { IoctlResult } from './transport.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';
/** A level to set: a message level, or `silent` for none. */
export type LogThreshold = LogLevel | 'silent';
/** Most severe first: a threshold lets through its own level and those before it. */
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug', 'trace'];

export type LogFieldValue = string | number | bigint | boolean | null | undefined;
/** key=value context of a message; `undefined` values are left out of the line. */
export type LogFields = Readonly<Record<string, LogFieldValue>>;
/** Receives every message at or above the level in effect. It should not throw (what it throws is dropped). */
export type LogFn = (level: LogLevel, msg: string, fields: LogFields | undefined) => void;

const RANK: Readonly<Record<LogThreshold, number>> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

let sink: LogFn | null = null;
let threshold: LogThreshold = 'info';
/** The rank that passes: 0 (nothing) while no logger is installed. */
let max = 0;

function update(): void {
  max = sink === null ? 0 : RANK[threshold];
}

/** Installs the logger (null: silent again). The level stays as set (`info` until setLogLevel). */
export function setLogger(fn: LogFn | null): void {
  sink = fn;
  update();
}

/** The most detailed level that reaches the logger; `silent` for none. */
export function setLogLevel(level: LogThreshold): void {
  if (!(level in RANK)) throw new TypeError(`log level ${JSON.stringify(level)}: expected one of silent, ${LOG_LEVELS.join(', ')}`);
  threshold = level;
  update();
}

export function getLogLevel(): LogThreshold {
  return threshold;
}

/** A level's name as DEVMAPPER_LOG or a config file gives it (any case); undefined when it is none. */
export function parseLogLevel(text: string): LogThreshold | undefined {
  const l = text.trim().toLowerCase();
  return l in RANK ? (l as LogThreshold) : undefined;
}

function emit(level: LogLevel, msg: string, fields: LogFields | undefined): void {
  try {
    sink?.(level, msg, fields);
  } catch {
    // A failing logger must not fail the device operation it reports.
  }
}

export interface Log {
  /** Whether a message at `level` would reach the logger: test it before building costly fields. */
  enabled(level: LogLevel): boolean;
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  trace(msg: string, fields?: LogFields): void;
}

/** The library's one log. */
export const log: Log = {
  enabled: (level) => RANK[level] <= max,
  error: (msg, fields) => {
    if (max >= 1) emit('error', msg, fields);
  },
  warn: (msg, fields) => {
    if (max >= 2) emit('warn', msg, fields);
  },
  info: (msg, fields) => {
    if (max >= 3) emit('info', msg, fields);
  },
  debug: (msg, fields) => {
    if (max >= 4) emit('debug', msg, fields);
  },
  trace: (msg, fields) => {
    if (max >= 5) emit('trace', msg, fields);
  },
};

/**
 * One ioctl at trace level: its request name, the device, and `result=ok` or the errno's name.
 * Takes only values the caller already has, so that it allocates nothing while tracing is off.
 */
export function logIoctl(request: string, device: string | undefined, r: IoctlResult): void {
  if (max < 5) return;
  emit('trace', `ioctl ${request}`, { device, result: ioctlResultText(r) });
}

/** `ok`, or the errno's name (EBUSY) as a failed ioctl set it. */
export function ioctlResultText(r: IoctlResult): string {
  return r.ret === -1 ? errnoName(r.errno) : 'ok';
}

// A bare value stays bare; one with a space, quote, '=' or control character (or empty) is quoted.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what must be quoted.
const PLAIN = /^[^\s"=\\\x00-\x1f\x7f]+$/;

function formatValue(v: LogFieldValue): string {
  if (typeof v === 'string') return PLAIN.test(v) ? v : JSON.stringify(v);
  return String(v);
}

/** `devmapper: <level>: <msg> key=value...`: one line, no newline; what the CLI writes to stderr. */
export function formatLogLine(level: LogLevel, msg: string, fields?: LogFields): string {
  return `devmapper: ${level}: ${formatLogMessage(msg, fields)}`;
}

/** `<msg> key=value...`: the message and its fields as one text. */
export function formatLogMessage(msg: string, fields?: LogFields): string {
  let line = msg;
  if (fields) {
    for (const key of Object.keys(fields)) {
      const v = fields[key];
      if (v !== undefined) line += ` ${key}=${formatValue(v)}`;
    }
  }
  return line;
}

/** A logger that writes formatLogLine's lines to stderr. */
export const stderrLogger: LogFn = (level, msg, fields) => {
  process.stderr.write(`${formatLogLine(level, msg, fields)}\n`);
};
