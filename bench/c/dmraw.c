/*
 * dmraw: the practical limit. The same device-mapper work as the library, as bare ioctls on
 * /dev/mapper/control with buffers of exactly the size each command needs.
 *
 *   dmraw cycle POOL_NAME POOL_MAJ:MIN ORIGIN_ID FIRST_ID COUNT MAPPER_DIR|-
 *     COUNT snapshot cycles (create_snap, DEV_CREATE, TABLE_LOAD thin, resume, [mknod],
 *     DEV_REMOVE, [unlink], delete); MAPPER_DIR "-" skips the node. Prints "ns <elapsed>".
 *   dmraw list REPEATS
 *     Finds the exact size of DM_LIST_DEVICES' reply once (16 KiB, doubling), then times REPEATS
 *     calls with a buffer of exactly that size, walking every entry and folding every byte of
 *     every name into a checksum (a caller reads each name: ours makes a string of each). Prints
 *     "ns <median of calls> devices <n> sum <checksum> bytes <size>".
 * Timing is inside the process: process start-up is not part of any figure.
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
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#define BENCH_PROG "dmraw"
#include "bench.h"

static int ctl;

/* A header for `name` in `buf` of `size` bytes (zeroed); payload goes at data_start. */
static struct dm_ioctl *header(void *buf, size_t size, const char *name, uint32_t flags) {
  struct dm_ioctl *io = buf;
  memset(buf, 0, size);
  io->version[0] = DM_VERSION_MAJOR;
  io->version[1] = 0;
  io->version[2] = 0;
  io->data_size = (uint32_t)size;
  io->data_start = sizeof(struct dm_ioctl);
  io->flags = flags;
  if (name) strncpy(io->name, name, DM_NAME_LEN - 1);
  return io;
}

static void message(const char *pool, const char *msg) {
  char buf[sizeof(struct dm_ioctl) + sizeof(struct dm_target_msg) + 64] __attribute__((aligned(8)));
  size_t used = sizeof(struct dm_ioctl) + sizeof(struct dm_target_msg) + strlen(msg) + 1;
  struct dm_ioctl *io = header(buf, (used + 7) & ~(size_t)7, pool, 0);
  struct dm_target_msg *m = (void *)((char *)buf + io->data_start);
  m->sector = 0;
  strcpy(m->message, msg);
  if (ioctl(ctl, DM_TARGET_MSG, io) < 0) die("DM_TARGET_MSG", msg);
}

static int cycle(int argc, char **argv) {
  if (argc != 8) return 2;
  const char *pool = argv[2], *pooldev = argv[3], *mapper = argv[7];
  int origin = atoi(argv[4]), first = atoi(argv[5]), count = atoi(argv[6]);
  int mk = strcmp(mapper, "-") != 0;
  char name[64], path[256], msg[64], params[64];
  snprintf(name, sizeof name, "bench-raw-%d", (int)getpid());
  snprintf(path, sizeof path, "%s/%s", mapper, name);
  char buf[1024] __attribute__((aligned(8)));
  uint64_t t0 = now_ns();
  for (int i = 0; i < count; i++) {
    int id = first + i;
    snprintf(msg, sizeof msg, "create_snap %d %d", id, origin);
    message(pool, msg);

    struct dm_ioctl *io = header(buf, sizeof(struct dm_ioctl), name, 0);
    if (ioctl(ctl, DM_DEV_CREATE, io) < 0) die("DM_DEV_CREATE", name);
    uint64_t dev = io->dev;

    snprintf(params, sizeof params, "%s %d", pooldev, id);
    size_t used = sizeof(struct dm_ioctl) + sizeof(struct dm_target_spec) + strlen(params) + 1;
    used = (used + 7) & ~(size_t)7;
    io = header(buf, used, name, 0);
    io->target_count = 1;
    struct dm_target_spec *sp = (void *)(buf + io->data_start);
    sp->sector_start = 0;
    sp->length = 2097152; /* 1 GiB, as the bench's origin */
    strcpy(sp->target_type, "thin");
    sp->next = 0;
    strcpy((char *)(sp + 1), params);
    if (ioctl(ctl, DM_TABLE_LOAD, io) < 0) die("DM_TABLE_LOAD", name);

    io = header(buf, sizeof(struct dm_ioctl), name, 0);
    if (ioctl(ctl, DM_DEV_SUSPEND, io) < 0) die("DM_DEV_SUSPEND (resume)", name);
    if (mk) {
      /* huge_encode_dev: minor's low byte, major, then the minor's high bits. */
      unsigned maj = (unsigned)((dev >> 8) & 0xfff), min = (unsigned)((dev & 0xff) | ((dev >> 12) & 0xfff00));
      if (mknod(path, S_IFBLK | 0600, makedev(maj, min)) < 0) die("mknod", path);
    }

    io = header(buf, sizeof(struct dm_ioctl), name, 0);
    if (ioctl(ctl, DM_DEV_REMOVE, io) < 0) die("DM_DEV_REMOVE", name);
    if (mk && unlink(path) < 0) die("unlink", path);

    snprintf(msg, sizeof msg, "delete %d", id);
    message(pool, msg);
  }
  printf("ns %llu\n", (unsigned long long)(now_ns() - t0));
  return 0;
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/*
 * FNV-1a of one name, summed over the names: every byte read, and the same sum whatever order the
 * kernel lists in (bench/p2-list.ts checks ours against it).
 */
static uint32_t name_sum(const char *name) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
  return h;
}

