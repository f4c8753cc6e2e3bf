/* A thread on a stack the program allocated (pthread_attr_setstack), with
 * its own alternate signal stack, thread-local state and CPU affinity; a
 * thread cancelled half-way. Usage: threadmix STEPS DELAY_MS */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static __thread long tls_count;
static __thread char *alt_lo, *alt_hi;
static volatile long own_stack_count, cancel_loops, alt_hits, alt_ok = 1, aff_ok = 1;
static volatile int stop;
static char *own_stack;
static size_t own_size = 1 << 20;

static void on_usr1(int sig) {
    char here;
    (void)sig;
    alt_hits++;
    if (!(&here >= alt_lo && &here < alt_hi)) alt_ok = 0;
}

static void *own(void *arg) {
    (void)arg;
    size_t alt_size = 64 * 1024;
    alt_lo = malloc(alt_size);
    alt_hi = alt_lo + alt_size;
    stack_t ss = {.ss_sp = alt_lo, .ss_size = alt_size};
    sigaltstack(&ss, NULL);
    char *here = (char *)&here;
    int on_own = here >= own_stack && here < own_stack + own_size;
    /* Pinned to the last CPU it may use: a restart must keep that. */
    cpu_set_t want, now;
    CPU_ZERO(&want);
    sched_getaffinity(0, sizeof want, &want);
    int last = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &want)) last = i;
    CPU_ZERO(&want);
    CPU_SET(last, &want);
    pthread_setaffinity_np(pthread_self(), sizeof want, &want);
    while (!stop) {
        CPU_ZERO(&now);
        sched_getaffinity(0, sizeof now, &now);
        if (!CPU_EQUAL(&now, &want)) aff_ok = 0;
        tls_count++;
        own_stack_count = on_own ? tls_count : -1;
        usleep(1000);
    }
    return NULL;
}

static void *cancelled(void *arg) {
    (void)arg;
    for (;;) {
        cancel_loops++;
        usleep(2000); /* a cancellation point */
    }
    return NULL;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    own_stack = aligned_alloc(4096, own_size);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstack(&at, own_stack, own_size);
    pthread_t a, c;
    pthread_create(&a, &at, own, NULL);
    pthread_create(&c, NULL, cancelled, NULL);
    int cancelled_ok = 0;
    while (own_stack_count == 0 || cancel_loops == 0) usleep(1000); /* both threads started */
    for (int s = 0; s < steps; s++) {
        usleep(delay * 1000);
        pthread_kill(a, SIGUSR1);
        if (s == steps / 2) {
            void *ret;
            cancelled_ok = pthread_cancel(c) == 0 && pthread_join(c, &ret) == 0 && ret == PTHREAD_CANCELED;
        }
        printf("step %d own-stack %d altstack %d affinity %d cancelled %d\n", s, own_stack_count > 0,
               (int)alt_ok, (int)aff_ok, s >= steps / 2 ? cancelled_ok : -1);
    }
    stop = 1;
    pthread_join(a, NULL);
    printf("done alt-hits>0 %d\n", alt_hits > 0);
    return 0;
}
