/*
 * dmlayers: the storage driver's layer cycle (bench P4) as plain C, making the same system calls as
 * our Driver does per layer, in the same order (checked with strace: bench/profile.ts layers N):
 *
 *   create  DM_TABLE_STATUS of the pool (health and free space), access(2) of the intent (none may
 *           be there), the intent (atomic write), DM_DEV_STATUS of the origin (suspended around the
 *           message if active), DM_TARGET_MSG create_snap, the intent again with "created",
 *           DM_TARGET_MSG set_transaction_id, the device file, the pool state file, unlink of the
 *           intent;
 *   get     DM_DEV_STATUS of the device (not active: the mount table is not read) and of the pool,
 *           DM_TABLE_STATUS of the pool (noflush), DM_DEV_CREATE, DM_TABLE_LOAD (thin),
 *           DM_DEV_SUSPEND (resume), mknod of /dev/mapper/<name>, mkdir of the mount point and fsync
 *           of its folder, the superblock (pread), mount(2) ext4 with "discard", mkdir of
 *           <mnt>/rootfs and fsync of the mount point;
 *   put     DM_DEV_STATUS, /proc/self/mountinfo, umount2, DM_DEV_REMOVE, unlink of the node;
 *   remove  DM_DEV_STATUS, DM_TABLE_STATUS (noflush), access(2) of the intent, the delete intent,
 *           DM_DEV_REMOVE (ENXIO: not active), DM_TARGET_MSG delete and set_transaction_id, unlink
 *           of the device file, the pool state file, unlink of the intent, rmdir of the mount point.
 *
 * Every atomic write is ours: a temp file (O_CREAT|O_EXCL), write, fsync, close, rename, fsync of
 * the folder; every unlink in the metadata folder is followed by an fsync of the folder. Files are
 * the same JSON text (2-space indented) as the pool manager's. Buffers are the sizes our library
 * sends (16 KiB for messages and status, the header alone for the others).
 *
 *   dmlayers POOL POOL_MAJ:MIN STEM ORIGIN_ID SIZE_BYTES HOME FIRST_ID FIRST_LAYER COUNT TXID
 *     STEM: the dm name stem (<STEM>-base is the origin, <STEM>-layer-N the layers); HOME holds
 *     metadata/ and mnt/ as the driver's home does. Prints per layer "layer NS_CREATE NS_GET NS_PUT
 *     NS_REMOVE" (clock_gettime, in the process: start-up is not counted), then "tx TXID".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#define BENCH_PROG "dmlayers"
#include "bench.h"

/* What our library sends: a 16 KiB buffer for commands with a reply payload. */
#define REPLY_BUFFER_SIZE (16 * 1024)
/* dm-ioctl's udev cookie flags (libdevmapper's DM_UDEV_FLAGS_SHIFT): rules off, primary source. */
#define DM_UDEV_FLAGS_SHIFT 16
#define DM_UDEV_DISABLE_DM_RULES_FLAG 0x0001
#define DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG 0x0002
#define DM_UDEV_PRIMARY_SOURCE_FLAG 0x0040
#define UDEV_COOKIE \
  ((uint32_t)(DM_UDEV_DISABLE_DM_RULES_FLAG | DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG | DM_UDEV_PRIMARY_SOURCE_FLAG) << DM_UDEV_FLAGS_SHIFT)
/* ext2/3/4 superblock: at 1024, magic at offset 56. */
#define EXT_SUPER_OFFSET 1024
#define EXT_MAGIC_OFFSET 56
#define EXT_SUPER_MAGIC 0xef53

static int ctl;
static char buf[REPLY_BUFFER_SIZE] __attribute__((aligned(8)));
static const char *pool, *pooldev, *stem, *home;
static char metadir[4096], mntdir[4096];
static unsigned long long size_bytes;
static uint32_t tmp_tag;
static int pid;

