// The constants of include/uapi/linux/dm-ioctl.h: field lengths, flag bits, and the layout of each
// struct as a table of offsets keyed by the kernel's field names (offsetof(struct, field)).
// A leaf module: the codecs and the command table import it, it imports nothing.

export const DM_IOCTL = 0xfd;
export const DM_NAME_LEN = 128;
export const DM_UUID_LEN = 129;
export const DM_MAX_TYPE_NAME = 16;
export const DM_DIR = 'mapper';
export const DM_CONTROL_NODE = 'control';

/** The interface version this library speaks (the header's DM_VERSION_MAJOR). */
export const DM_VERSION_MAJOR = 4;

/** struct dm_ioctl: the header of every DM command. */
export const DM_IOCTL_OFFSETS = {
  version: 0, // __u32[3]
  data_size: 12,
  data_start: 16,
  target_count: 20,
  open_count: 24, // __s32
  flags: 28,
  event_nr: 32,
  padding: 36,
  dev: 40, // __u64, huge_encode_dev()'d
  name: 48, // char[DM_NAME_LEN]
  uuid: 176, // char[DM_UUID_LEN]
  data: 305, // char[7]: pads the header to 312; the payload starts at data_start
} as const;
/** sizeof(struct dm_ioctl): 305 bytes of fields, 7 of `data`, no tail padding. */
export const DM_IOCTL_SIZE = 312;
/** offsetof(struct dm_ioctl, data): the data_size the kernel reports when a command returns no data. */
export const DM_IOCTL_DATA_OFFSET = DM_IOCTL_OFFSETS.data;

/** struct dm_target_spec, followed by its NUL-terminated params. */
export const DM_TARGET_SPEC_OFFSETS = {
  sector_start: 0, // __u64
  length: 8, // __u64
  status: 16, // __s32
  next: 20,
  target_type: 24, // char[DM_MAX_TYPE_NAME]
} as const;
export const DM_TARGET_SPEC_SIZE = 40;

/** struct dm_target_deps: the DM_TABLE_DEPS reply. */
export const DM_TARGET_DEPS_OFFSETS = {
  count: 0,
  padding: 4,
  dev: 8, // __u64[count]
} as const;

/** struct dm_name_list: one DM_LIST_DEVICES record. The kernel sizes records from `name`, not sizeof (16). */
export const DM_NAME_LIST_OFFSETS = {
  dev: 0, // __u64
  next: 8, // from the start of this record; 0 ends the list
  name: 12,
} as const;
/**
 * What follows a dm_name_list's name on kernels since 4.46 (5.13), at the 8-aligned end of the
 * name's NUL; the uuid only with DM_NAME_LIST_FLAG_HAS_UUID.
 */
export const DM_NAME_LIST_TAIL_OFFSETS = {
  event_nr: 0,
  flags: 4,
  uuid: 8,
} as const;
export const DM_NAME_LIST_TAIL_SIZE = DM_NAME_LIST_TAIL_OFFSETS.uuid;
export const DM_NAME_LIST_FLAG_HAS_UUID = 1;
export const DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID = 2;

/** struct dm_target_versions: one DM_LIST_VERSIONS / DM_GET_TARGET_VERSION record. */
export const DM_TARGET_VERSIONS_OFFSETS = {
  next: 0, // from the start of this record; 0 ends the list
  version: 4, // __u32[3]
  name: 16,
} as const;

/** struct dm_target_msg: the DM_TARGET_MSG request. */
export const DM_TARGET_MSG_OFFSETS = {
  sector: 0, // __u64
  message: 8,
} as const;

/** Status bits of dm_ioctl.flags, by the kernel's names. */
export const DmFlag = {
  DM_READONLY_FLAG: 1 << 0,
  DM_SUSPEND_FLAG: 1 << 1,
  /** libdevmapper's private bit (1 << 2), never read by the kernel; listed so decoders can name it. */
  DM_EXISTS_FLAG: 1 << 2,
  DM_PERSISTENT_DEV_FLAG: 1 << 3,
  DM_STATUS_TABLE_FLAG: 1 << 4,
  DM_ACTIVE_PRESENT_FLAG: 1 << 5,
  DM_INACTIVE_PRESENT_FLAG: 1 << 6,
  DM_BUFFER_FULL_FLAG: 1 << 8,
  DM_SKIP_BDGET_FLAG: 1 << 9,
  DM_SKIP_LOCKFS_FLAG: 1 << 10,
  DM_NOFLUSH_FLAG: 1 << 11,
  DM_QUERY_INACTIVE_TABLE_FLAG: 1 << 12,
  DM_UEVENT_GENERATED_FLAG: 1 << 13,
  DM_UUID_FLAG: 1 << 14,
  DM_SECURE_DATA_FLAG: 1 << 15,
  DM_DATA_OUT_FLAG: 1 << 16,
  DM_DEFERRED_REMOVE: 1 << 17,
  DM_INTERNAL_SUSPEND_FLAG: 1 << 18,
  DM_IMA_MEASUREMENT_FLAG: 1 << 19,
} as const;
export type DmFlagName = keyof typeof DmFlag;

/**
 * udev flags carried in the high 16 bits of event_nr on resume, remove and rename
 * (libdevmapper's DM_UDEV_* in libdm/libdevmapper.h, read by 10-dm.rules); the low 16 bits are
 * the udev cookie. Not kernel ABI: the kernel copies the whole value into the uevent's DM_COOKIE.
 */
export const DM_UDEV_FLAGS_SHIFT = 16;
export const DmUdevFlag = {
  DM_UDEV_DISABLE_DM_RULES_FLAG: 0x0001,
  DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG: 0x0002,
  DM_UDEV_DISABLE_DISK_RULES_FLAG: 0x0004,
  DM_UDEV_DISABLE_OTHER_RULES_FLAG: 0x0008,
  DM_UDEV_LOW_PRIORITY_FLAG: 0x0010,
  DM_UDEV_DISABLE_LIBRARY_FALLBACK: 0x0020,
  DM_UDEV_PRIMARY_SOURCE_FLAG: 0x0040,
} as const;

/** A DM interface version, major.minor.patchlevel. */
export type DmVersion = readonly [number, number, number];
