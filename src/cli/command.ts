// The command table: one record per command and subcommand. The parser (node:util parseArgs), the
// help text and docs/cli.md's usage lines all come from these records, so they cannot drift. Help
// (`-h`, `--help`, `help SUB`) is answered before anything is parsed or opened: it never runs a
// command.
import { parseArgs } from 'node:util';
import { UsageError } from './usage.js';
import { writeErr, writeOut } from './stdio.js';

/** One option: what parseArgs needs, plus its help. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value's name in help (`--table LINE`). */
  arg?: string;
  help: string;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Invocation {
  values: Values;
  positionals: string[];
  /** The command line's arguments in order (for options whose relative order matters). */
  tokens: readonly ArgToken[];
  out: (text: string) => void;
}

export type ArgToken = { kind: 'option'; name: string; value: string | undefined } | { kind: 'positional'; value: string };

export interface Command {
  name: string;
  aliases?: readonly string[];
  summary: string;
  /** The arguments after the command's name, as the help's usage line shows them. */
  usage: string;
  options: Readonly<Record<string, OptionSpec>>;
  /** How many positionals it takes. */
  positionals: { min: number; max: number; missing?: string };
  /** Longer help after the option list. */
  details?: string;
  /** Resolves to the exit code (0 when it returns nothing). Throws UsageError for a bad command line. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a run that returns nothing means exit 0.
  run(inv: Invocation): Promise<number | void> | number | void;
}

export interface Group {
  name: string;
  summary: string;
  /** Options every subcommand takes (added to each one's parser and help). */
  common: Readonly<Record<string, OptionSpec>>;
  commands: readonly Command[];
  details?: string;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export const JSON_OPTION: OptionSpec = { type: 'boolean', help: 'machine-readable output (docs/cli.md, --json)' };

export function isHelpToken(a: string): boolean {
  return a === '-h' || a === '--help';
}

/** Whether the arguments ask for help (before a `--` that ends the options). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (isHelpToken(a)) return true;
  }
  return false;
}

export function findCommand(group: Group, name: string): Command | undefined {
  return group.commands.find((c) => c.name === name || (c.aliases ?? []).includes(name));
}

/** `devmapper dm create NAME ...`: the usage line of one subcommand. */
export function usageLine(group: Group, c: Command): string {
  return `devmapper ${group.name} ${c.name}${c.usage ? ` ${c.usage}` : ''}`;
}

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const cells = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.arg ? ` ${o.arg}` : ''}${o.multiple ? '...' : ''}`;
    return [flag, o.help] as const;
  });
  const width = Math.max(0, ...cells.map(([f]) => f.length));
  return cells.map(([f, h]) => `  ${f.padEnd(width)}  ${h}`);
}

/** The help of one subcommand. */
export function commandHelp(group: Group, c: Command): string {
  const aliases = c.aliases?.length ? ` (alias: ${c.aliases.join(', ')})` : '';
  const lines = [
    `usage: ${usageLine(group, c)}`,
    '',
    `${c.summary}${aliases}`,
    '',
    'options:',
    ...optionLines({ ...c.options, ...group.common }),
  ];
  if (c.details) lines.push('', c.details);
  return `${lines.join('\n')}\n`;
}

/** The help of a command group: every subcommand's usage line and summary. */
export function groupHelp(group: Group): string {
  const lines = [
    `usage: devmapper ${group.name} <command> [options]   (devmapper ${group.name} <command> --help)`,
    '',
    group.summary,
    '',
    'commands:',
  ];
  for (const c of group.commands) {
    lines.push(`  ${usageLine(group, c)}`);
    lines.push(`      ${c.summary}${c.aliases?.length ? ` (alias: ${c.aliases.join(', ')})` : ''}`);
  }
  lines.push('', 'options of every command:', ...optionLines(group.common));
  if (group.details) lines.push('', group.details);
  return `${lines.join('\n')}\n`;
}

/** Parses `args` by the command's table entry; UsageError on anything the table does not allow. */
export function parseInvocation(group: Group, c: Command, args: string[], out: (t: string) => void): Invocation {
  const specs = { ...c.options, ...group.common };
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(specs)) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    // parseArgs' own advice ("To specify a positional argument starting with a '-' ...") is noise here.
    throw new UsageError(((err as Error).message.split('. ')[0] ?? '').replace(/\.$/, ''));
  }
  const positionals = parsed.positionals;
  if (positionals.length < c.positionals.min) throw new UsageError(`missing ${c.positionals.missing ?? 'argument'}`);
  if (positionals.length > c.positionals.max) throw new UsageError(`unexpected argument '${positionals[c.positionals.max]}'`);
  const tokens: ArgToken[] = (parsed.tokens ?? []).flatMap((t): ArgToken[] =>
    t.kind === 'option'
      ? [{ kind: 'option', name: t.name, value: t.value }]
      : t.kind === 'positional'
        ? [{ kind: 'positional', value: t.value }]
        : [],
  );
  return { values: parsed.values as Values, positionals, tokens, out };
}

/**
 * Runs `devmapper <group> ...`: help first (never running anything), then the parse, then the
 * command. Resolves to the exit code; errors propagate to main, which prints them.
 */
export async function runGroup(group: Group, argv: string[], out: (t: string) => void = writeOut): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) {
    writeErr(groupHelp(group));
    return EXIT_USAGE;
  }
  if (isHelpToken(sub) || (sub === 'help' && rest.length === 0)) {
    out(groupHelp(group));
    return EXIT_OK;
  }
  if (sub === 'help') {
    const target = findCommand(group, rest[0] as string);
    if (!target) throw new UsageError(`unknown ${group.name} command '${rest[0]}'`);
    out(commandHelp(group, target));
    return EXIT_OK;
  }
  const c = findCommand(group, sub);
  if (!c) throw new UsageError(`unknown ${group.name} command '${sub}'`);
  if (wantsHelp(rest)) {
    out(commandHelp(group, c));
    return EXIT_OK;
  }
  try {
    const inv = parseInvocation(group, c, rest, out);
    return (await c.run(inv)) ?? EXIT_OK;
  } catch (err) {
    if (err instanceof UsageError) err.helpFor ??= `${group.name} ${c.name}`;
    throw err;
  }
}

// ---- typed reads of parsed values ----------------------------------------------------------------

export const str = (v: Values, key: string): string | undefined => {
  const x = v[key];
  return typeof x === 'string' ? x : undefined;
};
export const flag = (v: Values, key: string): boolean => v[key] === true;
export const list = (v: Values, key: string): string[] => {
  const x = v[key];
  return Array.isArray(x) ? x : typeof x === 'string' ? [x] : [];
};

/** The usage lines of every subcommand of the groups, as docs/cli.md lists them (a unit test compares). */
export function usageBlock(groups: readonly Group[]): string {
  return groups.map((g) => g.commands.map((c) => `${usageLine(g, c)}\n`).join('')).join('');
}