/* snprintf that refuses to truncate. */
#define FMT(out, ...)                                                            \
  do {                                                                           \
    if ((size_t)snprintf(out, sizeof(out), __VA_ARGS__) >= sizeof(out)) {       \
      errno = ENAMETOOLONG;                                                      \
      die("too long", #out);                                                     \
    }                                                                            \
  } while (0)

/* A header for `name` (zeroed header; the payload area is the caller's); data_size is `size`. */
static struct dm_ioctl *header(size_t size, const char *name, uint32_t flags, uint32_t minor_version) {
  struct dm_ioctl *io = (struct dm_ioctl *)buf;
  memset(io, 0, sizeof *io);
  io->version[0] = DM_VERSION_MAJOR;
  io->version[1] = minor_version;
  io->data_size = (uint32_t)size;
  io->data_start = sizeof(struct dm_ioctl);
  io->flags = flags;
  if (name) {
    size_t n = strlen(name);
    if (n >= DM_NAME_LEN) die("name too long", name);
    memcpy(io->name, name, n + 1);
  }
  return io;
}

/* DM_DEV_STATUS: 1 when the device exists (its dev in *dev, open count in *open), 0 when not. */
static int dev_status(const char *name, uint64_t *dev, int32_t *open) {
  struct dm_ioctl *io = header(sizeof(struct dm_ioctl), name, 0, 0);
  if (ioctl(ctl, DM_DEV_STATUS, io) < 0) {
    if (errno == ENXIO) return 0;
    die("DM_DEV_STATUS", name);
  }
  if (dev) *dev = io->dev;
  if (open) *open = io->open_count;
  return 1;
}

/* DM_TABLE_STATUS of the pool: refuse a failed, read-only or needs_check pool, or a full one. */
static void pool_status(uint32_t flags) {
  struct dm_ioctl *io = header(REPLY_BUFFER_SIZE, pool, flags, 0);
  if (ioctl(ctl, DM_TABLE_STATUS, io) < 0) die("DM_TABLE_STATUS", pool);
  struct dm_target_spec *sp = (void *)(buf + io->data_start);
  const char *params = (const char *)(sp + 1);
  unsigned long long tx, um, tm, ud, td;
  char held[32], mode[32], passdown[32], nospace[32], check[32];
  if (io->target_count != 1 || strcmp(sp->target_type, "thin-pool") ||
      sscanf(params, "%llu %llu/%llu %llu/%llu %31s %31s %31s %31s %31s", &tx, &um, &tm, &ud, &td, held, mode, passdown, nospace,
             check) != 10 ||
      strcmp(mode, "rw") || !strcmp(check, "needs_check") || ud >= td || um >= tm) {
    errno = EIO;
    die("pool status", params);
  }
}

static void message(const char *msg) {
  size_t used = sizeof(struct dm_ioctl) + sizeof(struct dm_target_msg) + strlen(msg) + 1;
  struct dm_ioctl *io = header(REPLY_BUFFER_SIZE, pool, 0, 2);
  struct dm_target_msg *m = (void *)(buf + io->data_start);
  m->sector = 0;
  memcpy(m->message, msg, used - sizeof(struct dm_ioctl) - sizeof(struct dm_target_msg));
  if (ioctl(ctl, DM_TARGET_MSG, io) < 0) die("DM_TARGET_MSG", msg);
}

static void fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) < 0) die("fsync", dir);
  close(fd);
}

