/* A process tree: P forks A, which starts its own process group and forks
 * B, which starts its own session. Each writes its own file (p.out, a.out,
 * b.out) and checks at every step that its parent, group and session are
 * what they were (and A that /proc/self/exe is still this program); A and
 * P wait for their child, P while that child still
 * runs (blocked in waitpid across a checkpoint). Usage: tree STEPS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* /proc/self/exe still names this program (not hiber's restorer). */
static int exe_ok(void) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return 0;
    buf[n] = 0;
    return n >= 5 && strcmp(buf + n - 5, "/tree") == 0;
}

static FILE *out(const char *name) {
    int fd = open(name, O_WRONLY | O_CREAT | O_APPEND, 0644);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "a");
    if (!f) exit(90);
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    pid_t p = getpid();
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        pid_t me = getpid();
        pid_t b = fork();
        if (b == 0) {
            setsid();
            pid_t bme = getpid();
            FILE *f = out("b.out");
            long sum = 0;
            for (int s = 0; s < steps; s++) {
                sum += s * 3;
                fprintf(f, "b step %d sum %ld parent %d group %d session %d\n", s, sum, getppid() == me,
                        getpgrp() == bme, getsid(0) == bme);
                usleep(delay * 1000);
            }
            return 3;
        }
        while (getpgid(b) != b) usleep(1000); /* B has started its session */
        FILE *f = out("a.out");
        long sum = 0;
        for (int s = 0; s < steps; s++) {
            sum += s * 5;
            fprintf(f, "a step %d sum %ld parent %d group %d session %d child-group %d exe %d\n", s, sum,
                    getppid() == p, getpgrp() == me, getsid(0) == getsid(p), getpgid(b) == b, exe_ok());
            usleep(delay * 1000);
        }
        int st = 0;
        pid_t w = waitpid(b, &st, 0);
        fprintf(f, "a waited %d status %d\n", w == b, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return 7;
    }
    setpgid(a, a); /* as A does: whoever runs first makes the group */
    FILE *f = out("p.out");
    for (int s = 0; s < steps / 4; s++) {
        fprintf(f, "p step %d child-group %d\n", s, getpgid(a) == a);
        usleep(delay * 1000);
    }
    int st = 0;
    pid_t w = waitpid(a, &st, 0);
    fprintf(f, "p waited %d status %d\n", w == a, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
