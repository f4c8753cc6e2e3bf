/* Contagion through the variadic libc calls the agent wraps in shim.c:
 * P makes four children, each of which must end up in the computation:
 *   C  clone(fn, stack, SIGCHLD, arg) on a malloc'd stack (a fork that
 *      runs fn), writes c.out;
 *   E  vfork + execle of this program with an environment of its own,
 *      {"MODE=execle", NULL}: no LD_PRELOAD, no HIBER_*; writes e.out;
 *   L  fork, a fresh environ {PATH=<this program's directory>,
 *      MODE=execlp}, execlp("contagion", ...) found through PATH; l.out;
 *   X  fork, unsetenv("LD_PRELOAD"), execl of this program; x.out.
 * P first checks that these calls keep glibc's behaviour where the agent
 * only passes them on (failing execs, a clone sharing memory, optional
 * clone arguments, CLONE_VFORK), then writes p.out, then waits for each
 * child and records its exit status. Every process checks its parent at
 * every step.
 * Usage: contagion STEPS DELAY_MS  |  contagion kid NAME STEPS DELAY_MS PPID */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (1 << 20)

/* Lines go out with write(2), no stdio buffers: the clone child (and a
 * vfork child) share nothing of stdio's with anyone. */
static int out(const char *name) {
    int fd = open(name, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(90);
    return fd;
}

static void line(int fd, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(fd, buf, (size_t)n) != n) _exit(91);
}

/* An exec'd child: NAME's lines, with what its environment looks like. */
static int kid(const char *name, int steps, int delay, pid_t parent) {
    char file[32];
    snprintf(file, sizeof file, "%s.out", name);
    int fd = out(file);
    const char *mode = getenv("MODE");
    long sum = 0;
    for (int s = 0; s < steps; s++) {
        sum += s * 7;
        line(fd, "%s step %d sum %ld parent %d mode %s path-unset %d\n", name, s, sum,
             getppid() == parent, mode ? mode : "-", getenv("PATH") == NULL);
        usleep(delay * 1000);
    }
    return name[0] == 'e' ? 5 : name[0] == 'l' ? 6 : 7;
}

struct clone_arg {
    int steps, delay, magic;
    pid_t parent;
};

/* The clone child: runs on its own stack in its own copy of memory. */
static int clone_child(void *p) {
    struct clone_arg *a = p;
    int fd = out("c.out");
    long sum = 0;
    for (int s = 0; s < a->steps; s++) {
        sum += s * 3;
        line(fd, "c step %d sum %ld parent %d arg %d\n", s, sum, getppid() == a->parent, a->magic);
        usleep(a->delay * 1000);
    }
    return 3;
}

static int set_flag(void *p) {
    *(volatile int *)p = 1;
    return 0;
}

static int exit_with(void *p) {
    return *(int *)p;
}

/* One line per check; each must print 1 (as it does without hiber). */
static void checks(int fd) {
    char *stack = malloc(STACK_SIZE);
    char *top = stack + STACK_SIZE;
    int r, st;

    errno = 0;
    r = execl("/nonexistent/prog", "prog", "a", (char *)NULL);
    line(fd, "p check execl-fails %d\n", r == -1 && errno == ENOENT);
    errno = 0;
    r = execlp("no-such-program-for-contagion", "x", (char *)NULL);
    line(fd, "p check execlp-fails %d\n", r == -1 && errno == ENOENT);
    errno = 0;
    r = execle("/nonexistent/prog", "prog", (char *)NULL, (char *[]){"A=1", NULL});
    line(fd, "p check execle-fails %d\n", r == -1 && errno == ENOENT);

    /* glibc refuses a NULL stack; the fork sequence around it must leave
     * errno alone. */
    int code = 9;
    errno = 0;
    r = clone(exit_with, NULL, SIGCHLD, &code);
    line(fd, "p check clone-null-stack %d\n", r == -1 && errno == EINVAL);

    /* Shares memory, as vfork: passed to glibc untouched. */
    volatile int flag = 0;
    r = clone(set_flag, top, CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)&flag);
    st = 0;
    line(fd, "p check clone-vm %d\n", r > 0 && flag == 1 && waitpid(r, &st, 0) == r &&
                                          WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* A fork-like clone with an optional argument. */
    pid_t ptid = 0;
    r = clone(exit_with, top, CLONE_PARENT_SETTID | SIGCHLD, &code, &ptid);
    st = 0;
    line(fd, "p check clone-parent-settid %d\n", r > 0 && ptid == r && waitpid(r, &st, 0) == r &&
                                                    WIFEXITED(st) && WEXITSTATUS(st) == 9);

    /* CLONE_VFORK without CLONE_VM: own memory, the parent waits for the
     * child's exit. */
    code = 11;
    r = clone(exit_with, top, CLONE_VFORK | SIGCHLD, &code);
    st = 0;
    line(fd, "p check clone-vfork %d\n", r > 0 && waitpid(r, &st, 0) == r && WIFEXITED(st) &&
                                            WEXITSTATUS(st) == 11);
    free(stack);
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "kid") == 0)
        return kid(argv[2], atoi(argv[3]), atoi(argv[4]), (pid_t)atoi(argv[5]));
    if (argc != 3) return 2;
    int steps = atoi(argv[1]), delay = atoi(argv[2]);
    pid_t me = getpid();

    /* This program's path and directory, for the execs. */
    static char self[4096], dir[4096 + 5];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 92;
    self[n] = 0;
    snprintf(dir, sizeof dir, "PATH=%s", self);
    *strrchr(dir, '/') = 0;
    char ppid[16];
    snprintf(ppid, sizeof ppid, "%d", (int)me);

    int fd = out("p.out");
    checks(fd);

    struct clone_arg ca = {steps, delay, 4242, me};
    char *stack = malloc(STACK_SIZE);
    if (!stack) return 93;
    pid_t c = clone(clone_child, stack + STACK_SIZE, SIGCHLD, &ca);
    if (c < 0) return 94;

    pid_t e = vfork();
    if (e == 0) {
        execle(self, "contagion", "kid", "e", argv[1], argv[2], ppid, (char *)NULL,
               (char *[]){"MODE=execle", NULL});
        _exit(99);
    }

    pid_t l = fork();
    if (l == 0) {
        static char *env[] = {dir, "MODE=execlp", NULL};
        environ = env;
        execlp("contagion", "contagion", "kid", "l", argv[1], argv[2], ppid, (char *)NULL);
        _exit(98);
    }

    pid_t x = fork();
    if (x == 0) {
        unsetenv("LD_PRELOAD");
        setenv("MODE", "execl", 1);
        execl(self, "contagion", "kid", "x", argv[1], argv[2], ppid, (char *)NULL);
        _exit(97);
    }

    for (int s = 0; s < steps / 4; s++) {
        line(fd, "p step %d\n", s);
        usleep(delay * 1000);
    }
    pid_t kids[] = {c, e, l, x};
    const char *names[] = {"c", "e", "l", "x"};
    for (int i = 0; i < 4; i++) {
        int st = 0;
        pid_t w = waitpid(kids[i], &st, 0);
        line(fd, "p waited %s %d status %d\n", names[i], w == kids[i],
             WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    free(stack);
    return 0;
}