/* Temp file, write, fsync, close, rename over `name`, fsync of the folder. */
static void write_atomic(const char *name, const char *text) {
  char tmp[4096], path[4096];
  FMT(tmp, "%s/.tmp-%s-%d-%08x", metadir, name, pid, tmp_tag++);
  FMT(path, "%s/%s", metadir, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("open", tmp);
  size_t len = strlen(text);
  for (size_t off = 0; off < len;) {
    ssize_t n = write(fd, text + off, len - off);
    if (n < 0) die("write", tmp);
    off += (size_t)n;
  }
  if (fsync(fd) < 0) die("fsync", tmp);
  close(fd);
  if (rename(tmp, path) < 0) die("rename", tmp);
  fsync_dir(metadir);
}

/* unlink, then fsync of the folder. */
static void remove_file(const char *name) {
  char path[4096];
  FMT(path, "%s/%s", metadir, name);
  if (unlink(path) < 0) die("unlink", path);
  fsync_dir(metadir);
}

/* A whole small file (8 KiB reads until end of file) into `out`; -1 when it does not exist. */
static ssize_t read_file(const char *path, char *out, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    die("open", path);
  }
  size_t len = 0;
  for (;;) {
    if (cap - len < 8192) die("read (file too big)", path);
    ssize_t n = read(fd, out + len, 8192);
    if (n < 0) die("read", path);
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  out[len] = 0;
  return (ssize_t)len;
}

/* Our pool manager checks that no intent is on disk before it writes one. */
static void no_intent(void) {
  char path[4096];
  FMT(path, "%s/transaction-metadata", metadir);
  if (access(path, F_OK) == 0 || errno != ENOENT) {
    errno = EEXIST;
    die("an intent is on disk", path);
  }
}

static void write_pool_state(unsigned next_id, unsigned long long tx) {
  char text[256];
  FMT(text, "{\n  \"next_device_id\": %u,\n  \"transaction_id\": %llu\n}\n", next_id, tx);
  write_atomic("deviceset-metadata", text);
}

/* Whether `mp` is a mount point in /proc/self/mountinfo (field 5 of a line). */
static int mounted(const char *mp) {
  static char text[1 << 16];
  if (read_file("/proc/self/mountinfo", text, sizeof text) < 0) die("read", "/proc/self/mountinfo");
  size_t n = strlen(mp);
  for (char *line = text; *line;) {
    char *end = strchr(line, '\n');
    const char *f = line;
    for (int i = 0; i < 4 && f; i++) f = strchr(f, ' '), f = f ? f + 1 : NULL;
    if (f && !strncmp(f, mp, n) && f[n] == ' ') return 1;
    if (!end) break;
    line = end + 1;
  }
  return 0;
}

/* mkdir of one folder whose parent exists, then fsync of the parent. */
static void make_dir(const char *path, const char *parent) {
  if (mkdir(path, 0755) < 0) die("mkdir", path);
  fsync_dir(parent);
}

static void create(unsigned id, unsigned origin, const char *hash, unsigned long long *tx) {
  char text[1024], msg[128], origin_name[DM_NAME_LEN];
  pool_status(0);
  no_intent();
  int n = snprintf(text, sizeof text,
                   "{\n  \"op\": \"snapshot\",\n  \"hash\": \"%s\",\n  \"thin_id\": %u,\n  \"old_transaction_id\": %llu,\n"
                   "  \"new_transaction_id\": %llu,\n  \"origin_id\": %u,\n  \"origin_hash\": \"\",\n  \"size\": %llu",
                   hash, id, *tx, *tx + 1, origin, size_bytes);
  strcpy(text + n, "\n}\n");
  write_atomic("transaction-metadata", text);
  /* An active origin would be suspended around the message; the base is never active here. */
  FMT(origin_name, "%s-base", stem);
  if (dev_status(origin_name, NULL, NULL)) {
    errno = EBUSY;
    die("origin is active", origin_name);
  }
  FMT(msg, "create_snap %u %u", id, origin);
  message(msg);
  strcpy(text + n, ",\n  \"created\": true\n}\n");
  write_atomic("transaction-metadata", text);
  FMT(msg, "set_transaction_id %llu %llu", *tx, *tx + 1);
  message(msg);
  *tx += 1;
  snprintf(text, sizeof text,
           "{\n  \"hash\": \"%s\",\n  \"device_id\": %u,\n  \"size\": %llu,\n  \"transaction_id\": %llu,\n"
           "  \"initialized\": true,\n  \"deleted\": false\n}\n",
           hash, id, size_bytes, *tx);
  write_atomic(hash, text);
  write_pool_state(id + 1, *tx);
  remove_file("transaction-metadata");
}

static void get(unsigned id, const char *name, const char *node, const char *mp) {
  char params[64], rootfs[4096];
  uint64_t pool_dev;
  /* Active? (then: mounted where?) Not active here, so the mount table is not read. */
  if (dev_status(name, NULL, NULL)) die("already active", name);
  if (!dev_status(pool, &pool_dev, NULL)) die("gone", pool); /* the thin target's pool */
  pool_status(DM_NOFLUSH_FLAG);

  struct dm_ioctl *io = header(sizeof(struct dm_ioctl), name, 0, 0);
  if (ioctl(ctl, DM_DEV_CREATE, io) < 0) die("DM_DEV_CREATE", name);
  uint64_t dev = io->dev;
  FMT(params, "%s %u", pooldev, id);
  size_t used = sizeof(struct dm_ioctl) + sizeof(struct dm_target_spec) + strlen(params) + 1;
  io = header((used + 7) & ~(size_t)7, name, 0, 0);
  io->target_count = 1;
  struct dm_target_spec *sp = (void *)(buf + io->data_start);
  memset(sp, 0, sizeof *sp);
  sp->length = size_bytes / 512;
  strcpy(sp->target_type, "thin");
  strcpy((char *)(sp + 1), params);
  if (ioctl(ctl, DM_TABLE_LOAD, io) < 0) die("DM_TABLE_LOAD", name);
  io = header(sizeof(struct dm_ioctl), name, 0, 0);
  io->event_nr = UDEV_COOKIE;
  if (ioctl(ctl, DM_DEV_SUSPEND, io) < 0) die("DM_DEV_SUSPEND (resume)", name);
  /* huge_encode_dev: minor's low byte, major, then the minor's high bits. */
  unsigned maj = (unsigned)((dev >> 8) & 0xfff), min = (unsigned)((dev & 0xff) | ((dev >> 12) & 0xfff00));
  if (mknod(node, S_IFBLK | 0600, makedev(maj, min)) < 0) die("mknod", node);

  make_dir(mp, mntdir);
  unsigned char sb[2048];
  int fd = open(node, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || pread(fd, sb, sizeof sb, 0) != (ssize_t)sizeof sb) die("read superblock", node);
  close(fd);
  if ((sb[EXT_SUPER_OFFSET + EXT_MAGIC_OFFSET] | sb[EXT_SUPER_OFFSET + EXT_MAGIC_OFFSET + 1] << 8) != EXT_SUPER_MAGIC) {
    errno = EINVAL;
    die("not ext4", node);
  }
  if (mount(node, mp, "ext4", 0, "discard") < 0) die("mount", node);
  FMT(rootfs, "%s/rootfs", mp);
  make_dir(rootfs, mp);
}

static void put(const char *name, const char *node, const char *mp) {
  if (!dev_status(name, NULL, NULL)) die("gone", name); /* its mount points: */
  if (!mounted(mp)) die("not mounted", mp);
  if (umount2(mp, 0) < 0) die("umount2", mp);
  struct dm_ioctl *io = header(sizeof(struct dm_ioctl), name, 0, 0);
  io->event_nr = UDEV_COOKIE;
  if (ioctl(ctl, DM_DEV_REMOVE, io) < 0) die("DM_DEV_REMOVE", name);
  if (unlink(node) < 0) die("unlink", node);
}

static void remove_layer(unsigned id, const char *name, const char *hash, const char *mp, unsigned long long *tx) {
  char text[1024], msg[128];
  if (dev_status(name, NULL, NULL)) die("still active", name); /* busy? */
  pool_status(DM_NOFLUSH_FLAG);                                 /* writable? */
  no_intent();
  snprintf(text, sizeof text,
           "{\n  \"op\": \"delete\",\n  \"hash\": \"%s\",\n  \"thin_id\": %u,\n  \"old_transaction_id\": %llu,\n"
           "  \"new_transaction_id\": %llu\n}\n",
           hash, id, *tx, *tx + 1);
  write_atomic("transaction-metadata", text);
  /* Deactivate: DM_DEV_REMOVE, ENXIO when not active. */
  struct dm_ioctl *io = header(sizeof(struct dm_ioctl), name, 0, 0);
  io->event_nr = UDEV_COOKIE;
  if (ioctl(ctl, DM_DEV_REMOVE, io) == 0 || errno != ENXIO) die("DM_DEV_REMOVE: still active", name);
  FMT(msg, "delete %u", id);
  message(msg);
  FMT(msg, "set_transaction_id %llu %llu", *tx, *tx + 1);
  message(msg);
  *tx += 1;
  remove_file(hash);
  write_pool_state(id + 1, *tx);
  remove_file("transaction-metadata");
  if (rmdir(mp) < 0) die("rmdir", mp);
}

int main(int argc, char **argv) {
  if (argc != 11) {
    fprintf(stderr, "usage: dmlayers POOL POOL_MAJ:MIN STEM ORIGIN_ID SIZE_BYTES HOME FIRST_ID FIRST_LAYER COUNT TXID\n");
    return 2;
  }
  pool = argv[1], pooldev = argv[2], stem = argv[3], home = argv[6];
  unsigned origin = (unsigned)strtoul(argv[4], NULL, 10), first = (unsigned)strtoul(argv[7], NULL, 10);
  unsigned first_layer = (unsigned)strtoul(argv[8], NULL, 10), count = (unsigned)strtoul(argv[9], NULL, 10);
  size_bytes = strtoull(argv[5], NULL, 10);
  unsigned long long tx = strtoull(argv[10], NULL, 10);
  FMT(metadir, "%s/metadata", home);
  FMT(mntdir, "%s/mnt", home);
  ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) die("open", "/dev/mapper/control");
  pid = (int)getpid();
  tmp_tag = (uint32_t)now_ns();
  /* Markers for a trace (bench/profile.ts layers-c), outside the timed steps. */
  int mark = getenv("DEVMAPPER_PROFILE_MARK") && !strcmp(getenv("DEVMAPPER_PROFILE_MARK"), "1");
  for (unsigned i = 0; i < count; i++) {
    unsigned id = first + i;
    char hash[64], name[DM_NAME_LEN], node[4096], mp[4096];
    FMT(hash, "layer-%u", first_layer + i);
    FMT(name, "%s-%s", stem, hash);
    FMT(node, "/dev/mapper/%s", name);
    FMT(mp, "%s/%s", mntdir, hash);
    if (mark) access("/.layer-begin", F_OK);
    uint64_t t0 = now_ns();
    create(id, origin, hash, &tx);
    uint64_t t1 = now_ns();
    get(id, name, node, mp);
    uint64_t t2 = now_ns();
    put(name, node, mp);
    uint64_t t3 = now_ns();
    remove_layer(id, name, hash, mp, &tx);
    uint64_t t4 = now_ns();
    if (mark) access("/.layer-end", F_OK);
    printf("layer %llu %llu %llu %llu\n", (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
           (unsigned long long)(t3 - t2), (unsigned long long)(t4 - t3));
  }
  printf("tx %llu\n", tx);
  return 0;
}
