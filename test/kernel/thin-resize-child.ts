// A process that does not hold the pool's home: grows the pool by name (resizePoolByName), as a
// monitor beside the home's owner would. Args: pool name, data bytes, metadata bytes.
import { DeviceMapper } from '../../src/dm/device-mapper.js';
import { deviceName } from '../../src/dm/names.js';
import { bytes } from '../../src/structs/units.js';
import { resizePoolByName } from '../../src/thin/resize.js';

const [poolName, data, metadata] = process.argv.slice(2);
const dm = DeviceMapper.open();
resizePoolByName(dm, deviceName(poolName!), { dataBytes: bytes(BigInt(data!)), metadataBytes: bytes(BigInt(metadata!)) })
  .then(() => process.stdout.write('grown\n'))
  .finally(() => dm.close());
