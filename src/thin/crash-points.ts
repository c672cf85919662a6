// Every step at which the pool manager can be stopped by a crash, in one table. The code calls
// its hook only with these names (the type says so), the crash tests kill a process at each of
// them, and a test fails when a point here is never killed. `after` says what is durable once the
// step is done; `reconcile` what the next open does about a crash right there:
//   'none'     nothing to do: pool and metadata already agree
//   'forward'  the operation is completed (the pool already holds its result)
//   'back'     the operation is undone (nothing the caller was told about changes)
//   'restart'  the set-up step is redone from the start (the base device before it was formatted)

export type ReconcileAction = 'none' | 'forward' | 'back' | 'restart';

export interface CrashPointInfo {
  after: string;
  reconcile: ReconcileAction;
}

/** The steps of one pool transaction (transaction.ts), for each of its ops. */
const TX_STEPS = {
  'intent-written': { after: 'the intent file', reconcile: 'back' },
  'message-sent': { after: 'the pool message (create_thin, create_snap or delete)', reconcile: 'back' },
  'txid-set': { after: 'set_transaction_id: the pool holds the new transaction', reconcile: 'forward' },
  'device-committed': { after: "the device's file (written, or removed for a delete)", reconcile: 'forward' },
  'state-committed': { after: 'the pool state file (next id, transaction id)', reconcile: 'forward' },
  'intent-cleared': { after: 'the intent removed: the transaction is over', reconcile: 'none' },
} as const satisfies Record<string, CrashPointInfo>;

export type TxStep = keyof typeof TX_STEPS;
export const TX_STEP_NAMES = Object.keys(TX_STEPS) as TxStep[];
export type TxOp = 'create' | 'snapshot' | 'delete';

/** A delete is rolled forward from its intent on: the device may already be discarded. */
function txPoints<Op extends TxOp>(op: Op): Record<`${Op}:${TxStep}`, CrashPointInfo> {
  const out = {} as Record<`${Op}:${TxStep}`, CrashPointInfo>;
  for (const step of TX_STEP_NAMES) {
    const info: CrashPointInfo = TX_STEPS[step];
    out[`${op}:${step}`] = op === 'delete' && info.reconcile === 'back' ? { ...info, reconcile: 'forward' } : info;
  }
  return out;
}

