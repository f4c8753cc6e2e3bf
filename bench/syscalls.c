/* Process and file descriptor costs, for bench/run.sh.
 *
 * Usage: syscalls OP N [PATH]
 *        syscalls noop
 *
 * Runs OP N times, after N/10 (at least 1) untimed warm-up rounds, and prints
 * the mean time of one round in nanoseconds (CLOCK_MONOTONIC, whole loop
 * divided by N) on one line of standard output. OP is one of:
 *
 *   forkexec   fork(); the child execve()s PATH with the argument "noop"
 *              (and the inherited environment, so under hiber it loads the
 *              agent again, as any exec'd program would) and exits 0; the
 *              parent waitpid()s for it. PATH defaults to this program, which
 *              returns at once when its argument is "noop".
 *   openclose  open(PATH, O_RDONLY | O_CLOEXEC), then close(); PATH defaults
 *              to this program's file (a regular file).
 *   pipe       pipe(), then close() both ends.
 *
 * fork and execve are called directly (not posix_spawn or vfork), so the
 * agent's wrappers of both run under hiber. Any failure ends the program
 * with status 1 and a message, before it prints anything.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static const char *path;

static void forkexec(void) {
    char *argv[] = {"syscalls", "noop", NULL};
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        execve(path, argv, environ);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "syscalls: the exec'd child ended with status 0x%x\n", st);
        exit(1);
    }
}

static void openclose(void) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open");
    if (close(fd) != 0) die("close");
}

static void pipeclose(void) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe");
    if (close(fds[0]) != 0 || close(fds[1]) != 0) die("close");
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "noop") == 0) return 0;
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s forkexec|openclose|pipe N [PATH]\n", argv[0]);
        return 2;
    }
    void (*op)(void);
    if (strcmp(argv[1], "forkexec") == 0) op = forkexec;
    else if (strcmp(argv[1], "openclose") == 0) op = openclose;
    else if (strcmp(argv[1], "pipe") == 0) op = pipeclose;
    else {
        fprintf(stderr, "syscalls: unknown OP %s\n", argv[1]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    if (n < 1) {
        fprintf(stderr, "syscalls: bad N %s\n", argv[2]);
        return 2;
    }
    static char self[PATH_MAX];
    if (argc == 4) {
        path = argv[3];
    } else {
        ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
        if (len < 0) die("readlink /proc/self/exe");
        self[len] = '\0';
        path = self;
    }

    long warm = n / 10 > 0 ? n / 10 : 1;
    for (long i = 0; i < warm; i++) op();
    int64_t t0 = now_ns();
    for (long i = 0; i < n; i++) op();
    int64_t t1 = now_ns();
    printf("%.1f\n", (double)(t1 - t0) / (double)n);
    return 0;
}
