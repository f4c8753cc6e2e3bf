/* Exec contagion under checkpoints: a process that keeps exec'ing itself.
 *
 *   execchain STEPS DELAY_MS [STATIC_PROBE]
 *
 * The process forks a child; both then run STEPS steps, each in a new image:
 * a step appends "<role> <step> <sum>" to <role>.out (p.out or k.out, open
 * as descriptor 10 across the execs, so a restart puts it back), sleeps
 * DELAY_MS, and execs this program again with the step and a running sum in
 * its arguments (execv for the parent, execve with an empty environment for
 * the child, so that the agent must carry itself across). A checkpoint can
 * thus find either process anywhere in an exec. The parent waits for the
 * child at the end and appends its exit status to p.out.
 *
 * With STATIC_PROBE (a statically linked program that cannot load the
 * agent), the parent first runs it in a second child and waits for it: the
 * probe appends to probe.out whether it inherited an open descriptor 900
 * (the agent's coordinator connection must not leak into it).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The role's output file, inherited across exec as descriptor 10. */
#define OUT_FD 10

static void emit(const char *line) {
    if (write(OUT_FD, line, strlen(line)) != (ssize_t)strlen(line)) {
        perror("write");
        exit(1);
    }
}

static void open_output(const char *role) {
    char file[16];
    snprintf(file, sizeof file, "%s.out", role);
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || dup2(fd, OUT_FD) != OUT_FD) {
        perror(file);
        exit(1);
    }
    close(fd);
}

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* argv: execchain step ROLE STEP SUM STEPS DELAY */
static int step(char **argv) {
    const char *role = argv[2];
    long n = atol(argv[3]), sum = atol(argv[4]), steps = atol(argv[5]), delay = atol(argv[6]);
    char line[128];
    sum = (sum * 31 + n) % 1000003;
    snprintf(line, sizeof line, "%s %ld %ld\n", role, n, sum);
    emit(line);
    nap(delay);
    if (n + 1 >= steps) {
        if (role[0] == 'p') {
            int st;
            if (wait(&st) < 0) {
                perror("wait");
                return 1;
            }
            snprintf(line, sizeof line, "kid exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            emit(line);
        }
        return 0;
    }
    char a3[24], a4[24];
    snprintf(a3, sizeof a3, "%ld", n + 1);
    snprintf(a4, sizeof a4, "%ld", sum);
    char *next[] = {argv[0], "step", (char *)role, a3, a4, argv[5], argv[6], NULL};
    if (role[0] == 'p') {
        execv("/proc/self/exe", next);
    } else {
        char *empty[] = {NULL};
        execve("/proc/self/exe", next, empty);
    }
    perror("exec");
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 7 && strcmp(argv[1], "step") == 0) return step(argv);
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s STEPS DELAY_MS [STATIC_PROBE]\n", argv[0]);
        return 2;
    }
    if (argc == 4) {
        pid_t probe = fork();
        if (probe == 0) {
            char *pargv[] = {argv[3], NULL};
            execv(argv[3], pargv);
            _exit(127);
        }
        int st;
        if (waitpid(probe, &st, 0) != probe || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "probe failed\n");
            return 1;
        }
    }
    pid_t kid = fork();
    if (kid < 0) {
        perror("fork");
        return 1;
    }
    char *role = kid == 0 ? "k" : "p";
    open_output(role);
    char *first[] = {argv[0], "step", role, "0", "0", argv[1], argv[2], NULL};
    return step(first);
}