export const CRASH_POINTS = {
  ...txPoints('create'),
  ...txPoints('snapshot'),
  ...txPoints('delete'),
  'base:created': { after: 'the base thin id, committed, not yet formatted', reconcile: 'restart' },
  'base:activated': { after: 'the base dm device', reconcile: 'restart' },
  'base:formatted': { after: 'mkfs on the base', reconcile: 'restart' },
  'base:initialized': { after: "the base's record says initialized", reconcile: 'none' },
  'snapshot:origin-suspended': { after: 'the active origin suspended (the intent is durable)', reconcile: 'back' },
  'delete:discarded': { after: "the device's blocks discarded (the intent is durable)", reconcile: 'forward' },
  'delete:deactivated': { after: 'the dm device removed (the intent is durable)', reconcile: 'forward' },
  'create:id-collision': { after: 'an id the pool answered EEXIST for skipped: its intent cleared, the id untouched', reconcile: 'back' },
  'snapshot:id-collision': { after: 'an id the pool answered EEXIST for skipped: its intent cleared, the id untouched', reconcile: 'back' },
  // Reconcile's own steps (a crash while recovering is recovered by the next open).
  'rollback:prepared': { after: 'reconcile undoing a create or snapshot: its dm device removed, its origin resumed', reconcile: 'back' },
  'rollback:message-sent': { after: 'reconcile undoing a create or snapshot: `delete` of the id the pool created', reconcile: 'back' },
  'rollforward:prepared': { after: 'reconcile completing a transaction: its dm device removed, its origin resumed', reconcile: 'forward' },
  'rollforward:message-sent': { after: 'reconcile completing a delete: its `delete` message', reconcile: 'forward' },
  'rollforward:txid-set': { after: 'reconcile completing a delete: its set_transaction_id', reconcile: 'forward' },
  'rollforward:committed': {
    after: 'reconcile completing a transaction: the metadata committed, the intent not yet cleared',
    reconcile: 'forward',
  },
  // Activation's three ioctls; the next activate repairs a half-made device (thin-devices.ts).
  'activate:created': { after: 'DM_DEV_CREATE of a thin device: a device without a table', reconcile: 'none' },
  'activate:loaded': { after: "the thin device's table loaded (inactive), not resumed", reconcile: 'none' },
  'activate:resumed': { after: 'the thin device live', reconcile: 'none' },
  // Deletions deferred while the device was busy, retried on open, after a delete and on a timer.
  'deferred-delete:deactivated': { after: "a pending deletion's dm device removed (its delete intent durable)", reconcile: 'forward' },
  'deferred-delete:deleted': { after: "a pending deletion's thin id and record gone", reconcile: 'none' },
  'open:loops-attached': { after: 'the loop files made (a new pool) and attached, autoclear; no pool yet', reconcile: 'restart' },
  'open:pool-created': { after: 'the pool device on the loops (no pool state yet for a new pool)', reconcile: 'restart' },
  // The live pool keeps its size (a pool made again from the files later takes the grown file's).
  'resize:file-grown': { after: 'the data file grown and fsynced; its loop device and the pool not yet', reconcile: 'back' },
  'resize:loop-capacity': { after: "the loop device's capacity grown (LOOP_SET_CAPACITY); the pool not yet", reconcile: 'back' },
  'resize:metadata-file-grown': { after: 'the metadata file grown and fsynced; its loop device and the pool not yet', reconcile: 'back' },
  'resize:metadata-loop-capacity': {
    after: "the metadata loop device's capacity grown; the pool takes it at its next resume",
    reconcile: 'back',
  },
  'resize:table-loaded': { after: "the grown table in the pool's inactive slot (open clears it)", reconcile: 'back' },
  'resize:suspended': { after: 'the pool suspended, the grown table not swapped in (open clears it, resumes)', reconcile: 'back' },
  // The containerd snapshotter (src/snapshotter): its records beside the pool's devices.
  'snapshotter:base-added': { after: "the snapshotter's base: a snapshot of the pool's base, not yet recorded", reconcile: 'restart' },
  'snapshotter:base-mounted': { after: "the snapshotter's base mounted under the home", reconcile: 'restart' },
  'snapshotter:base-prepared': { after: "the snapshotter's base root cleaned: lost+found removed, mode 0755", reconcile: 'restart' },
  'snapshotter:base-unmounted': { after: "the snapshotter's base unmounted and deactivated", reconcile: 'restart' },
  'snapshotter:base-recorded': { after: "the snapshotter's base record: the base is ready", reconcile: 'none' },
  'snapshotter:prepare-recorded': { after: "Prepare or View: the snapshot's record, state creating", reconcile: 'back' },
  'snapshotter:prepare-added': { after: 'Prepare or View: its thin device (a snapshot of the parent or the base)', reconcile: 'back' },
  'snapshotter:prepare-activated': { after: 'Prepare or View: its dm device', reconcile: 'back' },
  'snapshotter:prepare-ready': { after: 'Prepare or View: its record says ready', reconcile: 'none' },
  'snapshotter:commit-recorded': { after: 'Commit: the record rewritten (name, kind committed) in one rename', reconcile: 'forward' },
  'snapshotter:commit-deactivated': { after: "Commit: the committed snapshot's dm device removed", reconcile: 'none' },
  'snapshotter:remove-marked': { after: 'Remove: the record says removing', reconcile: 'forward' },
  'snapshotter:remove-deleted': { after: "Remove: the snapshot's thin id deleted, its record still there", reconcile: 'forward' },
  'snapshotter:remove-forgotten': { after: 'Remove: the record removed', reconcile: 'none' },
  'snapshotter:labels-updated': { after: 'Update: the record rewritten with the new labels', reconcile: 'none' },
  'snapshotter:rollback-deleted': {
    after: 'open undoing a Prepare or View: the thin id deleted, the creating record not yet removed',
    reconcile: 'back',
  },
  'snapshotter:rollforward-deleted': {
    after: 'open finishing a Remove: the thin id deleted, the removing record not yet removed',
    reconcile: 'forward',
  },
  'snapshotter:orphan-deleted': { after: 'open: a snapshot device without a record deleted', reconcile: 'none' },
} as const satisfies Record<string, CrashPointInfo>;

export type CrashPointName = keyof typeof CRASH_POINTS;
export const CRASH_POINT_NAMES = Object.keys(CRASH_POINTS) as CrashPointName[];

/** Called after each step; tests throw or kill the process here to simulate a crash. */
export type CrashHook = (point: CrashPointName) => void;
