// The thin-pool target's status line (dm-thin.c pool_status, STATUSTYPE_INFO), documented in
// Documentation/admin-guide/device-mapper/thin-provisioning.rst:
//   <transaction id> <used metadata blocks>/<total metadata blocks>
//   <used data blocks>/<total data blocks> <held metadata root>
//   ro|rw|out_of_data_space [no_]discard_passdown|ignore_discard
//   [error|queue]_if_no_space needs_check|- <metadata low watermark>
// or the single word `Fail` (pool failed) or `Error` (status could not be read). Older kernels
// stop earlier (no needs_check field, no watermark, no no-space policy), so trailing fields are
// optional and recognised by their words.
import { InvalidArgumentError } from '../errors.js';

export type ThinPoolStatus =
  | {
      state: 'ok';
      transactionId: bigint;
      usedMetadataBlocks: bigint;
      totalMetadataBlocks: bigint;
      usedDataBlocks: bigint;
      totalDataBlocks: bigint;
      /** The metadata snapshot's root block (reserve_metadata_snap), null when none is held (`-`). */
      heldMetadataRoot: bigint | null;
      mode: 'rw' | 'ro' | 'out_of_data_space';
      discardPassdown: boolean;
      ignoreDiscard: boolean;
      noSpaceBehaviour: 'queue' | 'error';
      needsCheck: boolean;
      /** Free metadata blocks below which the pool raises an event (kernels >= 4.16). */
      metadataLowWatermark?: bigint;
    }
  | { state: 'Fail' }
  | { state: 'Error' };

function fail(params: string, reason: string): InvalidArgumentError {
  return new InvalidArgumentError('thin-pool status', params, reason);
}

function num(params: string, field: string, s: string | undefined): bigint {
  if (s === undefined || !/^\d+$/.test(s)) throw fail(params, `${field} must be a number, got ${s ?? 'nothing'}`);
  return BigInt(s);
}

function ratio(params: string, field: string, s: string | undefined): [bigint, bigint] {
  const m = s === undefined ? null : /^(\d+)\/(\d+)$/.exec(s);
  if (!m) throw fail(params, `${field} must be <used>/<total>, got ${s ?? 'nothing'}`);
  return [BigInt(m[1]!), BigInt(m[2]!)];
}

export function parseThinPoolStatus(params: string): ThinPoolStatus {
  const words = params.trim().split(/\s+/);
  if (words.length === 1 && (words[0] === 'Fail' || words[0] === 'Error')) return { state: words[0] };
  if (words.length < 5) throw fail(params, `expected at least 5 fields, got ${words[0] === '' ? 0 : words.length}`);
  const transactionId = num(params, 'transaction id', words[0]);
  const [usedMetadataBlocks, totalMetadataBlocks] = ratio(params, 'metadata blocks', words[1]);
  const [usedDataBlocks, totalDataBlocks] = ratio(params, 'data blocks', words[2]);
  const held = words[3];
  const heldMetadataRoot = held === '-' ? null : num(params, 'held metadata root', held);
  const mode = words[4];
  if (mode !== 'rw' && mode !== 'ro' && mode !== 'out_of_data_space') {
    throw fail(params, `mode must be rw, ro or out_of_data_space, got ${mode ?? 'nothing'}`);
  }
  // Defaults for kernels that predate a field: discards pass down, I/O queues when full.
  const status: ThinPoolStatus = {
    state: 'ok',
    transactionId,
    usedMetadataBlocks,
    totalMetadataBlocks,
    usedDataBlocks,
    totalDataBlocks,
    heldMetadataRoot,
    mode,
    discardPassdown: true,
    ignoreDiscard: false,
    noSpaceBehaviour: 'queue',
    needsCheck: false,
  };
  const rest = words.slice(5);
  for (const [i, w] of rest.entries()) {
    const last = i === rest.length - 1;
    switch (w) {
      case 'discard_passdown':
        status.discardPassdown = true;
        break;
      case 'no_discard_passdown':
        status.discardPassdown = false;
        break;
      case 'ignore_discard':
        status.ignoreDiscard = true;
        status.discardPassdown = false;
        break;
      case 'queue_if_no_space':
        status.noSpaceBehaviour = 'queue';
        break;
      case 'error_if_no_space':
        status.noSpaceBehaviour = 'error';
        break;
      case 'needs_check':
        status.needsCheck = true;
        break;
      case '-': // the needs_check slot when no check is needed
        break;
      default:
        if (last && /^\d+$/.test(w)) status.metadataLowWatermark = BigInt(w);
        else throw fail(params, `unknown field ${JSON.stringify(w)}`);
    }
  }
  return status;
}
