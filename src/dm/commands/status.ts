// DM_TABLE_STATUS: with DM_STATUS_TABLE_FLAG the table as the kernel keeps it, without it each
// target's status line; DM_QUERY_INACTIVE_TABLE_FLAG reads the inactive table, DM_NOFLUSH_FLAG asks
// targets not to flush for the status (thin-pool commits metadata otherwise).
import { DmFlag } from '../../structs/dm-ioctl.js';
import { decodeTargetSpecs } from '../../structs/target-spec.js';
import { type Sectors, sectors } from '../../structs/units.js';
import { addressWith, type DmContext } from '../context.js';
import type { DeviceRef } from '../names.js';
import { parseTarget, type Target } from '../targets.js';

export interface TargetStatus {
  startSector: Sectors;
  lengthSectors: Sectors;
  type: string;
  params: string;
}

function tableStatus(ctx: DmContext, ref: DeviceRef, flags: number): TargetStatus[] {
  const reply = ctx.control.run('DM_TABLE_STATUS', addressWith(ref, flags));
  return decodeTargetSpecs(reply.payload, reply.header.target_count).map((s) => ({
    startSector: sectors(s.sector_start),
    lengthSectors: sectors(s.length),
    type: s.target_type,
    params: s.params,
  }));
}

/** The table as the kernel prints it (dmsetup table's text: e.g. a pool's `0` feature count kept). */
export function tableLines(ctx: DmContext, ref: DeviceRef, opts: { inactive?: boolean } = {}): TargetStatus[] {
  let flags = DmFlag.DM_STATUS_TABLE_FLAG;
  if (opts.inactive) flags |= DmFlag.DM_QUERY_INACTIVE_TABLE_FLAG;
  return tableStatus(ctx, ref, flags);
}

/** The table as typed targets. */
export function table(ctx: DmContext, ref: DeviceRef, opts: { inactive?: boolean } = {}): Target[] {
  return tableLines(ctx, ref, opts).map((s) => parseTarget(s.type, s.startSector, s.lengthSectors, s.params));
}

export function status(ctx: DmContext, ref: DeviceRef, opts: { noFlush?: boolean; inactive?: boolean } = {}): TargetStatus[] {
  let flags = 0;
  if (opts.noFlush) flags |= DmFlag.DM_NOFLUSH_FLAG;
  if (opts.inactive) flags |= DmFlag.DM_QUERY_INACTIVE_TABLE_FLAG;
  return tableStatus(ctx, ref, flags);
}
