// Errors of the typed device-mapper API that are not the kernel's: bad input caught before any
// ioctl is sent. Kernel errors stay DmError (src/ioctl/errors.ts).

/** A value rejected at the API's edge; nothing was sent to the kernel. */
export class InvalidArgumentError extends Error {
  override readonly name = 'InvalidArgumentError';
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
