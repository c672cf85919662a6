// Bytes allocated by a piece of work, by allocating call site: V8's sampling heap profiler with
// the objects later collected by either GC kept in the profile, so that it counts what was
// allocated, not what survived (bench/profile.ts `alloc` and `alloc-layers`).
import { Session } from 'node:inspector/promises';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** Runs `work` under the sampler; prints bytes per unit (`units` of work) and the top call sites. */
export async function printAllocations(work: () => Promise<void>, units: number, label: string, top = 25): Promise<void> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 256,
    includeObjectsCollectedByMinorGC: true,
    includeObjectsCollectedByMajorGC: true,
  });
  await work();
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: ProfileNode } };
  session.disconnect();
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (node: ProfileNode, path: readonly string[]): void => {
    const f = node.callFrame;
    const here = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
    const p = [...path, here];
    if (node.selfSize > 0) {
      total += node.selfSize;
      const site = p.slice(-3).reverse().join(' < ');
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    }
    for (const c of node.children) walk(c, p);
  };
  walk(profile.head, []);
  process.stderr.write(`${label}: ${(total / units).toFixed(0)} bytes allocated a unit (sampled every 256 bytes)\n`);
  for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stderr.write(`${(bytes / units).toFixed(0).padStart(7)}  ${site}\n`);
  }
}
