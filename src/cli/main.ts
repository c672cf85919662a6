// `devmapper <command> ...`: the dispatcher. Each command is a module loaded on demand, so that
// `devmapper decode` never loads koffi. Help is answered before anything runs: `-h`/`--help`
// anywhere, `help CMD [SUB]`, `CMD help [SUB]`. The library's log goes to stderr at the level of
// `-v`/`-vv`/`-vvv` before the command, else of DEVMAPPER_LOG; without either it is silent.
import { formatLogLine, getLogLevel, parseLogLevel, setLogLevel, setLogger, type LogFn, type LogThreshold } from '../ioctl/index.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, isHelpToken, wantsHelp, type Group } from './command.js';
import { explain } from './errors.js';
import { writeErr, writeOut } from './stdio.js';
import { UsageError } from './usage.js';
import { VERSION } from './version.js';

export { EXIT_FAILED, EXIT_OK, EXIT_USAGE };

/** What a command module exports: a command table, or (decode, demo) its own runner and help. */
export interface CliModule {
  group?: Group;
  run(argv: string[]): Promise<number>;
}

export interface TopCommand {
  name: string;
  summary: string;
  load: () => Promise<CliModule>;
  /**
   * Built into the CLI's second bundle (dist/cli/devmapper-full.cjs, with the thin pool's code) and
   * run from there: `devmapper dm ls` and its kind then start without parsing that code (bin.ts).
   */
  separate?: true;
}

// Adding a command is one line here.
export const COMMANDS: readonly TopCommand[] = [
  { name: 'dm', summary: 'device-mapper commands, as dmsetup', load: () => import('./dm.js') },
  { name: 'loop', summary: 'loop devices, as losetup', load: () => import('./loop.js') },
  {
    name: 'pool',
    summary: 'the thin pool of a home folder: init, status, resize, shutdown',
    load: () => import('./pool.js'),
    separate: true,
  },
  {
    name: 'layer',
    summary: 'layers (thin snapshots): create, rm, mount, umount, ls, status',
    load: () => import('./layer.js'),
    separate: true,
  },
  {
    name: 'snapshotter',
    summary: "containerd's snapshotter: serve the snapshots API on a unix socket",
    load: () => import('./snapshotter.js'),
    separate: true,
  },
  { name: 'demo', summary: 'the whole system in seconds on a throwaway pool', load: () => import('./demo.js'), separate: true },
  { name: 'decode', summary: 'decode a captured dm ioctl buffer (hex) to JSON', load: () => import('./decode.js') },
];

