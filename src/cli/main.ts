// `devmapper <command> ...`: the dispatcher. Each command is a module loaded on demand, so that
// `devmapper decode` never loads koffi and `--help` loads nothing.
import { UsageError } from './usage.js';

/** What a command module exports. */
export interface CliCommand {
  /** Runs the command; resolves to the exit code. Throws UsageError for a bad command line. */
  run(argv: string[]): Promise<number>;
}

interface CommandEntry {
  summary: string;
  load: () => Promise<CliCommand>;
}

// Adding a command is one line here.
const COMMANDS: Record<string, CommandEntry> = {
  dm: { summary: 'device-mapper commands, as dmsetup (dm --help)', load: () => import('./dm.js') },
  loop: { summary: 'loop devices, as losetup (loop --help)', load: () => import('./loop.js') },
  pool: { summary: 'the thin pool of a home folder: init, status, resize, shutdown (pool --help)', load: () => import('./pool.js') },
  layer: { summary: 'layers (thin snapshots): create, rm, mount, umount, ls, status (layer --help)', load: () => import('./layer.js') },
  demo: { summary: 'the whole system in seconds on a throwaway pool (demo --help)', load: () => import('./demo.js') },
  decode: { summary: 'decode a captured dm ioctl buffer (hex) to JSON', load: () => import('./decode.js') },
};

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'usage: devmapper [--debug] <command> [args...]',
    '       devmapper <command> --help',
    '',
    'commands:',
    ...lines,
    '',
    'exit codes: 0 ok, 1 operation failed, 2 usage error',
  ].join('\n');
}

function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || (err instanceof Error && err.name === 'UsageError');
}

/** Runs the CLI; resolves to the exit code. Errors are printed as one line (a stack with --debug). */
export async function main(argv: readonly string[]): Promise<number> {
  const args = [...argv];
  const debug = args.includes('--debug');
  const rest = args.filter((a) => a !== '--debug');
  const [name, ...commandArgs] = rest;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? process.stderr : process.stdout).write(`${usage()}\n`);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    process.stderr.write(`devmapper: unknown command '${name}' (try --help)\n`);
    return EXIT_USAGE;
  }
  try {
    const command = await entry.load();
    return await command.run(commandArgs);
  } catch (err) {
    const usageError = isUsageError(err);
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    // One line, whatever failed; the stack only with --debug.
    process.stderr.write(`devmapper ${name}: ${message}${usageError ? ` (try 'devmapper ${name} --help')` : ''}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return usageError ? EXIT_USAGE : EXIT_FAILED;
  }
}
