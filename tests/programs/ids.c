/* Everything keyed on process and thread ids, checked at every step
 * against what the program saw at its start: getpid, gettid in every
 * thread, pthread_kill, /proc/self/task/<tid>, per-thread CPU clocks, an
 * error-checking mutex and a recursive mutex held across checkpoints; the
 * task directory lists the program's threads and no others.
 * Prints only whether each check holds, so an uninterrupted run and a
 * restarted one print the same. Usage: ids STEPS DELAY_MS */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define N 3
static pid_t pid0, tids[N];
static pthread_t th[N];
static volatile int tid_ok[N], stop, rm_ok = 1;
static pthread_mutex_t em, rm;
static pthread_barrier_t ready;

static void *worker(void *arg) {
    long i = (long)arg;
    tids[i] = (pid_t)syscall(SYS_gettid);
    tid_ok[i] = 1;
    if (i == 0) pthread_mutex_lock(&rm); /* held for the whole run */
    pthread_barrier_wait(&ready);
    while (!stop) {
        tid_ok[i] = syscall(SYS_gettid) == tids[i];
        if (i == 0) {
            /* re-lock by the owner: count 2, then back to 1 */
            rm_ok = pthread_mutex_lock(&rm) == 0 && pthread_mutex_unlock(&rm) == 0;
        }
        usleep(2000);
    }
    if (i == 0) pthread_mutex_unlock(&rm);
    return NULL;
}

/* /proc/self/exe still names this program (not hiber's restorer). */
static int exe_ok(void) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return 0;
    buf[n] = 0;
    return n >= 4 && strcmp(buf + n - 4, "/ids") == 0;
}

/* Threads listed in /proc/self/task. */
static int task_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&em, &a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rm, &a);
    pthread_barrier_init(&ready, NULL, N + 1);
    pid0 = getpid();
    pthread_mutex_lock(&em); /* the main thread owns it throughout */
    for (long i = 0; i < N; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    pthread_barrier_wait(&ready);
    for (int s = 0; s < steps; s++) {
        usleep(delay * 1000);
        int pid_ok = getpid() == pid0 && syscall(SYS_gettid) == pid0;
        int tids_ok = 1, kill_ok = 1, proc_ok = 1, clock_ok = 1;
        for (int i = 0; i < N; i++) {
            tids_ok &= tid_ok[i];
            kill_ok &= pthread_kill(th[i], 0) == 0;
            char path[64];
            struct stat st;
            snprintf(path, sizeof path, "/proc/self/task/%d", (int)tids[i]);
            proc_ok &= stat(path, &st) == 0;
            snprintf(path, sizeof path, "/proc/%d/task/%d", (int)pid0, (int)tids[i]);
            proc_ok &= stat(path, &st) == 0;
            clockid_t c;
            struct timespec ts;
            clock_ok &= pthread_getcpuclockid(th[i], &c) == 0 && clock_gettime(c, &ts) == 0;
        }
        /* error-checking mutex: unlock by its owner succeeds only if the
         * owner field still names this thread */
        int em_ok = pthread_mutex_unlock(&em) == 0 && pthread_mutex_lock(&em) == 0;
        printf("step %d pid %d tids %d kill %d proc %d clock %d errorcheck %d recursive %d tasks %d exe %d\n", s,
               pid_ok, tids_ok, kill_ok, proc_ok, clock_ok, em_ok, (int)rm_ok, task_count(), exe_ok());
    }
    stop = 1;
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    pthread_mutex_unlock(&em);
    printf("done\n");
    return 0;
}
