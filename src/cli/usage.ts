// Usage errors: a bad command line exits 2 with one line, before anything is touched.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The command whose help answers the mistake (`dm create`); main names it. */
  helpFor?: string;
}

/** An operation failed (the kernel refused, a device is missing): exit 1 with this one line. */
export class OperationError extends Error {
  override readonly name = 'OperationError';
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Config<O extends Options> = { args: string[]; options: O; allowPositionals: true; strict: true };
type Parsed<O extends Options> = ReturnType<typeof parseArgs<Config<O>>>;

/** node:util parseArgs in strict mode, its errors turned into UsageError. */
export function parse<O extends Options>(argv: string[], options: O): Parsed<O> {
  try {
    return parseArgs<Config<O>>({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The positional at `index`, or a UsageError naming it. */
export function positional(list: readonly string[], index: number, what: string): string {
  const v = list[index];
  if (v === undefined) throw new UsageError(`missing ${what}`);
  return v;
}

/** Rejects positionals beyond `max`. */
export function noMorePositionals(list: readonly string[], max: number): void {
  if (list.length > max) throw new UsageError(`unexpected argument '${list[max]}'`);
}
