// What every command prints with --json: the value as indented JSON. Byte and sector counts are
// decimal strings (they may pass 2^53; one type whatever their size), bigints too.
const COUNT_KEY = /(Bytes|Sectors)$/;

export const json = (v: unknown): string =>
  `${JSON.stringify(v, (k, x: unknown) => (typeof x === 'bigint' || (typeof x === 'number' && COUNT_KEY.test(k)) ? String(x) : x), 2)}\n`;
