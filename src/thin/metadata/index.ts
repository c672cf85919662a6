// Reading dm-thin's own on-disk metadata (persistent-data) without thin-provisioning-tools.
export { type MetadataBlocks, memoryMetadataBlocks, openMetadataBlocks, withMetadataBlocks } from './blocks.js';
export { MAX_BTREE_DEPTH, btreeLookup, checkNodeKeys, walkBtree, walkBtreeLeaves, walkBtreeNodes } from './btree.js';
export {
  type ReadOptions,
  type ThinDeviceInfo,
  type ThinDeviceUsage,
  type ThinMetadata,
  type ThinUsage,
  forEachMapping,
  readThinDevices,
  readThinUsage,
} from './read.js';
export { type MetadataCheck, type MetadataProblem, checkThinMetadata } from './check.js';
