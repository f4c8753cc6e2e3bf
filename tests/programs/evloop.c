/* An event loop over the descriptors that have no path: one epoll instance
 * waits on an eventfd (semaphore mode, fed by the program itself, one-shot
 * registration re-armed every round), a periodic timerfd, a signalfd for
 * SIGUSR1 (blocked; the program kills itself every fourth round) and an
 * inotify fd (edge-triggered) watching a directory where the program
 * creates a file every round. All of them are non-blocking. Two more
 * timerfds are read only at the end: a one-shot one that expired early
 * (its unread expiration must survive the restarts) and one an hour away
 * (it must still be pending).
 *
 * Each round prints what became ready and the values read, to stdout and to
 * a log file kept open across the run. Nothing printed depends on timing:
 * the timer counts as "at least one expiration", and every wait has a
 * generous deadline whose expiry is printed (and fails the comparison).
 *
 * Usage: evloop ROUNDS DIR LOG */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* epoll data: 64-bit values, so a restart that loses the upper half shows. */
#define TAG_EVENT 0xe0e0000000000001ULL
#define TAG_TIMER 0xe0e0000000000002ULL
#define TAG_SIGNAL 0xe0e0000000000003ULL
#define TAG_INOTIFY 0xe0e0000000000004ULL

static int logfd;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n >= (int)sizeof buf) n = sizeof buf - 1;
    if (write(1, buf, n) != n || write(logfd, buf, n) != n) exit(3);
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: evloop ROUNDS DIR LOG\n");
        return 2;
    }
    int rounds = atoi(argv[1]);
    const char *dir = argv[2];
    logfd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) die("log");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("mkdir");

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, NULL) != 0) die("sigprocmask");

    int efd = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int sfd = signalfd(-1, &usr1, SFD_NONBLOCK);
    int ifd = inotify_init1(IN_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (efd < 0 || tfd < 0 || sfd < 0 || ifd < 0 || ep < 0) die("create");
    int wd = inotify_add_watch(ifd, dir, IN_CREATE);
    if (wd < 0) die("inotify_add_watch");

    struct itimerspec period = {{0, 40 * 1000 * 1000}, {0, 40 * 1000 * 1000}};
    if (timerfd_settime(tfd, 0, &period, NULL) != 0) die("timerfd_settime");

    int t_short = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int t_long = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
    if (t_short < 0 || t_long < 0) die("timerfd_create");
    struct itimerspec once = {{0, 0}, {0, 50 * 1000 * 1000}};
    struct itimerspec hour = {{0, 0}, {3600, 0}};
    if (timerfd_settime(t_short, 0, &once, NULL) != 0 || timerfd_settime(t_long, 0, &hour, NULL) != 0)
        die("timerfd_settime");

    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = TAG_EVENT;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0) die("epoll eventfd");
    ev.events = EPOLLIN;
    ev.data.u64 = TAG_TIMER;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0) die("epoll timerfd");
    ev.data.u64 = TAG_SIGNAL;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) != 0) die("epoll signalfd");
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = TAG_INOTIFY;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ifd, &ev) != 0) die("epoll inotify");

    say("start wd=%d\n", wd);
    for (int r = 0; r < rounds; r++) {
        char name[32], path[4096];
        snprintf(name, sizeof name, "f%d", r);
        snprintf(path, sizeof path, "%s/%s", dir, name);

        /* Feed the counter, create the round's file (removed first: a run
         * killed after a checkpoint may have created it already, and
         * opening an existing file raises no IN_CREATE), and every fourth
         * round send ourselves SIGUSR1. */
        uint64_t add = (uint64_t)(r % 3 + 1);
        if (write(efd, &add, 8) != 8) die("eventfd write");
        unlink(path);
        int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (f < 0) die("create file");
        close(f);
        int want_signal = r % 4 == 3;
        if (want_signal) kill(getpid(), SIGUSR1);

        int need_timer = 1, need_event = 1, need_inotify = 1, need_signal = want_signal;
        /* What each descriptor gave, printed in a fixed order: epoll's
         * order depends on which became ready first. */
        char t_s[64] = "", e_s[128] = "", s_s[64] = "", i_s[128] = "", x_s[128] = "";
        while (need_timer || need_event || need_inotify || need_signal) {
            struct epoll_event evs[8];
            int n = epoll_wait(ep, evs, 8, 5000);
            if (n < 0) die("epoll_wait");
            if (n == 0) {
                say("round %d: timeout (timer %d eventfd %d inotify %d signal %d)\n", r,
                    need_timer, need_event, need_inotify, need_signal);
                return 1;
            }
            for (int i = 0; i < n; i++) {
                uint64_t tag = evs[i].data.u64;
                if (tag == TAG_TIMER) {
                    uint64_t ticks;
                    if (read(tfd, &ticks, 8) == 8 && ticks >= 1 && need_timer) {
                        need_timer = 0;
                        snprintf(t_s, sizeof t_s, " timer");
                    }
                } else if (tag == TAG_EVENT) {
                    if (!need_event) {
                        snprintf(x_s, sizeof x_s, " eventfd-again");
                        continue;
                    }
                    uint64_t v = 0;
                    if (read(efd, &v, 8) != 8) die("eventfd read");
                    int el = snprintf(e_s, sizeof e_s, " eventfd=%llu", (unsigned long long)v);
                    if (r % 5 == 4) {
                        /* Semaphore mode: one per read, until EAGAIN. */
                        int left = 0;
                        while (read(efd, &v, 8) == 8) left++;
                        if (errno != EAGAIN) die("eventfd drain");
                        snprintf(e_s + el, sizeof e_s - el, " drained=%d", left);
                    }
                    need_event = 0;
                } else if (tag == TAG_SIGNAL) {
                    struct signalfd_siginfo si;
                    while (read(sfd, &si, sizeof si) == sizeof si) {
                        snprintf(s_s, sizeof s_s, " signal=%s",
                                 si.ssi_signo == SIGUSR1 ? "USR1" : "other");
                        need_signal = 0;
                    }
                } else if (tag == TAG_INOTIFY) {
                    /* Edge-triggered: read everything. */
                    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                    ssize_t got;
                    while ((got = read(ifd, buf, sizeof buf)) > 0) {
                        for (char *p = buf; p < buf + got;) {
                            struct inotify_event *ie = (struct inotify_event *)p;
                            if (ie->len && strcmp(ie->name, name) == 0 && need_inotify) {
                                need_inotify = 0;
                                snprintf(i_s, sizeof i_s, " inotify(wd=%d %s)", ie->wd,
                                         ie->name);
                            }
                            p += sizeof *ie + ie->len;
                        }
                    }
                } else {
                    snprintf(x_s, sizeof x_s, " bad-data=%llx", (unsigned long long)tag);
                }
            }
        }
        say("round %d:%s%s%s%s%s\n", r, t_s, e_s, s_s, i_s, x_s);
        /* Re-arm the one-shot registration for the next round. */
        ev.events = EPOLLIN | EPOLLONESHOT;
        ev.data.u64 = TAG_EVENT;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, efd, &ev) != 0) die("epoll rearm");
    }
    uint64_t left = 0, v;
    while (read(efd, &v, 8) == 8) left++;
    uint64_t short_ticks = 0;
    if (read(t_short, &short_ticks, 8) != 8) short_ticks = 0;
    uint64_t long_ticks = 0;
    int long_pending = read(t_long, &long_ticks, 8) < 0 && errno == EAGAIN;
    struct itimerspec cur;
    if (timerfd_gettime(t_long, &cur) != 0) die("timerfd_gettime");
    int long_armed = cur.it_value.tv_sec > 3000 && cur.it_value.tv_sec <= 3600;
    say("end eventfd=%llu oneshot=%llu hour-pending=%d hour-armed=%d\n", (unsigned long long)left,
        (unsigned long long)short_ticks, long_pending, long_armed);
    return 0;
}
