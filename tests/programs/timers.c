/* Signals and timers across checkpoints: blocked pending signals (one for
 * the process, one for a thread), alarm or a periodic ITIMER_REAL,
 * ITIMER_VIRTUAL and ITIMER_PROF, and POSIX timers (SIGEV_SIGNAL on
 * CLOCK_MONOTONIC, SIGEV_THREAD_ID aimed at a worker thread, a CPU-time and
 * a CLOCK_REALTIME one, disarmed ones, with a gap in the ids).
 *
 * It prints only what an uninterrupted run prints too: at the check step it
 * waits (with a deadline) for each thing to happen and prints whether it
 * did, never a count that depends on timing.
 *
 * Usage: timers STEPS DELAY_MS MODE   (MODE: alarm | itimer) */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int alrm_count, usr1_count, usr2_count, usr2_in_worker;
static atomic_int mono_count, mono_bad, tid_count, tid_wrong, tid_bad;
static atomic_int vt_count, prof_count, chld_count, other_count;
static atomic_int worker_tid, release_usr2, worker_stop;
static pthread_t worker;
static timer_t t_mono, t_tid, t_cpu, t_real, t_off[2];

#define SIG_MONO (SIGRTMIN + 1)
#define SIG_TID (SIGRTMIN + 2)
#define SIG_OTHER (SIGRTMIN + 3)

static void on_signal(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (sig == SIGALRM) {
        alrm_count++;
    } else if (sig == SIGUSR1) {
        usr1_count++;
    } else if (sig == SIGUSR2) {
        usr2_count++;
        if (pthread_equal(pthread_self(), worker)) usr2_in_worker++;
    } else if (sig == SIG_MONO) {
        mono_count++;
        /* A timer signal pending at a checkpoint comes back as a plain
         * one: only the timer's own deliveries carry its value and id. */
        if (si->si_code == SI_TIMER &&
            (si->si_value.sival_int != 1111 || si->si_timerid != (int)(intptr_t)t_mono))
            mono_bad++;
    } else if (sig == SIG_TID) {
        tid_count++;
        if (!pthread_equal(pthread_self(), worker)) tid_wrong++;
        if (si->si_code == SI_TIMER &&
            (si->si_value.sival_int != 2222 || si->si_timerid != (int)(intptr_t)t_tid))
            tid_bad++;
    } else if (sig == SIGVTALRM) {
        vt_count++;
    } else if (sig == SIGPROF) {
        prof_count++;
    } else if (sig == SIGCHLD) {
        chld_count++;
    } else {
        other_count++;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleeps `ms` in full, whatever signals interrupt it. */
static void sleep_ms(int ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) != 0) {
    }
}

/* Waits until *c >= want, at most `secs`; returns whether it got there. */
static int wait_for(atomic_int *c, int want, double secs) {
    double end = now() + secs;
    while (*c < want) {
        if (now() > end) return 0;
        sleep_ms(5);
    }
    return 1;
}

static void *work(void *arg) {
    (void)arg;
    worker_tid = gettid();
    /* SIGUSR1 and SIGUSR2 stay blocked (inherited) until told. */
    while (!worker_stop) {
        if (release_usr2 == 1) {
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGUSR2);
            pthread_sigmask(SIG_UNBLOCK, &s, NULL);
            release_usr2 = 2;
        }
        sleep_ms(5);
    }
    return NULL;
}

static timer_t make_timer(clockid_t clock, int notify, int sig, int value, int tid) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = notify;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = value;
    if (notify == SIGEV_THREAD_ID) ev._sigev_un._tid = tid;
    timer_t t;
    if (timer_create(clock, &ev, &t) != 0) {
        perror("timer_create");
        exit(1);
    }
    return t;
}

static void arm(timer_t t, long value_ms, long interval_ms) {
    struct itimerspec it = {
        .it_interval = {interval_ms / 1000, (interval_ms % 1000) * 1000000L},
        .it_value = {value_ms / 1000, (value_ms % 1000) * 1000000L},
    };
    if (timer_settime(t, 0, &it, NULL) != 0) {
        perror("timer_settime");
        exit(1);
    }
}

