// `devmapper decode <COMMAND> <hex> [--request]`: a captured dm ioctl buffer as JSON. The hex may
// have its trailing zero bytes stripped (as in the golden captures): it is padded to data_size.
import { decodeDmBuffer, parseDmCommand } from '../structs/decode.js';
import { DM_IOCTL_SIZE } from '../structs/dm-ioctl.js';
import { UsageError } from './usage.js';
import { writeOut } from './stdio.js';

const HELP = `usage: devmapper decode <COMMAND> <hex> [--request]

  COMMAND  the kernel's name (DM_TABLE_STATUS or TABLE_STATUS) or number (12)
  hex      the whole buffer, header first; trailing zero bytes may be left out
  --request  decode as the buffer sent to the kernel (default: as the kernel's reply)`;

const OFF_DATA_SIZE = 12;
/** A sanity cap on padding, so a garbage data_size in pasted hex does not allocate gigabytes. */
const MAX_PAD = 64 * 1024 * 1024;

function parseHex(text: string): Uint8Array {
  const hex = text.replace(/^0x/i, '').replace(/\s+/g, '');
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new UsageError('hex must be an even number of hex digits');
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** Pads to max(header, data_size) bytes, reading data_size from the (possibly short) header. */
export function padToDataSize(bytes: Uint8Array): Uint8Array {
  const padded = new Uint8Array(Math.max(bytes.length, DM_IOCTL_SIZE));
  padded.set(bytes);
  const dataSize = new DataView(padded.buffer).getUint32(OFF_DATA_SIZE, true);
  if (dataSize <= padded.length || dataSize > MAX_PAD) return padded;
  const full = new Uint8Array(dataSize);
  full.set(padded);
  return full;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    writeOut(`${HELP}\n`);
    return 0;
  }
  const request = argv.includes('--request');
  const positionals = argv.filter((a) => a !== '--request' && a !== '--reply');
  const unknown = positionals.find((a) => a.startsWith('--'));
  if (unknown) throw new UsageError(`unknown option '${unknown}'`);
  if (positionals.length !== 2) throw new UsageError('expected <COMMAND> <hex>');
  const [commandText, hex] = positionals as [string, string];
  const command = parseDmCommand(commandText);
  if (!command) throw new UsageError(`unknown dm command '${commandText}'`);
  const decoded = decodeDmBuffer(command, padToDataSize(parseHex(hex)), request ? 'request' : 'reply');
  writeOut(`${JSON.stringify(decoded, null, 2)}\n`);
  return 0;
}
