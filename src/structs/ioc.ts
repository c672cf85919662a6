// The kernel's ioctl request encoding (include/uapi/asm-generic/ioctl.h), so that every request
// number in this project is computed from its macro rather than pasted.

const _IOC_NRBITS = 8;
const _IOC_TYPEBITS = 8;
const _IOC_SIZEBITS = 14;

const _IOC_NRSHIFT = 0;
const _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS;
const _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS;
const _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS;

export const _IOC_NONE = 0;
export const _IOC_WRITE = 1;
export const _IOC_READ = 2;

/** _IOC(dir, type, nr, size), as an unsigned 32-bit number. */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  return ((dir << _IOC_DIRSHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)) >>> 0;
}

export const _IO = (type: number, nr: number): number => _IOC(_IOC_NONE, type, nr, 0);
export const _IOR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ, type, nr, size);
export const _IOW = (type: number, nr: number, size: number): number => _IOC(_IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);

/** The fields of a request number, for decoders and error messages. */
export function iocFields(request: number): { dir: number; type: number; nr: number; size: number } {
  return {
    dir: request >>> _IOC_DIRSHIFT,
    type: (request >>> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1),
    nr: (request >>> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1),
    size: (request >>> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1),
  };
}
