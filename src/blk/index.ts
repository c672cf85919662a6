// Block devices by ioctl: size, sector sizes, discard, flush; and the file system on one.
export * from './block-device.js';
export * from './fs-probe.js';
