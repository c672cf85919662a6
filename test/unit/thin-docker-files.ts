// Docker's devmapper metadata files written as its driver writes them (Go's json.Marshal of its
// structs: compact, keys in field order, no newline), by field name, for the unit and kernel tests.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Docker's devInfo: json tags device_id, size, transaction_id, initialized, deleted. */
export interface DockerDevInfo {
  device_id: number;
  size: number;
  transaction_id: number;
  initialized: boolean;
  /** Absent in the legacy file of the oldest drivers. */
  deleted?: boolean;
}

export function dockerDevInfo(id: number, size: number, txid: number, initialized: boolean, deleted = false): DockerDevInfo {
  return { device_id: id, size, transaction_id: txid, initialized, deleted };
}

/** <home>/metadata/<hash> ('' = base), as saveMetadata writes it. */
export function writeDockerDevice(home: string, hash: string, info: DockerDevInfo): void {
  mkdirSync(join(home, 'metadata'), { recursive: true, mode: 0o700 });
  writeFileSync(join(home, 'metadata', hash === '' ? 'base' : hash), JSON.stringify(info), { mode: 0o600 });
}

/** <home>/metadata/deviceset-metadata: next_device_id, BaseDeviceUUID, BaseDeviceFilesystem. */
export function writeDockerDeviceSet(home: string, nextDeviceId: number, uuid: string, fs: string): void {
  mkdirSync(join(home, 'metadata'), { recursive: true, mode: 0o700 });
  const o = { next_device_id: nextDeviceId, BaseDeviceUUID: uuid, BaseDeviceFilesystem: fs };
  writeFileSync(join(home, 'metadata', 'deviceset-metadata'), JSON.stringify(o), { mode: 0o600 });
}

/** <home>/metadata/transaction-metadata: open_transaction_id, device_hash, device_id. */
export function writeDockerTransaction(home: string, openTransactionId: number, hash: string, deviceId: number): void {
  mkdirSync(join(home, 'metadata'), { recursive: true, mode: 0o700 });
  const o = { open_transaction_id: openTransactionId, device_hash: hash, device_id: deviceId };
  writeFileSync(join(home, 'metadata', 'transaction-metadata'), JSON.stringify(o), { mode: 0o600 });
}

/** <home>/devicemapper/json, the older single file: {"Devices": {<hash>: devInfo}}, the base under "". */
export function writeDockerLegacy(home: string, devices: Record<string, DockerDevInfo>): void {
  mkdirSync(join(home, 'devicemapper'), { recursive: true, mode: 0o700 });
  writeFileSync(join(home, 'devicemapper', 'json'), JSON.stringify({ Devices: devices }), { mode: 0o600 });
}

/** Every file under `dir` (relative path -> content), to show files unchanged. */
export function filesUnder(dir: string, skip: (rel: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const rel = relative(dir, p);
      if (skip(rel)) continue;
      if (statSync(p).isDirectory()) walk(p);
      else out[rel] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}
