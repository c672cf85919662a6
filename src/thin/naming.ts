// Names of the pool and its devices, unique per home folder as in Docker's devmapper:
// `<prefix>-<maj>:<min>-<inode>-pool`, `...-base`, `...-<hash>`, where maj:min is the device of
// the file system holding the home folder and inode the folder's inode number.
import { statSync } from 'node:fs';
import { deviceName, type DeviceName } from '../dm/names.js';
import { formatDev } from '../structs/dev.js';
import { BASE_HASH, validateHash } from './metadata-store.js';

export class PoolNaming {
  readonly stem: string;
  constructor(stem: string) {
    this.stem = stem;
  }

  /** Stem from the home folder's stat: the file system's dev and the folder's inode. */
  static forHome(home: string, prefix: string): PoolNaming {
    const st = statSync(home, { bigint: true });
    // st.dev is the glibc (new_encode_dev-compatible) dev_t: major in bits 8..19 and 32..63.
    const dev = st.dev;
    const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n));
    const minor = Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n));
    return new PoolNaming(`${prefix}-${formatDev({ major, minor })}-${st.ino}`);
  }

  poolName(): DeviceName {
    return deviceName(`${this.stem}-pool`);
  }

  /** The dm name of a device; the base (hash '') is `-base`. Throws if the name would not fit. */
  deviceName(hash: string): DeviceName {
    return deviceName(`${this.stem}-${hash === BASE_HASH ? 'base' : validateHash(hash)}`);
  }
}
