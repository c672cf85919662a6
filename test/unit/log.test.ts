// The library's log: silent by default, levels that filter, the line format, the trace of each dm
// ioctl (through DmControl with a transport that plays the kernel), Docker's compat hooks, and the
// CLI's global -v flags and DEVMAPPER_LOG.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  DevmapperLogCallback,
  DmLogInitVerbose,
  LogInit,
  LogInitVerbose,
  LogLevelDebug,
  LogLevelErr,
  LogLevelFatal,
  LogLevelInfo,
  LogLevelNotice,
  LogLevelWarn,
  LogWithErrnoInit,
  type DevmapperLogger,
} from '../../src/compat.js';
import { main, parseGlobalOptions } from '../../src/cli/main.js';
import {
  DmControl,
  DmError,
  Errno,
  LOG_LEVELS,
  formatLogLine,
  getLogLevel,
  log,
  logIoctl,
  parseLogLevel,
  setLogLevel,
  setLogger,
  stderrLogger,
  type IoctlArg,
  type IoctlResult,
  type LogFields,
  type LogLevel,
  type Transport,
} from '../../src/ioctl/index.js';
import { DM_COMMANDS } from '../../src/structs/commands.js';
import { DM_IOCTL_OFFSETS, DmFlag } from '../../src/structs/dm-ioctl.js';
import { encodeDev } from '../../src/structs/dev.js';
import * as root from '../../src/index.js';

type Record_ = [LogLevel, string, LogFields | undefined];

function recorder(): { records: Record_[]; fn: (level: LogLevel, msg: string, fields: LogFields | undefined) => void } {
  const records: Record_[] = [];
  return { records, fn: (level, msg, fields) => records.push([level, msg, fields]) };
}

afterEach(() => {
  setLogger(null);
  setLogLevel('info');
  LogInit(null);
});

describe('levels', () => {
  it('is silent by default: nothing is enabled and no message reaches anything', () => {
    expect(getLogLevel()).toBe('info');
    for (const l of LOG_LEVELS) expect(log.enabled(l), l).toBe(false);
    // Fields whose reading would throw: a silent log never looks at them.
    const trap = new Proxy({} as LogFields, {
      ownKeys: () => {
        throw new Error('fields read while silent');
      },
      get: () => {
        throw new Error('fields read while silent');
      },
    });
    for (const l of LOG_LEVELS) log[l]('x', trap);
  });

  it('a logger gets info and more severe by default; each level lets through itself and those before it', () => {
    const r = recorder();
    setLogger(r.fn);
    for (const l of LOG_LEVELS) log[l](`m-${l}`);
    expect(r.records.map(([l]) => l)).toEqual(['error', 'warn', 'info']);
    for (const [i, threshold] of LOG_LEVELS.entries()) {
      r.records.length = 0;
      setLogLevel(threshold);
      for (const l of LOG_LEVELS) log[l](`m-${l}`, { k: 1 });
      expect(r.records.map(([l]) => l)).toEqual(LOG_LEVELS.slice(0, i + 1));
      expect(LOG_LEVELS.map((l) => log.enabled(l))).toEqual(LOG_LEVELS.map((_, j) => j <= i));
    }
    expect(r.records.at(-1)).toEqual(['trace', 'm-trace', { k: 1 }]);
  });

  it('silent, and setLogger(null), stop every message', () => {
    const r = recorder();
    setLogger(r.fn);
    setLogLevel('silent');
    for (const l of LOG_LEVELS) log[l]('x');
    setLogLevel('trace');
    setLogger(null);
    for (const l of LOG_LEVELS) log[l]('x');
    expect(r.records).toEqual([]);
    expect(LOG_LEVELS.some((l) => log.enabled(l))).toBe(false);
  });

  it('refuses a level that is none, and parses names in any case', () => {
    expect(() => setLogLevel('verbose' as LogLevel)).toThrow(
      /log level "verbose": expected one of silent, error, warn, info, debug, trace/,
    );
    expect(getLogLevel()).toBe('info');
    expect(parseLogLevel(' TRACE ')).toBe('trace');
    expect(parseLogLevel('silent')).toBe('silent');
    expect(parseLogLevel('warning')).toBeUndefined();
    expect(parseLogLevel('3')).toBeUndefined();
  });

  it('drops what a logger throws: the operation it reports goes on', () => {
    setLogger(() => {
      throw new Error('disk full');
    });
    expect(() => log.error('x')).not.toThrow();
  });
});

