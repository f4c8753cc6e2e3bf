/* Many-threads benchmark workload for bench/run.sh.
 *
 * Usage: threads NTHREADS SIZE_MIB OUTFILE
 *
 * Maps SIZE_MIB MiB of private anonymous memory and starts NTHREADS worker
 * threads (pthreads, default attributes). Worker k owns the k-th
 * SIZE_MIB/NTHREADS share: it fills the first half of its share with
 * pseudo-random bytes (xorshift64*, incompressible) and writes zeros over the
 * second half (present pages, all zero), the same mix as alloc.c. Then it
 * loops forever: write its iteration counter into the next page of its random
 * half, read CLOCK_MONOTONIC, sleep 1 ms. The main thread only reports.
 *
 * An iteration that starts more than GAP_US after the previous one means the
 * worker was stopped (a checkpoint) or kept waiting for a CPU; the worker
 * logs it. Lines are appended to OUTFILE as in alloc.c (each opened O_APPEND,
 * written with one write() and closed). Times are CLOCK_REALTIME
 * microseconds, gap lengths CLOCK_MONOTONIC microseconds:
 *
 *   ready <nthreads> <t_us>      every worker has filled its memory and
 *                                started looping
 *   tick <n> <t_us>              every 10 ms, from the main thread: every
 *                                worker has started an iteration at or after
 *                                t_us, so each has logged its gaps up to
 *                                then; n = iterations of all workers so far
 *   gap <gap_us> <k> <t_us>      worker k (0 .. NTHREADS-1) started an
 *                                iteration gap_us after the previous one;
 *                                t_us is when it ran again
 *
 * The bench takes the pause of a checkpoint as the longest gap of any worker
 * that overlaps the checkpoint, read once a tick shows that every worker has
 * run after it.
 *
 * The 1 ms wake-ups cost CPU in proportion to NTHREADS (64 workers: about a
 * third of one CPU on the 2-CPU bench VM). Far beyond that (1024 workers
 * there) the workers alone saturate the CPUs, the scheduler delays their
 * wake-ups by up to seconds, and the gaps no longer measure the checkpoint.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define GAP_US 5000
#define PAGE 4096

static int64_t clock_us(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *out_path;
static void emit(const char *line) {
    size_t len = strlen(line);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, len) != (ssize_t)len) _exit(3);
    close(fd);
}

/* One per worker, on its own cache line. */
struct worker {
    _Alignas(64) _Atomic int64_t last_rt; /* realtime start of its latest iteration (0: none yet) */
    _Atomic uint64_t iters;
    int k;
    uint8_t *mem;
    size_t size;
};

static atomic_int filled;

static void *work(void *arg) {
    struct worker *w = arg;
    uint64_t *p = (uint64_t *)w->mem;
    size_t words = w->size / 8, nrand = words / 2, nzero = words - nrand;
    uint64_t x = 0x9E3779B97F4A7C15ULL + (uint64_t)w->k;
    for (size_t i = 0; i < nrand; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = x * 0x2545F4914F6CDD1DULL;
    }
    /* Write the zeros for real: every page of the second half is present. */
    volatile uint64_t *z = p + nrand;
    for (size_t i = 0; i < nzero; i += PAGE / 8) z[i] = 0;
    atomic_fetch_add(&filled, 1);

    size_t rand_pages = nrand * 8 / PAGE;
    if (rand_pages == 0) rand_pages = 1;
    struct timespec ms = {0, 1000000};
    char line[128];
    int64_t last = clock_us(CLOCK_MONOTONIC);
    for (uint64_t n = 1;; n++) {
        int64_t t = clock_us(CLOCK_MONOTONIC), rt = clock_us(CLOCK_REALTIME);
        if (t - last > GAP_US) {
            snprintf(line, sizeof line, "gap %lld %d %lld\n", (long long)(t - last), w->k, (long long)rt);
            emit(line);
        }
        last = t;
        /* The work: dirty one word of the next page of the random half. */
        ((volatile uint64_t *)p)[(n % rand_pages) * (PAGE / 8) + n % (PAGE / 8)] = n * 0x2545F4914F6CDD1DULL;
        atomic_store(&w->iters, n);
        atomic_store(&w->last_rt, rt);
        nanosleep(&ms, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s NTHREADS SIZE_MIB OUTFILE\n", argv[0]);
        return 2;
    }
    int nt = atoi(argv[1]);
    size_t size = (size_t)strtoull(argv[2], NULL, 10) << 20;
    out_path = argv[3];
    if (nt < 1 || size == 0 || size / (size_t)nt < 2 * PAGE) {
        fprintf(stderr, "bad thread count or size\n");
        return 2;
    }
    size_t share = size / (size_t)nt / PAGE * PAGE;
    uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct worker *ws = aligned_alloc(64, sizeof *ws * (size_t)nt);
    if (mem == MAP_FAILED || ws == NULL) {
        perror("mmap");
        return 2;
    }
    memset(ws, 0, sizeof *ws * (size_t)nt);
    for (int k = 0; k < nt; k++) {
        ws[k].k = k;
        ws[k].mem = mem + share * (size_t)k;
        ws[k].size = share;
        pthread_t th;
        int e = pthread_create(&th, NULL, work, &ws[k]);
        if (e != 0) {
            fprintf(stderr, "pthread_create %d: %s\n", k, strerror(e));
            return 2;
        }
        pthread_detach(th);
    }

    struct timespec wait = {0, 10000000};
    char line[128];
    int ready = 0;
    for (;;) {
        nanosleep(&wait, NULL);
        int64_t min = INT64_MAX;
        uint64_t total = 0;
        for (int k = 0; k < nt; k++) {
            int64_t t = atomic_load(&ws[k].last_rt);
            if (t < min) min = t;
            total += atomic_load(&ws[k].iters);
        }
        if (!ready) {
            if (atomic_load(&filled) < nt || min == 0) continue;
            ready = 1;
            snprintf(line, sizeof line, "ready %d %lld\n", nt, (long long)clock_us(CLOCK_REALTIME));
            emit(line);
        }
        snprintf(line, sizeof line, "tick %llu %lld\n", (unsigned long long)total, (long long)min);
        emit(line);
    }
}