export function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: devmapper [--debug] [-v|-vv|-vvv] <command> [args...]',
    '       devmapper <command> --help | devmapper help <command> [<subcommand>]',
    '       devmapper --version',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary} (devmapper ${c.name} --help)`),
    '',
    'global options (before the command):',
    '  --debug  a stack trace with the error',
    '  -v       log to stderr: info (mounts, retries, reconcile decisions); -vv debug; -vvv trace (each ioctl)',
    `  ${LOG_ENV}=LEVEL (silent, error, warn, info, debug, trace) logs the same without -v`,
    '',
    'exit codes: 0 ok, 1 the system refused (errno first on stderr), 2 the command line is wrong',
    '',
  ].join('\n');
}

/** The environment variable that sets the log level of any run (the daemons': snapshotter serve). */
export const LOG_ENV = 'DEVMAPPER_LOG';

/** `-v` info, `-vv` debug, `-vvv` (or more) trace: dmsetup's count of -v, libdevmapper's levels. */
const VERBOSITY: readonly LogThreshold[] = ['silent', 'info', 'debug', 'trace'];

export interface GlobalOptions {
  debug: boolean;
  /** The log level asked for, by -v or the environment; undefined: silent. */
  logLevel: LogThreshold | undefined;
  /** The command line after the global options. */
  args: string[];
}

/**
 * The options before the command: `-v`, `-vv`, `-vvv` (repeatable: `-v -v`), `--verbose`; and
 * `--debug`, anywhere (as it always was). A `-v` after the command is the command's own (none
 * takes one today: an unknown option there). -v wins over the environment's level.
 */
export function parseGlobalOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): GlobalOptions {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  let verbosity = 0;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i] as string;
    if (/^-v+$/.test(a)) verbosity += a.length - 1;
    else if (a === '--verbose') verbosity++;
    else break;
  }
  let logLevel: LogThreshold | undefined;
  if (verbosity > 0) logLevel = VERBOSITY[Math.min(verbosity, VERBOSITY.length - 1)];
  else if (env[LOG_ENV]) {
    logLevel = parseLogLevel(env[LOG_ENV]);
    if (logLevel === undefined) {
      throw new UsageError(`${LOG_ENV}=${JSON.stringify(env[LOG_ENV])}: expected silent, error, warn, info, debug or trace`);
    }
  }
  return { debug, logLevel, args: args.slice(i) };
}

function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || (err instanceof Error && err.name === 'UsageError');
}

/** The library's log lines on stderr, through the CLI's own output (stdio.ts). */
const cliLogger: LogFn = (level, msg, fields) => writeErr(`${formatLogLine(level, msg, fields)}\n`);

/** Runs the CLI; resolves to the exit code. Errors are printed as one line (a stack with --debug). */
export async function main(argv: readonly string[]): Promise<number> {
  let global: GlobalOptions;
  try {
    global = parseGlobalOptions(argv, process.env);
  } catch (err) {
    writeErr(`devmapper: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  if (global.logLevel === undefined || global.logLevel === 'silent') return run(global);
  const before = getLogLevel();
  setLogLevel(global.logLevel);
  setLogger(cliLogger);
  try {
    return await run(global);
  } finally {
    // main() may run again in this process (tests): leave the library silent, as it was.
    setLogger(null);
    setLogLevel(before);
  }
}

/** The arguments after the global options as the command runs them: `help dm create` is `dm help create`. */
function commandLine(args: readonly string[]): readonly string[] {
  return args[0] === 'help' && args.length > 1 ? [args[1] as string, 'help', ...args.slice(2)] : args;
}

/** The top command that main() would run for this command line (undefined: none, or help, or an error). */
export function dispatchedCommand(argv: readonly string[]): TopCommand | undefined {
  let args: readonly string[];
  try {
    args = parseGlobalOptions(argv, process.env).args;
  } catch {
    return undefined; // main() says what is wrong
  }
  const name = commandLine(args)[0];
  return COMMANDS.find((c) => c.name === name);
}

async function run({ debug, args: argv }: GlobalOptions): Promise<number> {
  const first = argv[0];
  if (first === '--version' || first === '-V') {
    writeOut(`devmapper ${VERSION}\n`);
    return EXIT_OK;
  }
  if (first === undefined || isHelpToken(first) || (first === 'help' && argv.length === 1)) {
    (first === undefined ? writeErr : writeOut)(topHelp());
    return first === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const [name, ...rest] = commandLine(argv) as [string, ...string[]];
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    writeErr(`devmapper: unknown command '${name}' (try 'devmapper --help')\n`);
    return EXIT_USAGE;
  }
  try {
    const mod = await entry.load();
    // A module without a table gets `help` as --help (it answers help itself, before acting).
    if (!mod.group && (rest[0] === 'help' || wantsHelp(rest))) return await mod.run(['--help']);
    return await mod.run(rest);
  } catch (err) {
    const e = explain(err);
    const usage = isUsageError(e);
    // One line, whatever failed; the stack only with --debug.
    writeErr(
      `devmapper ${name}: ${e.message.split('\n')[0]}${usage ? ` (try 'devmapper ${(e as UsageError).helpFor ?? name} --help')` : ''}\n`,
    );
    if (debug && err instanceof Error && err.stack) writeErr(`${err.stack}\n`);
    return usage ? EXIT_USAGE : EXIT_FAILED;
  }
}
