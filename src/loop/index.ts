// Loop devices: attach a file, find the devices backing a file, detach only what we bound.
export { attachLoop, LOOP_CONTROL_PATH, type AttachOptions } from './attach.js';
export { detachLoop, LoopNotOursError, type DetachOptions } from './detach.js';
export { findLoopByFile } from './find.js';
export {
  listLoops,
  loopDevice,
  loopStatus,
  releaseLoop,
  setLoopCapacity,
  type BoundLoop,
  type LoopDevice,
  type LoopOptions,
  type LoopRef,
} from './device.js';
