// Shared by the host tests: a temp folder per test on a real file system, and a cleanup that
// detaches every loop device backed by a file in it, whatever the test did.
import { beforeAll } from 'vitest';
import { existsSync, mkdtempSync, rmSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detachLoop, listLoops, releaseLoop, type LoopDevice } from '../../src/loop/index.js';

/**
 * Root and loop devices: the host tier's preconditions, as a failing hook at the top of each host
 * test file, never a skip: a tier that silently ran nothing must fail.
 */
export function requireHostTier(): void {
  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error('the host test tier must run as root (it attaches loop devices)');
    if (!existsSync('/dev/loop-control')) throw new Error('the host test tier needs loop devices: /dev/loop-control does not exist');
  });
}

const TMPFS_MAGIC = 0x01021994;

export function isTmpfs(path: string): boolean {
  return statfsSync(path).type === TMPFS_MAGIC;
}

export class Scratch {
  readonly dir = mkdtempSync(join(tmpdir(), 'devmapper-host-'));
  /** Devices whose fd attach kept open: closed before detaching. */
  readonly kept: LoopDevice[] = [];

  /** A sparse file of `sizeBytes`. */
  file(name: string, sizeBytes: number): string {
    const path = join(this.dir, name);
    writeFileSync(path, '');
    truncateSync(path, sizeBytes);
    return path;
  }

  keep(dev: LoopDevice): LoopDevice {
    if (dev.fd !== undefined) this.kept.push(dev);
    return dev;
  }

  /** Loop devices bound to files of this scratch folder, by sysfs. */
  loops(): ReturnType<typeof listLoops> {
    return listLoops().filter((l) => l.backingFile.startsWith(`${this.dir}/`));
  }

  async cleanup(): Promise<void> {
    for (const dev of this.kept) releaseLoop(dev);
    for (const loop of this.loops()) {
      const file = loop.backingFile.replace(/ \(deleted\)$/, '');
      try {
        await detachLoop(loop.number, existsSync(file) ? { expectBackingFile: file } : { force: true });
      } catch {
        // Detached meanwhile (autoclear): fine.
      }
    }
    await waitFor(() => this.loops().length === 0, 'loop devices of the scratch folder to detach');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `cond` (detach on last close can lag the close by a moment). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Whether /dev/loopN is bound (sysfs has its loop/ folder only then). */
export function isBound(n: number): boolean {
  return existsSync(`/sys/block/loop${n}/loop/backing_file`);
}
