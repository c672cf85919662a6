// Errors of the typed device-mapper API that are not the kernel's: bad input caught before any
// ioctl is sent. Kernel errors stay DmError (src/ioctl/errors.ts).
export { InvalidArgumentError } from '../structs/errors.js';
