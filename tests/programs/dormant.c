/* Processes whose checkpoint thread starts only when a checkpoint comes
 * (the agent's dormant mode), caught in each kind of place:
 *
 *   dormant ROUNDS
 *
 * The parent forks three children and waits for them in waitpid (in libc,
 * blocked in a system call):
 *   busy    computes in a loop of its own code, calling nothing (then a
 *           short sleep: every child takes at least 20 ms a round, so none
 *           ends before the test's checkpoints);
 *   reader  blocks in read() on a pipe fed by a grandchild that writes a
 *           byte every 20 ms, so it is in read() nearly always;
 *   libc    spends most of its time inside libc (memset and memcpy of a
 *           few MiB, then a short sleep).
 * Each child appends a line to <name>.out every round (ROUNDS rounds); the
 * busy child's rounds are counted in iterations, so its output does not
 * depend on timing. The parent appends each child's exit status to p.out.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void out(const char *file, const char *line) {
    /* Kept open across the run so a restart puts the file back. */
    static int fds[8];
    static const char *names[8];
    int i;
    for (i = 0; i < 8 && names[i] && strcmp(names[i], file) != 0; i++) {
    }
    if (i == 8) exit(3);
    if (!names[i]) {
        names[i] = file;
        fds[i] = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fds[i] < 0) exit(3);
    }
    if (write(fds[i], line, strlen(line)) != (ssize_t)strlen(line)) exit(3);
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int busy(int rounds) {
    char line[64];
    volatile uint64_t h = 1;
    for (int r = 0; r < rounds; r++) {
        for (long i = 0; i < 5000000; i++) h = mix(h + (uint64_t)i);
        usleep(10000);
        snprintf(line, sizeof line, "busy %d %016llx\n", r, (unsigned long long)h);
        out("busy.out", line);
    }
    return 0;
}

static int reader(int rounds) {
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t feeder = fork();
    if (feeder == 0) {
        close(p[0]);
        for (int r = 0; r < rounds; r++) {
            usleep(20000);
            char c = (char)('a' + r % 26);
            if (write(p[1], &c, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    close(p[1]);
    char line[64], c;
    for (int r = 0; r < rounds; r++) {
        if (read(p[0], &c, 1) != 1) return 1;
        snprintf(line, sizeof line, "reader %d %c\n", r, c);
        out("reader.out", line);
    }
    int st;
    if (waitpid(feeder, &st, 0) != feeder || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    return 0;
}

static int inlibc(int rounds) {
    size_t n = 4 << 20;
    unsigned char *a = malloc(n), *b = malloc(n);
    if (!a || !b) return 1;
    char line[64];
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < 4; k++) {
            memset(a, r + k, n);
            memcpy(b, a, n);
        }
        usleep(20000);
        snprintf(line, sizeof line, "libc %d %u\n", r, b[n / 2]);
        out("libc.out", line);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s ROUNDS\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]);
    int (*fns[3])(int) = {busy, reader, inlibc};
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        if (kids[i] < 0) return 1;
        if (kids[i] == 0) _exit(fns[i](rounds));
    }
    char line[64];
    for (int i = 0; i < 3; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i]) return 1;
        snprintf(line, sizeof line, "kid %d status %d\n", i, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        out("p.out", line);
    }
    return 0;
}
