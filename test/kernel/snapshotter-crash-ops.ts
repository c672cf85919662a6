// What snapshotter-crash.test.ts and its child share: the calls, the child's orders and its log.

export type SnapOp =
  | { op: 'prepare'; key: string; parent: string }
  | { op: 'view'; key: string; parent: string }
  | { op: 'commit'; name: string; key: string }
  | { op: 'remove'; key: string }
  | { op: 'update'; key: string };

export interface SnapChildSpec {
  home: string;
  options: string[];
  /** The event log, appended to with write(2): what a SIGKILL cannot take back. */
  log: string;
  /** Kill at the k-th counted hook hit (1-based); 0: never. */
  killAt: number;
  /** Or kill at the first counted hit of this point. */
  killAtPoint?: string;
  /** Hits count from call `countFrom` on; -1: from the start of open. */
  countFrom: number;
  /** Or: hits count once this point was hit (in open: after the pool's own base is made). */
  countAfter?: string;
  ops: SnapOp[];
}

/**
 *   {ev:'hit', point, counted}  a hook call (written before a kill there)
 *   {ev:'open'}                 open resolved
 *   {ev:'begin', op} / {ev:'ack', op}  a call starts / answered
 *   {ev:'done'}                 every call answered
 */
export type SnapEvent =
  | { ev: 'hit'; point: string; counted: boolean }
  | { ev: 'open' }
  | { ev: 'begin'; op: SnapOp }
  | { ev: 'ack'; op: SnapOp }
  | { ev: 'done' };

export function parseSnapEvents(text: string): SnapEvent[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as SnapEvent);
}