/* One DM_LIST_DEVICES into buf of size; returns the reply's header. */
static struct dm_ioctl *list_once(char *buf, size_t size) {
  struct dm_ioctl *io = header(buf, size, NULL, 0);
  if (ioctl(ctl, DM_LIST_DEVICES, io) < 0) die("DM_LIST_DEVICES", NULL);
  return io;
}

/* Each round's sum is stored here, so that no round's walk can be left out by the compiler. */
static volatile uint32_t sink;

static int list(int argc, char **argv) {
  if (argc != 3) return 2;
  int repeats = atoi(argv[2]);
  size_t size = 16 * 1024;
  char *buf;
  struct dm_ioctl *io;
  for (;;) {
    buf = aligned_alloc(8, size);
    io = list_once(buf, size);
    if (!(io->flags & DM_BUFFER_FULL_FLAG)) break;
    free(buf);
    size *= 2;
  }
  size_t exact = (io->data_size + 7) & ~(size_t)7;
  free(buf);
  buf = aligned_alloc(8, exact);
  uint64_t *t = calloc((size_t)repeats, sizeof *t);
  unsigned long devices = 0;
  uint32_t sum = 0;
  for (int r = 0; r < repeats; r++) {
    uint64_t t0 = now_ns();
    io = list_once(buf, exact);
    if (io->flags & DM_BUFFER_FULL_FLAG) { fprintf(stderr, "dmraw: exact size %zu too small\n", exact); return 1; }
    devices = 0;
    sum = 0;
    if (io->data_size > io->data_start) {
      struct dm_name_list *nl = (void *)(buf + io->data_start);
      if (nl->dev) for (;;) {
        devices++;
        sum += name_sum(nl->name);
        if (!nl->next) break;
        nl = (void *)((char *)nl + nl->next);
      }
    }
    sink = sum;
    t[r] = now_ns() - t0;
  }
  qsort(t, (size_t)repeats, sizeof *t, cmp);
  printf("ns %llu devices %lu sum %lu bytes %zu\n", (unsigned long long)t[repeats / 2], devices, (unsigned long)sum, exact);
  return 0;
}

int main(int argc, char **argv) {
  ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) die("open", "/dev/mapper/control");
  int rc = 2;
  if (argc > 1 && !strcmp(argv[1], "cycle")) rc = cycle(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "list")) rc = list(argc, argv);
  if (rc == 2) fprintf(stderr, "usage: dmraw cycle POOL MAJ:MIN ORIGIN FIRST COUNT MAPPER_DIR|- | dmraw list REPEATS\n");
  return rc;
}