describe('format', () => {
  it('devmapper: <level>: <msg> key=value, quoting what needs it, leaving undefined out', () => {
    expect(
      formatLogLine('info', 'mounted', {
        device: '/dev/mapper/pool-base',
        target: '/mnt/a b',
        data: 'context="system_u:object_r:x:s0"',
        empty: '',
        eq: 'a=b',
        nl: 'a\nb',
        flags: 0,
        big: 18446744073709551615n,
        ok: true,
        none: null,
        gone: undefined,
      }),
    ).toBe(
      'devmapper: info: mounted device=/dev/mapper/pool-base target="/mnt/a b" data="context=\\"system_u:object_r:x:s0\\"" empty="" eq="a=b" nl="a\\nb" flags=0 big=18446744073709551615 ok=true none=null',
    );
    expect(formatLogLine('trace', 'ioctl DM_VERSION')).toBe('devmapper: trace: ioctl DM_VERSION');
  });

  it('stderrLogger writes one line', () => {
    let out = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((t: string | Uint8Array) => {
      out += String(t);
      return true;
    });
    try {
      setLogger(stderrLogger);
      log.warn('w', { a: 1 });
      log.debug('not at info');
    } finally {
      vi.restoreAllMocks();
    }
    expect(out).toBe('devmapper: warn: w a=1\n');
  });
});

// A transport that answers like the kernel for what these tests send: DM_VERSION's version, a
// created device's number, and chosen failures.
const FD = 7;
class FakeKernel implements Transport {
  calls = 0;
  fail: Map<number, number> = new Map();
  ioctl(_fd: number, request: number, arg: IoctlArg): IoctlResult {
    this.calls++;
    const errno = this.fail.get(request);
    if (errno !== undefined) return { ret: -1, errno };
    if (typeof arg === 'number') throw new Error('dm ioctls take a buffer');
    const b = Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
    if (request === DM_COMMANDS.DM_VERSION.request) {
      b.writeUInt32LE(4, DM_IOCTL_OFFSETS.version);
      b.writeUInt32LE(47, DM_IOCTL_OFFSETS.version + 4);
    }
    if (request === DM_COMMANDS.DM_DEV_CREATE.request) {
      b.writeBigUInt64LE(encodeDev({ major: 254, minor: 3 }), DM_IOCTL_OFFSETS.dev);
      b.writeUInt32LE(b.readUInt32LE(DM_IOCTL_OFFSETS.flags) | DmFlag.DM_EXISTS_FLAG, DM_IOCTL_OFFSETS.flags);
    }
    return { ret: 0, errno: 0 };
  }
  async ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult> {
    return this.ioctl(fd, request, arg);
  }
}

describe('each dm ioctl at trace level', () => {
  let dir: string;
  let kernel: FakeKernel;
  let control: DmControl;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'log-test-'));
    writeFileSync(join(dir, 'control'), '');
    kernel = new FakeKernel();
    control = DmControl.open({
      transport: kernel,
      controlPath: join(dir, 'control'),
      miscClassDir: join(dir, 'none'),
      procMiscPath: join(dir, 'none'),
      sys: { open: () => FD, close: () => undefined, mknod: () => undefined },
    });
  });
  afterEach(() => {
    control.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('names the command, the device, the flags sent, the result and what the kernel answered', async () => {
    const r = recorder();
    setLogger(r.fn);
    setLogLevel('trace');
    control.run('DM_DEV_CREATE', { name: 'lin0', uuid: 'LVM-x', flags: DmFlag.DM_READONLY_FLAG });
    kernel.fail.set(DM_COMMANDS.DM_DEV_REMOVE.request, Errno.EBUSY);
    await expect(control.runAsync('DM_DEV_REMOVE', { name: 'lin0' })).rejects.toThrow(DmError);
    expect(r.records.map(([l, m, f]) => formatLogLine(l, m, f))).toEqual([
      'devmapper: trace: ioctl DM_DEV_CREATE name=lin0 uuid=LVM-x flags=DM_READONLY_FLAG result=ok reply_dev=254:3 reply_flags=DM_READONLY_FLAG|DM_EXISTS_FLAG',
      'devmapper: trace: ioctl DM_DEV_REMOVE name=lin0 flags=0 result=EBUSY',
    ]);
  });

  it('at debug and below: no trace line, and the calls still reach the kernel', () => {
    const r = recorder();
    setLogger(r.fn);
    setLogLevel('debug');
    control.run('DM_DEV_CREATE', { name: 'lin0' });
    expect(kernel.calls).toBe(2); // DM_VERSION at open, then the create
    expect(r.records).toEqual([]);
  });

  it('a loop or block ioctl: its request name, the device and the errno', () => {
    const r = recorder();
    setLogger(r.fn);
    logIoctl('LOOP_CONFIGURE', '/dev/loop3', { ret: -1, errno: Errno.EBUSY });
    setLogLevel('trace');
    logIoctl('LOOP_CONFIGURE', '/dev/loop3', { ret: -1, errno: Errno.EBUSY });
    logIoctl('LOOP_CLR_FD', '/dev/loop3', { ret: 0, errno: 0 });
    expect(r.records.map(([l, m, f]) => formatLogLine(l, m, f))).toEqual([
      'devmapper: trace: ioctl LOOP_CONFIGURE device=/dev/loop3 result=EBUSY',
      'devmapper: trace: ioctl LOOP_CLR_FD device=/dev/loop3 result=ok',
    ]);
  });

  it("Docker's hooks: LogInit + LogInitVerbose(LogLevelDebug) get each ioctl at _LOG_DEBUG with its errno", () => {
    const got: [number, string, number, number, string][] = [];
    const logger: DevmapperLogger = { log: (...a) => got.push(a) };
    LogInit(logger);
    control.run('DM_DEV_CREATE', { name: 'a' });
    expect(got).toEqual([]); // info until LogInitVerbose says more
    LogInitVerbose(LogLevelDebug);
    kernel.fail.set(DM_COMMANDS.DM_DEV_SUSPEND.request, Errno.ENXIO);
    expect(() => control.run('DM_DEV_SUSPEND', { name: 'a' })).toThrow(/ENXIO/);
    expect(got).toEqual([[LogLevelDebug, '', 0, Errno.ENXIO, 'ioctl DM_DEV_SUSPEND name=a flags=0 result=ENXIO']]);
  });
});

