// The snapshotter's own crash points (src/thin/crash-points.ts, names `snapshotter:...`): the hook a
// test passes to open() is called after each step that changes the pool or the records.
import type { DeviceSetHook } from '../thin/index.js';

export type CrashPoint = Parameters<DeviceSetHook>[0];
export type SnapshotterPoint = Extract<CrashPoint, `snapshotter:${string}`>;
export type Step = (point: SnapshotterPoint) => void;
