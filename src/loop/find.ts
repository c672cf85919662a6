// Finding the loop devices that back a file. sysfs's backing_file narrows the candidates without
// opening any device; LOOP_GET_STATUS64's st_dev/st_ino then decides (lo_file_name keeps only 63
// bytes, and a path can name another file by now).
import { basename } from 'node:path';
import { realpathSync } from 'node:fs';
import { O_RDONLY, SysError, libcTransport } from '../ioctl/index.js';
import { fileIdentity, getStatus64, listLoops, withLoopFd, type LoopDevice, type LoopOptions } from './device.js';

const DELETED = ' (deleted)';

export async function findLoopByFile(file: string, opts: LoopOptions = {}): Promise<LoopDevice[]> {
  const t = opts.transport ?? libcTransport;
  const path = realpathSync(file);
  const id = fileIdentity(path);
  const name = basename(path);
  const found: LoopDevice[] = [];
  for (const loop of listLoops()) {
    // The kernel prints the path as it is now (renames followed), through the mount namespace of
    // the reader; a bind mount can show another path to the same file, hence the basename too.
    const shown = loop.backingFile.endsWith(DELETED) ? loop.backingFile.slice(0, -DELETED.length) : loop.backingFile;
    if (shown !== path && basename(shown) !== name) continue;
    const { backingFile: _, ...dev } = loop;
    try {
      const info = withLoopFd(dev, O_RDONLY, (fd) => getStatus64(t, fd, dev));
      if (info.lo_device === id.dev && info.lo_inode === id.inode) found.push({ ...dev, backing: id });
    } catch (err) {
      if (err instanceof SysError && (err.code === 'ENXIO' || err.code === 'ENOENT')) continue; // detached meanwhile
      throw err;
    }
  }
  return found;
}
