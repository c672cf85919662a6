// The bench worker (bench/ours.ts): runs our library's timed loops on request and never forks.
import { DeviceMapper } from '../src/dm/device-mapper.js';
import { oursCycles } from './p1-cycle.js';
import { oursListRound } from './p2-list.js';
import { OursLayers } from './p4-layers.js';

const dm = DeviceMapper.open({ udev: 'off' });
let layers: OursLayers | undefined;

export const jobs = {
  ready: async (_: Record<string, never>) => undefined,
  p1: (a: Parameters<typeof oursCycles>[1]) => oursCycles(dm, a),
  p2: async (a: Parameters<typeof oursListRound>[0]) => oursListRound(a),
  'p4-init': async (a: { home: string; options: readonly string[] }) => {
    layers = await OursLayers.init(a.home, a.options);
  },
  'p4-run': (a: { count: number }) => {
    if (!layers) throw new Error('p4-run before p4-init');
    return layers.run(a.count);
  },
  'p4-cleanup': async (_: Record<string, never>) => {
    await layers?.cleanup();
    layers = undefined;
  },
};
export type OursJobs = typeof jobs;

type Request = { id: number; job: keyof OursJobs; args: never };

if (process.send) {
  process.on('message', (m: Request) => {
    const run = jobs[m.job] as (args: never) => Promise<unknown>;
    run(m.args).then(
      (result) => process.send?.({ id: m.id, ok: true, result }),
      (err: unknown) => process.send?.({ id: m.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  process.on('disconnect', () => {
    dm.close();
  });
}
