// Block devices by ioctl: size, sector sizes, discard, flush.
export * from './block-device.js';
