// Errors of the pure struct layer. A decoder never throws anything else on untrusted input.

/** A kernel buffer that does not hold what its struct says: truncated, lying offsets, no NUL. */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  constructor(
    /** The kernel struct being read, e.g. `dm_name_list`. */
    readonly struct: string,
    /** Byte offset in the buffer given to the decoder where the problem was found. */
    readonly offset: number,
    reason: string,
  ) {
    super(`${struct} at offset ${offset}: ${reason}`);
  }
}

/** A request that cannot be encoded (a string that does not fit its field, a value out of range). */
export class EncodeError extends Error {
  override readonly name = 'EncodeError';
  constructor(
    readonly struct: string,
    readonly field: string,
    reason: string,
  ) {
    super(`${struct}.${field}: ${reason}`);
  }
}

/** A value rejected at the API's edge (a name, a count, a size); nothing was sent to the kernel. */
export class InvalidArgumentError extends Error {
  override readonly name: string = 'InvalidArgumentError';
  readonly code = 'EINVAL';
  constructor(
    /** Which argument, e.g. `device name` or `thin id`. */
    readonly argument: string,
    /** The rejected value, as given. */
    readonly value: unknown,
    reason: string,
  ) {
    super(`invalid ${argument} ${describe(value)}: ${reason}`);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}
