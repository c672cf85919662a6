// The thin target's status line (dm-thin.c thin_status, STATUSTYPE_INFO):
//   <nr mapped sectors> <highest mapped sector>
// where the highest is `-` while nothing is mapped; or `Fail` / `Error` (thin-provisioning.rst).
import { type Sectors, sectors } from '../../structs/units.js';
import { InvalidArgumentError } from '../errors.js';

export type ThinStatus =
  | { state: 'ok'; mappedSectors: Sectors; highestMappedSector: Sectors | null }
  | { state: 'Fail' }
  | { state: 'Error' };

export function parseThinStatus(params: string): ThinStatus {
  const words = params.trim().split(/\s+/);
  if (words.length === 1 && (words[0] === 'Fail' || words[0] === 'Error')) return { state: words[0] };
  const [mapped, highest] = words;
  if (words.length !== 2 || mapped === undefined || highest === undefined || !/^\d+$/.test(mapped) || !/^(\d+|-)$/.test(highest)) {
    throw new InvalidArgumentError('thin status', params, 'expected "<mapped sectors> <highest mapped sector>|-", Fail or Error');
  }
  return { state: 'ok', mappedSectors: sectors(BigInt(mapped)), highestMappedSector: highest === '-' ? null : sectors(BigInt(highest)) };
}
