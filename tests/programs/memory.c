/* Exercises every kind of memory and the kernel state a single-threaded
 * process relies on, step by step, printing a running hash. An
 * uninterrupted run and a checkpointed/restarted run must print the same
 * lines. Usage: memory STEPS DELAY_MS OUTFILE */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t hash = 1469598103934665603ULL;
static void mix(uint64_t v) { hash = (hash ^ v) * 1099511628211ULL; }

static volatile sig_atomic_t handled, on_alt, usr2;
static char altstack[64 * 1024];
static void on_usr1(int sig) {
    char here;
    handled += sig;
    on_alt = &here >= altstack && &here < altstack + sizeof altstack;
}
static void on_usr2(int sig) { usr2 += sig == SIGUSR2; }

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

static char bss_buf[1 << 16];
static int data_val = 42;

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 50;
    const char *outfile = argc > 3 ? argv[3] : "memory.data";
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    /* a blocked signal stays pending across checkpoints until the end */
    struct sigaction sa2 = {0};
    sa2.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa2, NULL);
    sigset_t blk;
    sigemptyset(&blk);
    sigaddset(&blk, SIGUSR2);
    sigprocmask(SIG_BLOCK, &blk, NULL);
    raise(SIGUSR2);
    /* umask, cwd and a directory fd must come back */
    umask(027);
    mkdir("memory.cwd", 0755);
    chdir("memory.cwd");
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    int nullfd = open("/dev/null", O_WRONLY);

    /* heap, small and large (mmap-backed) */
    unsigned char *small = malloc(4096);
    size_t big_len = 8 << 20;
    unsigned char *big = malloc(big_len);
    memset(big, 0, big_len);
    /* private anonymous, with a zero gap in the middle */
    size_t anon_len = 64 * 4096;
    unsigned char *anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* read-only anonymous page with data */
    unsigned char *ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 4096; i++) ro[i] = (unsigned char)(i * 7);
    mprotect(ro, 4096, PROT_READ);
    /* PROT_NONE reservation with a guard */
    unsigned char *none = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* huge sparse MAP_NORESERVE region, a few pages touched */
    size_t huge_len = (size_t)16 << 30;
    unsigned char *huge = mmap(NULL, huge_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    /* file-backed private mapping, modified in memory */
    char path[256];
    snprintf(path, sizeof path, "%s.map", outfile);
    int mfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (int i = 0; i < 8192; i++) { unsigned char c = (unsigned char)i; write(mfd, &c, 1); }
    unsigned char *fmap = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
    close(mfd);
    /* an open file being written */
    FILE *out = fopen(outfile, "w");
    if (!small || !big || anon == MAP_FAILED || ro == MAP_FAILED || none == MAP_FAILED || huge == MAP_FAILED ||
        fmap == MAP_FAILED || !out) {
        perror("setup");
        return 2;
    }
    /* cold memory: written once, read only at the end */
    size_t cold_len = 2 << 20;
    unsigned char *cold = mmap(NULL, cold_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < cold_len; i++) cold[i] = (unsigned char)(i * 13 + 7);
    char *brk0 = sbrk(0);
    /* a second descriptor on the same open file description: one offset */
    int dupfd = dup(fileno(out));

    int sleep_ok = 1;
    for (int step = 0; step < steps; step++) {
        unsigned char stackbuf[4096];
        memset(stackbuf, step, sizeof stackbuf);
        small[step % 4096] ^= (unsigned char)step;
        big[(size_t)step * 4096 * 37 % big_len] += (unsigned char)step;
        anon[(step % 8) * 4096] += 1;           /* pages 0..7 */
        anon[(56 + step % 8) * 4096] += 3;      /* pages 56..63 */
        huge[((size_t)step % 4) << 32] += 5;     /* 4 pages, 4 GiB apart */
        fmap[step * 100 % 8192] ^= 0x5a;
        bss_buf[step * 1000 % sizeof bss_buf] += 1;
        data_val += step;
        raise(SIGUSR1);

        /* vDSO clock must work and be monotonic */
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        clock_gettime(CLOCK_MONOTONIC, &b);
        int clock_ok = (b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec)) && a.tv_sec > 0;
        /* rseq: sched_getcpu (glibc reads rseq) must agree with the kernel */
        unsigned cpu_sys = 0;
        syscall(SYS_getcpu, &cpu_sys, NULL, NULL);
        int cpu = sched_getcpu();
        int cpu_ok = cpu >= 0 && cpu < 4096;
        (void)cpu_sys;
        /* brk: the heap must keep growing contiguously */
        char *p0 = sbrk(0);
        char *p1 = sbrk(4096);
        int brk_ok = p1 == p0 && sbrk(0) == p0 + 4096 && p0 >= brk0;
        if (brk_ok) p1[0] = (char)step;

        /* rseq still registered for this thread: re-registering is EBUSY */
        int rseq_ok = 1;
        if (__rseq_size > 0) {
            void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
            long r = syscall(SYS_rseq, area, 32, 0, 0x53053053);
            rseq_ok = r == -1 && errno == EBUSY;
        }
        /* struct pthread's tid is this thread's real tid */
        clockid_t cid;
        struct timespec ct;
        int tid_ok = pthread_getcpuclockid(pthread_self(), &cid) == 0 && clock_gettime(cid, &ct) == 0;
        /* umask, cwd, directory fd, /dev/null */
        mode_t um = umask(027);
        char cwd[4096];
        int fs_ok = um == 027 && getcwd(cwd, sizeof cwd) && strstr(cwd, "/memory.cwd") != NULL;
        struct stat st;
        fs_ok = fs_ok && fstat(dfd, &st) == 0 && S_ISDIR(st.st_mode) && write(nullfd, "x", 1) == 1;
        sigset_t pend;
        sigpending(&pend);
        int pend_ok = sigismember(&pend, SIGUSR2);

        mix(step);
        mix((uint64_t)on_alt);
        for (int i = 0; i < 4096; i += 512) mix(small[i]);
        for (size_t i = 0; i < big_len; i += 4096 * 37) mix(big[i]);
        for (int i = 0; i < 64; i++) mix(anon[i * 4096]);
        for (int i = 0; i < 4096; i += 256) mix(ro[i]);
        for (int i = 0; i < 4; i++) mix(huge[(size_t)i << 32]);
        for (int i = 0; i < 8192; i += 100) mix(fmap[i]);
        for (size_t i = 0; i < sizeof bss_buf; i += 1000) mix((unsigned char)bss_buf[i]);
        mix(stackbuf[17]);
        mix((uint64_t)data_val);
        mix((uint64_t)handled);
        /* a checkpoint during the sleep must not show up as EINTR */
        struct timespec d = {delay / 1000, (long)(delay % 1000) * 1000000L};
        if (delay > 0 && nanosleep(&d, NULL) != 0) sleep_ok = 0;
        fprintf(out, "step %d %016llx\n", step, (unsigned long long)hash);
        fflush(out);
        char tag[32];
        int n = snprintf(tag, sizeof tag, "dup %d\n", step);
        write(dupfd, tag, (size_t)n);
        printf("step %d hash %016llx clock %d cpu %d brk %d rseq %d tid %d fs %d pending %d alt %d sleep %d\n", step,
               (unsigned long long)hash, clock_ok, cpu_ok, brk_ok, rseq_ok, tid_ok, fs_ok, pend_ok, (int)on_alt,
               sleep_ok);
        fflush(stdout);
    }
    fclose(out);
    sigprocmask(SIG_UNBLOCK, &blk, NULL);
    printf("usr2 %d\n", (int)usr2);
    /* the output file's content, read back through a fresh open */
    FILE *in = fopen(outfile, "r");
    int c;
    uint64_t fh = 7;
    while ((c = fgetc(in)) != EOF) fh = fh * 31 + (unsigned)c;
    fclose(in);
    printf("done file %016llx\n", (unsigned long long)fh);
    uint64_t ch = 3;
    for (size_t i = 0; i < cold_len; i++) ch = ch * 131 + cold[i];
    printf("done cold %016llx\n", (unsigned long long)ch);
    return 0;
}
