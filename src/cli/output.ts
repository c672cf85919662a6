// What every command prints with --json: the value as indented JSON, bigints as decimal strings.
export const json = (v: unknown): string =>
  `${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 2)}\n`;