static long long ns(struct timespec ts) { return ts.tv_sec * 1000000000LL + ts.tv_nsec; }

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 50;
    int delay = argc > 2 ? atoi(argv[2]) : 100;
    int periodic = argc > 3 && strcmp(argv[3], "itimer") == 0;
    int check = steps - 10 > 0 ? steps - 10 : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    int sigs[] = {SIGALRM, SIGUSR1, SIGUSR2, SIG_MONO, SIG_TID, SIG_OTHER,
                  SIGRTMIN + 4, SIGVTALRM, SIGPROF, SIGCHLD};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

    /* Blocked everywhere (the worker inherits the mask). */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    pthread_create(&worker, NULL, work, NULL);
    while (!worker_tid) sleep_ms(1);
    kill(getpid(), SIGUSR1);       /* pending for the process */
    pthread_kill(worker, SIGUSR2); /* pending for the worker only */

    if (periodic) {
        struct itimerval it = {{0, 50000}, {0, 50000}};
        setitimer(ITIMER_REAL, &it, NULL);
    } else {
        alarm(3);
    }
    struct itimerval vt = {{10, 0}, {0, 150000}};
    setitimer(ITIMER_VIRTUAL, &vt, NULL);
    struct itimerval prof = {{20, 0}, {0, 200000}};
    setitimer(ITIMER_PROF, &prof, NULL);

    /* Ids 0..2 taken, 1 freed again: the ids have a gap. */
    timer_t gap;
    t_off[0] = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
    gap = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
    t_off[1] = make_timer(CLOCK_BOOTTIME, SIGEV_SIGNAL, SIG_OTHER, 0, 0);
    t_mono = make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIG_MONO, 1111, 0);
    timer_delete(gap);
    t_tid = make_timer(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIG_TID, 2222, worker_tid);
    t_cpu = make_timer(CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIG_OTHER, 0, 0);
    t_real = make_timer(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 4, 0, 0);
    arm(t_mono, 40, 40);
    arm(t_tid, 30, 30);
    arm(t_cpu, 100000, 7000);
    arm(t_real, 1000000, 0);
    printf("start %s\n", periodic ? "itimer" : "alarm");

    for (int i = 0; i < steps; i++) {
        if (i == check) {
            /* Still the same timers, under the same ids. */
            struct itimerspec a, b, c, d, e;
            int ok = timer_gettime(t_off[0], &a) == 0 && ns(a.it_value) == 0 &&
                     timer_gettime(t_off[1], &b) == 0 && ns(b.it_value) == 0;
            printf("step %d disarmed-timers-kept %d\n", i, ok);
            ok = timer_gettime(t_cpu, &c) == 0 && ns(c.it_interval) == 7000000000LL &&
                 ns(c.it_value) > 0 && ns(c.it_value) <= 100000000000LL;
            printf("step %d cpu-timer-kept %d\n", i, ok);
            ok = timer_gettime(t_real, &d) == 0 && ns(d.it_interval) == 0 &&
                 ns(d.it_value) > 900000000000LL && ns(d.it_value) <= 1000000000000LL;
            printf("step %d realtime-timer-left-ok %d\n", i, ok);
            ok = timer_gettime(t_mono, &e) == 0 && ns(e.it_interval) == 40000000LL;
            int c0 = mono_count;
            int ticking = wait_for(&mono_count, c0 + 3, 10);
            printf("step %d mono-timer-kept %d ticking %d overruns-ok %d bad %d\n", i, ok, ticking,
                   timer_getoverrun(t_mono) >= 0, mono_bad > 0);
            c0 = tid_count;
            ticking = wait_for(&tid_count, c0 + 3, 10);
            printf("step %d thread-timer ticking %d wrong-thread %d bad %d\n", i, ticking,
                   tid_wrong > 0, tid_bad > 0);
            if (periodic) {
                struct itimerval r;
                getitimer(ITIMER_REAL, &r);
                c0 = alrm_count;
                ticking = wait_for(&alrm_count, c0 + 3, 10);
                printf("step %d itimer-real ticking %d interval-ok %d\n", i, ticking,
                       r.it_interval.tv_sec == 0 && r.it_interval.tv_usec == 50000);
            } else {
                int fired = wait_for(&alrm_count, 1, 10);
                struct itimerval r;
                getitimer(ITIMER_REAL, &r);
                printf("step %d alarm-fired %d disarmed %d\n", i, fired,
                       r.it_value.tv_sec == 0 && r.it_value.tv_usec == 0);
            }
            /* The pending signals, delivered once unblocked. */
            pthread_sigmask(SIG_UNBLOCK, &block, NULL);
            release_usr2 = 1;
            int got2 = wait_for(&usr2_count, 1, 10);
            printf("step %d usr1 %d usr2 %d usr2-in-worker %d\n", i, usr1_count, got2,
                   usr2_in_worker);
            /* CPU-time itimers: burn CPU until both fire. */
            struct itimerval v, p;
            getitimer(ITIMER_VIRTUAL, &v);
            getitimer(ITIMER_PROF, &p);
            double end = now() + 30;
            volatile unsigned long spin = 0;
            while ((vt_count < 1 || prof_count < 1) && now() < end) spin++;
            printf("step %d itimer-virtual fired %d interval-ok %d prof fired %d interval-ok %d\n", i,
                   vt_count > 0, v.it_interval.tv_sec == 10 && v.it_interval.tv_usec == 0,
                   prof_count > 0, p.it_interval.tv_sec == 20 && p.it_interval.tv_usec == 0);
        }
        printf("step %d\n", i);
        sleep_ms(delay);
    }
    if (periodic) {
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, NULL);
    }
    worker_stop = 1;
    pthread_join(worker, NULL);
    printf("alarm-once %d sigchld %d other %d\n", periodic || alrm_count == 1, chld_count,
           other_count);
    return 0;
}
