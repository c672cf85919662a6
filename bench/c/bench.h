/*
 * What the bench's C programs share: the clock they time with and their fatal error. A program
 * defines BENCH_PROG, its name in messages, before including this.
 */
#ifndef DEVMAPPER_BENCH_H
#define DEVMAPPER_BENCH_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#ifdef BENCH_PROG
/* `what` of `name` failed: prints errno's text and exits 1. */
static inline void die(const char *what, const char *name) {
  fprintf(stderr, BENCH_PROG ": %s %s: %s\n", what, name ? name : "", strerror(errno));
  exit(1);
}
#endif

#endif
