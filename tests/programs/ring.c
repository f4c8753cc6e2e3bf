/* Three processes pass 4 tokens around a ring of pipes (so bytes are
 * always in flight), while the first also feeds a line per step through a
 * pipe to `cat` (fork + exec), whose output goes to c.out. Process 1 keeps
 * a copy of the write end that process 2 uses, so that end is shared by
 * two processes. Each ring process logs the tokens it gets to r<i>.out.
 * Usage: ring STEPS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static FILE *out(const char *name) {
    int fd = open(name, O_WRONLY | O_CREAT | O_APPEND, 0644);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "a");
    if (!f) exit(90);
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

static void full_read(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) exit(91);
        got += r;
    }
}

static void run(int i, int in, int outfd, int steps, int delay, FILE *cat) {
    char name[16];
    snprintf(name, sizeof name, "r%d.out", i);
    FILE *f = out(name);
    struct stat st;
    for (int s = 0; s < steps; s++) {
        int64_t v;
        full_read(in, &v, sizeof v);
        int fifo = fstat(in, &st) == 0 && S_ISFIFO(st.st_mode);
        fprintf(f, "r%d step %d got %lld fifo %d\n", i, s, (long long)v, fifo);
        v += 1;
        if (write(outfd, &v, sizeof v) != sizeof v) exit(92);
        if (cat) fprintf(cat, "line %d token %lld\n", s, (long long)v);
        usleep(delay * 1000);
    }
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    int r[3][2];
    for (int i = 0; i < 3; i++)
        if (pipe2(r[i], O_CLOEXEC)) return 1;
    pid_t kids[2];
    for (int i = 1; i <= 2; i++) {
        pid_t k = fork();
        if (k == 0) {
            for (int j = 0; j < 3; j++) {
                if (j != i) close(r[j][0]);
                /* process 1 keeps process 2's write end (pipe 0) too */
                if (j != (i + 1) % 3 && !(i == 1 && j == 0)) close(r[j][1]);
            }
            run(i, r[i][0], r[(i + 1) % 3][1], steps, delay, NULL);
            return 0;
        }
        kids[i - 1] = k;
    }
    for (int j = 0; j < 3; j++) {
        if (j != 0) close(r[j][0]);
        if (j != 1) close(r[j][1]);
    }
    int c[2];
    if (pipe(c)) return 1;
    pid_t cat = fork();
    if (cat == 0) {
        int fd = open("c.out", O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(c[0], 0);
        dup2(fd, 1);
        close(c[0]);
        close(c[1]);
        close(fd);
        execlp("cat", "cat", (char *)NULL);
        _exit(93);
    }
    close(c[0]);
    FILE *cf = fdopen(c[1], "w");
    setvbuf(cf, NULL, _IOLBF, 0);
    for (int64_t t = 0; t < 4; t++) {
        int64_t v = t * 1000;
        if (write(r[1][1], &v, sizeof v) != sizeof v) return 1;
    }
    run(0, r[0][0], r[1][1], steps, delay, cf);
    fclose(cf);
    int st, ok = 1;
    for (int i = 0; i < 2; i++) ok &= waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    ok &= waitpid(cat, &st, 0) == cat && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("ring done %d\n", ok);
    return ok ? 0 : 1;
}
