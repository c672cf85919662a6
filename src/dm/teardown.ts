// Removing a family of devices by name prefix, in dependency order: a device that another one of
// the family sits on (a thin-pool under its thin devices, a linear under a stack) goes after it.
// Suspended devices are resumed first: a remove of a device whose holder queues I/O on a suspended
// table would wait on that I/O.
import { formatDev, type DevT } from '../structs/dev.js';
import type { RetryPolicy } from './commands/remove.js';
import type { DeviceMapper } from './device-mapper.js';
import type { DeviceName } from './names.js';

export interface TeardownNode<N extends string = string> {
  name: N;
  dev: DevT;
  /** The devices its table uses (DM_TABLE_DEPS). */
  deps: readonly DevT[];
}

const key = formatDev;

/**
 * Batches of names, holders first: each batch holds the devices no remaining device of `nodes`
 * uses. Device-mapper forbids cycles; should the deps say otherwise, the rest is one last batch.
 */
export function teardownOrder<N extends string>(nodes: readonly TeardownNode<N>[]): N[][] {
  let left = [...nodes];
  const batches: N[][] = [];
  while (left.length > 0) {
    const present = new Set(left.map((n) => key(n.dev)));
    const held = new Set<string>();
    for (const n of left) for (const d of n.deps) if (present.has(key(d)) && key(d) !== key(n.dev)) held.add(key(d));
    const free = left.filter((n) => !held.has(key(n.dev)));
    const batch = free.length > 0 ? free : left;
    batches.push(batch.map((n) => n.name));
    left = left.filter((n) => !batch.includes(n));
  }
  return batches;
}

export interface TeardownOptions {
  /** How each remove retries EBUSY (default: a short policy, the caller reports what stays). */
  retry?: RetryPolicy;
  /** Names of the family to leave in place (e.g. a pool someone else made). */
  keep?: readonly string[];
  /** Called when our remove of `name` failed; return true if it removed the device another way. */
  fallback?: (name: string, error: unknown) => boolean | Promise<boolean>;
}

export interface TeardownResult {
  removed: DeviceName[];
  /** Devices still there, with the last error of their remove. */
  failed: { name: DeviceName; error: unknown }[];
}

const SHORT_RETRY: RetryPolicy = { attempts: 5, firstDelayMs: 10, maxDelayMs: 100 };

/** Removes every device whose name starts with `prefix`, holders first; never throws for one device. */
export async function removeByPrefix(dm: DeviceMapper, prefix: string, opts: TeardownOptions = {}): Promise<TeardownResult> {
  const keep = new Set(opts.keep ?? []);
  const ours = () => dm.list().filter((d) => d.name.startsWith(prefix) && !keep.has(d.name));
  const result: TeardownResult = { removed: [], failed: [] };
  for (const d of ours()) {
    try {
      if (dm.info({ name: d.name })?.suspended) await dm.resume({ name: d.name }, { noNode: true });
    } catch {
      // Gone meanwhile, or no table to resume: its remove says what is wrong.
    }
  }
  const errors = new Map<DeviceName, unknown>();
  let left = ours();
  while (left.length > 0) {
    const nodes: TeardownNode<DeviceName>[] = left.map((d) => {
      let deps: DevT[] = [];
      try {
        deps = dm.deps({ name: d.name });
      } catch {
        // No table (deps of nothing), or gone meanwhile.
      }
      return { name: d.name, dev: d.dev, deps };
    });
    for (const name of teardownOrder(nodes)[0] ?? []) {
      try {
        await dm.remove({ name }, { retry: opts.retry ?? SHORT_RETRY });
        result.removed.push(name);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ENXIO') continue; // gone meanwhile
        if (opts.fallback && (await opts.fallback(name, err)) && dm.info({ name }) === null) result.removed.push(name);
        else errors.set(name, err);
      }
    }
    const now = ours();
    if (now.length >= left.length) break; // no progress: what stays is reported
    left = now;
  }
  for (const d of ours()) result.failed.push({ name: d.name, error: errors.get(d.name) ?? new Error(`${d.name} is still there`) });
  return result;
}
