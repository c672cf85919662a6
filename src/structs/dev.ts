// dev_t as the dm ioctl carries it: the kernel's huge_encode_dev()/huge_decode_dev()
// (include/linux/kdev_t.h), the same layout as glibc's 64-bit makedev for 32-bit minors.

export interface DevT {
  major: number;
  minor: number;
}

/** huge_encode_dev: (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12). */
export function encodeDev({ major, minor }: DevT): bigint {
  const maj = BigInt(major >>> 0);
  const min = BigInt(minor >>> 0);
  return (min & 0xffn) | (maj << 8n) | ((min & ~0xffn) << 12n);
}

/** huge_decode_dev: major = (dev & 0xfff00) >> 8, minor = (dev & 0xff) | ((dev >> 12) & 0xfff00). */
export function decodeDev(dev: bigint): DevT {
  // Both read only the low 32 bits: one bigint operation, the rest in Numbers.
  return decodeDevLow32(Number(dev & 0xffffffffn));
}

/** The `maj:min` spelling of dmsetup, /sys/dev/block, /proc/self/mountinfo and table lines. */
export function formatDev({ major, minor }: DevT): string {
  return `${major}:${minor}`;
}

/** huge_decode_dev of a dev given as its low 32 bits (the only bits the kernel's decoding reads). */
export function decodeDevLow32(low: number): DevT {
  return { major: (low & 0xfff00) >>> 8, minor: (low & 0xff) | ((low >>> 12) & 0xfff00) };
}
