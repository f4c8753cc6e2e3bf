/* Benchmark workload for bench/run.sh.
 *
 * Usage: alloc SIZE_MIB OUTFILE
 *
 * Maps SIZE_MIB MiB of private anonymous memory; fills the first half with
 * pseudo-random bytes (xorshift64*, incompressible) and writes zeros over
 * the second half (so those pages are present, but all zero). Then it runs
 * forever, waking every millisecond, and appends lines to OUTFILE (each
 * line opened O_APPEND, written with one write() and closed, so no
 * descriptor is checkpointed: a restart does not truncate the file back to
 * its size at the checkpoint). Times are CLOCK_REALTIME microseconds:
 *
 *   ready <t_us>                 once the memory is filled
 *   tick <n> <t_us>              every 10 ms
 *   gap <gap_us> <t_us>          when a wake-up came more than 2 ms after
 *                                the previous one: the process was paused
 *                                (checkpoint) or restarted; t_us is when it
 *                                ran again
 *   verify ok|BAD <t_us>         after SIGUSR1: memory contents checked
 *
 * The bench measures the pause of a checkpoint and the time until a
 * restarted program runs again from the "gap" lines.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define GAP_US 2000

static volatile sig_atomic_t want_verify;
static void on_usr1(int sig) { (void)sig; want_verify = 1; }

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fill_random(uint64_t *p, size_t n) {
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = x * 0x2545F4914F6CDD1DULL;
    }
}

static int check(const uint64_t *p, size_t nrand, size_t nzero) {
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < nrand; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        if (p[i] != x * 0x2545F4914F6CDD1DULL) return 0;
    }
    for (size_t i = 0; i < nzero; i++)
        if (p[nrand + i] != 0) return 0;
    return 1;
}

static const char *out_path;
static void emit(const char *line) {
    size_t len = strlen(line);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, len) != (ssize_t)len) _exit(3);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SIZE_MIB OUTFILE\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)strtoull(argv[1], NULL, 10) << 20;
    out_path = argv[2];
    if (size == 0) {
        fprintf(stderr, "bad size\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);

    uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    size_t words = size / 8, nrand = words / 2, nzero = words - nrand;
    fill_random(mem, nrand);
    /* Write the zeros for real: every page of the second half is present. */
    volatile uint64_t *z = mem + nrand;
    for (size_t i = 0; i < nzero; i += 512) z[i] = 0;
    memset(mem + nrand, 0, nzero * 8);
    __asm__ volatile("" : : "r"(mem) : "memory");

    char line[128];
    int64_t last = now_us(), last_tick = last;
    snprintf(line, sizeof line, "ready %lld\n", (long long)last);
    emit(line);
    struct timespec ms = {0, 1000000};
    for (uint64_t n = 0;; n++) {
        nanosleep(&ms, NULL);
        int64_t t = now_us();
        if (t - last > GAP_US) {
            snprintf(line, sizeof line, "gap %lld %lld\n", (long long)(t - last), (long long)t);
            emit(line);
        }
        if (t - last_tick >= 10000) {
            snprintf(line, sizeof line, "tick %llu %lld\n", (unsigned long long)n, (long long)t);
            emit(line);
            last_tick = t;
        }
        if (want_verify) {
            want_verify = 0;
            int ok = check(mem, nrand, nzero);
            t = now_us();
            snprintf(line, sizeof line, "verify %s %lld\n", ok ? "ok" : "BAD", (long long)t);
            emit(line);
        }
        last = now_us();
    }
}
