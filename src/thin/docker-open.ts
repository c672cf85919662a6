// What DeviceSet.open and the home-level calls need to know of a home Docker's driver made: the
// prefix of its names, its data block size (recorded in the pool's superblock only), and its pool
// as the rollback of Docker's open transaction sees it.
import { existsSync } from 'node:fs';
import type { DeviceMapper } from '../dm/device-mapper.js';
import type { DeviceName } from '../dm/names.js';
import { type DockerPool, finishDockerConversion, homePrefix, isDockerHome, readDockerMetadata } from './docker-home.js';
import type { DockerMetadata } from './docker-metadata.js';
import type { PoolNaming } from './naming.js';
import { optionsFromStrings, parsePoolOptions, type ParseEnv, type PoolOptions, type PoolOptionsInput } from './options.js';
import { poolMessenger } from './pool-health.js';
import { loopFiles, superblockDataBlockBytes } from './pool-setup.js';

export function inputOf(options: readonly string[] | PoolOptionsInput): PoolOptionsInput {
  return Array.isArray(options) ? optionsFromStrings(options as readonly string[]) : (options as PoolOptionsInput);
}

/**
 * Under the home's lock, before its names are used: a conversion a crash interrupted finished,
 * Docker's metadata read if the home is Docker's, and the options given the home's prefix and, for
 * a Docker home without dm.blocksize, the block size its pool was made with.
 */
export function openDockerAware(
  home: string,
  root: string,
  input: PoolOptionsInput,
  parsed: PoolOptions,
): { opts: PoolOptions; docker: DockerMetadata | null } {
  finishDockerConversion(home);
  const docker = isDockerHome(home) ? readDockerMetadata(home) : null;
  let opts = { ...parsed, prefix: homePrefix(home, input.prefix, parsed.prefix) };
  if (docker && input.blockSize === undefined && opts.thinPoolDevice === undefined) {
    const meta = opts.metadataDevice ?? loopFiles(root).metadata;
    const block = existsSync(meta) ? superblockDataBlockBytes(meta) : null;
    if (block !== null) opts = { ...opts, dataBlockSizeBytes: block };
  }
  return { opts, docker };
}

/** The options with the prefix of the names `home` was made with (docker-home.ts homePrefix). */
export function withHomePrefix(home: string, options: readonly string[] | PoolOptionsInput, env: ParseEnv): PoolOptions {
  const input = inputOf(options);
  const opts = parsePoolOptions(input, env);
  return { ...opts, prefix: homePrefix(home, input.prefix, opts.prefix) };
}

/** A Docker home's pool, for the rollback of Docker's open transaction. */
export function dockerPool(dm: DeviceMapper, naming: PoolNaming, poolName: DeviceName): DockerPool {
  const messenger = poolMessenger(dm, poolName);
  return {
    transactionId: () => messenger.poolTransactionId(),
    deleteThin: (id) => messenger.deleteThin(id),
    release: async (hash) => {
      const info = dm.info({ name: naming.deviceName(hash) });
      if (info !== null && info.openCount === 0) await dm.remove({ name: info.name }, { retry: true });
    },
  };
}