describe("Docker's logging hooks (compat)", () => {
  it("has libdevmapper's _LOG_* numbers", () => {
    expect([LogLevelFatal, LogLevelErr, LogLevelWarn, LogLevelNotice, LogLevelInfo, LogLevelDebug]).toEqual([2, 3, 4, 5, 6, 7]);
  });

  it('maps the levels both ways: error 3, warn 4, info 6, debug and trace 7', () => {
    const got: number[] = [];
    LogInit({ log: (level) => got.push(level) });
    LogInitVerbose(LogLevelDebug);
    for (const l of LOG_LEVELS) log[l]('x');
    expect(got).toEqual([3, 4, 6, 7, 7]);
    got.length = 0;
    // libdevmapper's own records in: 2 and 3 errors, 4 and 5 warnings, 6 info, 7 debug.
    for (const level of [2, 3, 4, 5, 6, 7]) DevmapperLogCallback(level, 'libdm-iface.c', 1, 0, 'm');
    expect(got).toEqual([3, 3, 4, 4, 6, 7]);
  });

  it('LogInitVerbose sets the most detailed level that passes; DmLogInitVerbose is the same', () => {
    const cases: [number, string][] = [
      [LogLevelDebug + 1, 'trace'],
      [LogLevelDebug, 'trace'],
      [LogLevelInfo, 'info'],
      [LogLevelNotice, 'warn'],
      [LogLevelWarn, 'warn'],
      [LogLevelErr, 'error'],
      [LogLevelFatal, 'silent'],
      [0, 'silent'],
    ];
    for (const [n, want] of cases) {
      LogInitVerbose(n);
      expect(getLogLevel(), String(n)).toBe(want);
    }
    DmLogInitVerbose(LogLevelInfo);
    expect(getLogLevel()).toBe('info');
  });

  it('the message carries the fields; LogInit(null) silences; LogWithErrnoInit re-routes to the installed logger', () => {
    const got: string[] = [];
    LogInit({ log: (_l, _f, _n, _e, message) => got.push(message) });
    log.info('mounted', { device: '/dev/mapper/a', target: '/mnt/x y' });
    setLogger(null);
    log.info('lost');
    LogWithErrnoInit();
    log.warn('back');
    LogInit(null);
    log.error('silent');
    expect(got).toEqual(['mounted device=/dev/mapper/a target="/mnt/x y"', 'back']);
    expect(log.enabled('error')).toBe(false);
  });

  it('stays off the package root, which has setLogger and setLogLevel instead', () => {
    for (const name of ['LogInit', 'LogInitVerbose', 'DevmapperLogCallback', 'LogLevelDebug']) expect(name in root, name).toBe(false);
    expect(typeof root.setLogger).toBe('function');
    expect(typeof root.setLogLevel).toBe('function');
  });
});

