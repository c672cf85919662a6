// devmapper: Linux device-mapper, loop devices and a dm-thin pool manager over raw ioctls.
// Each layer is also importable on its own (devmapper/dist/<layer>/index.js); this is the whole.
export * from './structs/index.js';
export * from './ioctl/index.js';
export * from './dm/index.js';
export * from './loop/index.js';
export * from './blk/index.js';
export * from './thin/index.js';
export * from './driver/index.js';
