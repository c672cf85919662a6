// The pure struct layer: encoders and decoders of kernel structs, no I/O.
export * from './errors.js';
export * from './ioc.js';
export * from './bytes.js';
export * from './cstring.js';
export * from './dev.js';
export * from './dm-abi.js';
export * from './dm-ioctl.js';
export * from './commands.js';
export * from './target-spec.js';
export * from './name-list.js';
export * from './target-deps.js';
export * from './target-versions.js';
export * from './target-msg.js';
export * from './string-payload.js';
export * from './loop.js';
export * from './blk.js';
export * from './decode.js';
