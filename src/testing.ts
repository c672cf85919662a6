// devmapper/testing: what a test of code built on devmapper needs and the library itself does not.
// The reply encoders build the payloads the kernel would return (the library only decodes them);
// FaultInjectingTransport wraps a transport (libcTransport is the real one) to make chosen ioctls
// fail with a chosen errno.
export {
  encodeNameList,
  encodeTargetDeps,
  encodeTargetSpecsReply,
  encodeTargetVersionRequest,
  encodeTargetVersions,
} from './structs/index.js';
export { FaultInjectingTransport, libcTransport, type FaultMatch, type IoctlCall } from './ioctl/index.js';
