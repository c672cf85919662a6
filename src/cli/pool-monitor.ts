// `devmapper pool monitor`: the pool's events as JSON lines (src/thin/monitor.ts), with lvm's
// auto-extend policy for loop files. It reads the pool from the kernel's side and takes no home
// lock, so it runs beside `snapshotter serve` or a Driver that holds the pool. SIGTERM or SIGINT
// ends it with exit 0; the pool's removal (`pool shutdown`) too, after a `stop` line.
import { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceName } from '../dm/names.js';
import { AUTOEXTEND_DEFAULTS, autoextendPolicy } from '../thin/autoextend.js';
import { OptionError } from '../thin/errors.js';
import { MONITOR_INTERVAL_MS, PoolMonitor } from '../thin/monitor.js';
import type { Command, Invocation } from './command.js';
import { homeArgs, poolActive, poolStep, requirePool } from './pool-home.js';
import { OperationError, UsageError } from './usage.js';

function intArg(inv: Invocation, name: string, fallback: number): number {
  const v = inv.values[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--${name} ${String(v)}: must be a whole number`);
  return Number(v);
}

async function monitor(inv: Invocation): Promise<number> {
  let policy: ReturnType<typeof autoextendPolicy>;
  try {
    policy = autoextendPolicy(
      intArg(inv, 'autoextend-threshold', AUTOEXTEND_DEFAULTS.threshold),
      intArg(inv, 'autoextend-percent', AUTOEXTEND_DEFAULTS.percent),
    );
  } catch (e) {
    if (e instanceof OptionError) throw new UsageError(e.message);
    throw e;
  }
  const intervalMs = intArg(inv, 'interval', MONITOR_INTERVAL_MS / 1000) * 1000;
  if (intervalMs <= 0) throw new UsageError('--interval must be at least 1 second');
  const args = homeArgs(inv);
  const state = await poolStep(async () => {
    const s = poolActive(args);
    requirePool(s.home);
    if (!s.active) throw new OperationError(`ENXIO: the pool ${s.poolName} of ${s.home} is not active`);
    return s;
  });
  const dm = DeviceMapper.open();
  let mechanism: string | undefined;
  const mon = new PoolMonitor(dm, state.poolName as DeviceName, {
    policy,
    intervalMs,
    onEvent: (e) => {
      if (e.event === 'start') mechanism = e.mechanism;
      inv.out(`${JSON.stringify(e)}\n`);
    },
  });
  const stop = (): void => mon.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await poolStep(() => mon.run());
    // A DM_DEV_WAIT cannot be cancelled: its worker would keep the process up until the pool's next
    // event. Exit once the code is set (stdout is written synchronously to pipes and files on Linux).
    if (mechanism === 'wait') setImmediate(() => process.exit());
    return 0;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    dm.close();
  }
}

export const monitorCommand: Command = {
  name: 'monitor',
  summary:
    "watch the pool's dm events: JSON lines for low water marks, mode changes (rw, ro, out_of_data_space, needs_check, fail), data and metadata use; auto-extends loop files as lvm's thin_pool_autoextend_threshold/percent",
  usage: '[--home DIR] [--autoextend-threshold N] [--autoextend-percent M] [--interval SECONDS]',
  options: {
    'autoextend-threshold': {
      type: 'string',
      arg: 'N',
      help: `extend when data or metadata use exceeds N percent (50..100, default ${AUTOEXTEND_DEFAULTS.threshold}: off)`,
    },
    'autoextend-percent': {
      type: 'string',
      arg: 'M',
      help: `extend by M percent of the current size (default ${AUTOEXTEND_DEFAULTS.percent})`,
    },
    interval: {
      type: 'string',
      arg: 'SECONDS',
      help: `look at the pool this often besides its events (default ${MONITOR_INTERVAL_MS / 1000})`,
    },
  },
  positionals: { min: 0, max: 0 },
  details:
    'Takes no lock: runs beside snapshotter serve or a program holding the pool. SIGTERM or SIGINT: exit 0. ' +
    'Events, their fields and the policy: docs/pool.md, "Watching the pool".',
  run: monitor,
};
