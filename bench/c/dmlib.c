/*
 * dmlib: the same work through libdevmapper (Debian's libdevmapper-dev headers, the host's .so),
 * as a program written against it would do it: one dm_task per command; node operations by the
 * library itself (run with DM_DISABLE_UDEV=1), applied by dm_task_update_nodes() as dmsetup's
 * dm_udev_wait() would.
 *
 *   dmlib cycle POOL_NAME POOL_MAJ:MIN ORIGIN_ID FIRST_ID COUNT   -> "ns <elapsed>"
 *   dmlib list REPEATS   -> "ns <median per call> devices <n> sum <checksum>" (DM_DEVICE_LIST +
 *     dm_task_get_names walk, every byte of every name folded into the checksum, as dmraw)
 */
#include <libdevmapper.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench.h"

static void fail(const char *what) {
  fprintf(stderr, "dmlib: %s failed\n", what);
  exit(1);
}

static void message(const char *pool, const char *msg) {
  struct dm_task *t = dm_task_create(DM_DEVICE_TARGET_MSG);
  if (!t || !dm_task_set_name(t, pool) || !dm_task_set_sector(t, 0) || !dm_task_set_message(t, msg) || !dm_task_run(t))
    fail(msg);
  dm_task_destroy(t);
}

static int cycle(int argc, char **argv) {
  if (argc != 7) return 2;
  const char *pool = argv[2], *pooldev = argv[3];
  int origin = atoi(argv[4]), first = atoi(argv[5]), count = atoi(argv[6]);
  char name[64], msg[64], params[64];
  snprintf(name, sizeof name, "bench-lib-%d", (int)getpid());
  uint64_t t0 = now_ns();
  for (int i = 0; i < count; i++) {
    int id = first + i;
    snprintf(msg, sizeof msg, "create_snap %d %d", id, origin);
    message(pool, msg);

    /* DM_DEVICE_CREATE with a table: libdevmapper does DEV_CREATE, TABLE_LOAD and resume. */
    struct dm_task *t = dm_task_create(DM_DEVICE_CREATE);
    snprintf(params, sizeof params, "%s %d", pooldev, id);
    if (!t || !dm_task_set_name(t, name) || !dm_task_add_target(t, 0, 2097152, "thin", params) || !dm_task_run(t))
      fail("create");
    dm_task_destroy(t);
    dm_task_update_nodes();

    t = dm_task_create(DM_DEVICE_REMOVE);
    if (!t || !dm_task_set_name(t, name) || !dm_task_run(t)) fail("remove");
    dm_task_destroy(t);
    dm_task_update_nodes();

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

/* FNV-1a of one name, summed over the names (as dmraw: the same sum whatever the order). */
static uint32_t name_sum(const char *name) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
  return h;
}

/* Each round's sum is stored here, so that no round's walk can be left out by the compiler. */
static volatile uint32_t sink;

static int list(int argc, char **argv) {
  if (argc != 3) return 2;
  int repeats = atoi(argv[2]);
  uint64_t *ts = calloc((size_t)repeats, sizeof *ts);
  unsigned long devices = 0;
  uint32_t sum = 0;
  for (int r = 0; r < repeats; r++) {
    uint64_t t0 = now_ns();
    struct dm_task *t = dm_task_create(DM_DEVICE_LIST);
    if (!t || !dm_task_run(t)) fail("list");
    struct dm_names *n = dm_task_get_names(t);
    devices = 0;
    sum = 0;
    if (n && n->dev) for (;;) {
      devices++;
      sum += name_sum(n->name);
      if (!n->next) break;
      n = (struct dm_names *)((char *)n + n->next);
    }
    dm_task_destroy(t);
    sink = sum;
    ts[r] = now_ns() - t0;
  }
  qsort(ts, (size_t)repeats, sizeof *ts, cmp);
  printf("ns %llu devices %lu sum %lu\n", (unsigned long long)ts[repeats / 2], devices, (unsigned long)sum);
  return 0;
}

int main(int argc, char **argv) {
  dm_log_init_verbose(0);
  int rc = 2;
  if (argc > 1 && !strcmp(argv[1], "cycle")) rc = cycle(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "list")) rc = list(argc, argv);
  if (rc == 2) fprintf(stderr, "usage: dmlib cycle POOL MAJ:MIN ORIGIN FIRST COUNT | dmlib list REPEATS\n");
  dm_lib_release();
  return rc;
}
