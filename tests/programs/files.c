/* Open files whose contents matter: counter.dat is read then rewritten in
 * place at every step (its checkpoint contents must come back: a killed
 * run went on changing it), and scratch.tmp is unlinked right after it is
 * created and kept growing through its descriptor (a deleted-but-open
 * file); counter.dat's SIGIO owner (F_SETOWN) is kept.
 * Usage: files STEPS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int c = open("counter.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int t = open("scratch.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (c < 0 || t < 0 || unlink("scratch.tmp")) return 1;
    fcntl(c, F_SETOWN, getpid()); /* SIGIO owner: a pid, kept across a restart */
    long v = 0;
    if (pwrite(c, &v, sizeof v, 0) != sizeof v) return 2;
    for (long s = 0; s < steps; s++) {
        long got = -1;
        int ok = pread(c, &got, sizeof got, 0) == sizeof got && got == s;
        got = s + 1;
        if (pwrite(c, &got, sizeof got, 0) != sizeof got) return 3;
        char line[64];
        int n = snprintf(line, sizeof line, "line %ld\n", s);
        if (write(t, line, n) != n) return 4;
        struct stat st;
        fstat(t, &st);
        unsigned long sum = 0;
        char buf[4096];
        ssize_t r;
        for (off_t off = 0; (r = pread(t, buf, sizeof buf, off)) > 0; off += r)
            for (ssize_t i = 0; i < r; i++) sum = sum * 31 + (unsigned char)buf[i];
        printf("step %ld counter-ok %d scratch %ld links %ld sum %lu owner %d\n", s, ok, (long)st.st_size,
               (long)st.st_nlink, sum, fcntl(c, F_GETOWN) == getpid());
        usleep(delay * 1000);
    }
    return 0;
}