describe('the CLI: -v, -vv, -vvv before the command, and DEVMAPPER_LOG', () => {
  const parse = (argv: string[], env: Record<string, string> = {}) => parseGlobalOptions(argv, env);

  it('counts -v as dmsetup does; --debug stays where it was', () => {
    expect(parse(['dm', 'ls'])).toEqual({ debug: false, logLevel: undefined, args: ['dm', 'ls'] });
    expect(parse(['-v', 'dm', 'ls'])).toEqual({ debug: false, logLevel: 'info', args: ['dm', 'ls'] });
    expect(parse(['-vv', 'dm', 'ls']).logLevel).toBe('debug');
    expect(parse(['-vvv', 'dm', 'ls']).logLevel).toBe('trace');
    expect(parse(['-vvvvv', 'dm', 'ls']).logLevel).toBe('trace');
    expect(parse(['-v', '-v', 'dm', 'ls']).logLevel).toBe('debug');
    expect(parse(['--verbose', '-v', 'dm', 'ls']).logLevel).toBe('debug');
    expect(parse(['--debug', '-vv', 'dm', 'ls', '--debug'])).toEqual({ debug: true, logLevel: 'debug', args: ['dm', 'ls'] });
    expect(parse(['-vv', 'dm', 'remove', 'x', '--debug'])).toEqual({ debug: true, logLevel: 'debug', args: ['dm', 'remove', 'x'] });
  });

  it("leaves a -v after the command to the command (a message's text, an option)", () => {
    expect(parse(['dm', 'message', 'p', '0', '-v'])).toEqual({
      debug: false,
      logLevel: undefined,
      args: ['dm', 'message', 'p', '0', '-v'],
    });
    expect(parse(['dm', 'info', '-v']).args).toEqual(['dm', 'info', '-v']);
  });

  it('DEVMAPPER_LOG sets the level without -v; -v wins; an unknown level is a usage error', () => {
    expect(parse(['dm', 'ls'], { DEVMAPPER_LOG: 'trace' }).logLevel).toBe('trace');
    expect(parse(['dm', 'ls'], { DEVMAPPER_LOG: 'Silent' }).logLevel).toBe('silent');
    expect(parse(['dm', 'ls'], { DEVMAPPER_LOG: '' }).logLevel).toBeUndefined();
    expect(parse(['-v', 'dm', 'ls'], { DEVMAPPER_LOG: 'trace' }).logLevel).toBe('info');
    expect(() => parse(['dm', 'ls'], { DEVMAPPER_LOG: 'loud' })).toThrow(
      'DEVMAPPER_LOG="loud": expected silent, error, warn, info, debug or trace',
    );
  });

  describe('main()', () => {
    let stderr = '';
    let stdout = '';
    beforeEach(() => {
      stderr = '';
      stdout = '';
      vi.spyOn(process.stderr, 'write').mockImplementation((t: string | Uint8Array) => {
        stderr += String(t);
        return true;
      });
      vi.spyOn(process.stdout, 'write').mockImplementation((t: string | Uint8Array) => {
        stdout += String(t);
        return true;
      });
    });
    afterEach(() => {
      vi.restoreAllMocks();
      vi.unstubAllEnvs();
    });

    it('an unknown DEVMAPPER_LOG: exit 2, one line, nothing run', async () => {
      vi.stubEnv('DEVMAPPER_LOG', 'loud');
      expect(await main(['dm', 'version'])).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toBe('devmapper: DEVMAPPER_LOG="loud": expected silent, error, warn, info, debug or trace\n');
    });

    it('-vvv logs through stderr while the command runs, and leaves the library silent after', async () => {
      const seen: boolean[] = [];
      // --version runs no ioctl; what the logger was during the run is observed by a level check.
      const spy = vi.spyOn(process.stdout, 'write').mockImplementation(() => {
        seen.push(log.enabled('trace'));
        log.trace('probe', { from: 'test' });
        return true;
      });
      expect(await main(['-vvv', '--version'])).toBe(0);
      expect(spy).toHaveBeenCalled();
      expect(seen.every(Boolean)).toBe(true);
      expect(log.enabled('error')).toBe(false);
      expect(getLogLevel()).toBe('info');
      expect(stderr).toBe('devmapper: trace: probe from=test\n');
    });

    it('the top help shows the global options', async () => {
      expect(await main(['--help'])).toBe(0);
      expect(stdout).toMatch(/^usage: devmapper \[--debug\] \[-v\|-vv\|-vvv\] <command> \[args\.\.\.\]$/m);
      expect(stdout).toMatch(/^ {2}DEVMAPPER_LOG=LEVEL /m);
    });
  });
});
