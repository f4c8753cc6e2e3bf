/* Shared memory written by a parent and its child in turns (over two
 * pipes): an anonymous MAP_SHARED page, a POSIX shm segment that stays
 * linked and one that was unlinked. Each checks the other's last write is
 * visible and logs to p.out / c.out. Usage: shm STEPS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static long *segment(const char *name, int unlink_it) {
    int fd = shm_open(name, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096)) exit(80);
    long *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (unlink_it) shm_unlink(name);
    return p;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    char linked[64], gone[64];
    snprintf(linked, sizeof linked, "/hiber-test-shm-%d", (int)getpid());
    snprintf(gone, sizeof gone, "/hiber-test-shm-gone-%d", (int)getpid());
    long *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long *shm = segment(linked, 0), *shm2 = segment(gone, 1);
    int p2c[2], c2p[2];
    if (anon == MAP_FAILED || pipe(p2c) || pipe(c2p)) return 1;
    pid_t kid = fork();
    int child = kid == 0, in = child ? p2c[0] : c2p[0], out = child ? c2p[1] : p2c[1];
    FILE *f = fopen(child ? "c.out" : "p.out", "a");
    setvbuf(f, NULL, _IOLBF, 0);
    if (!child) write(out, "x", 1);
    for (int s = 0; s < steps; s++) {
        char c;
        if (read(in, &c, 1) != 1) return 91;
        /* the other side wrote 2*s (child) or 2*s+1 (parent) just before */
        long want = child ? 2L * s : 2L * s + 1;
        int ok = anon[0] == want && shm[0] == want && shm2[0] == want;
        anon[0] = shm[0] = shm2[0] = want + 1;
        anon[1 + child] += s;
        fprintf(f, "%s step %d sees-other %d own-sum %ld\n", child ? "child" : "parent", s, ok, anon[1 + child]);
        usleep(delay * 1000);
        if (write(out, "x", 1) != 1) return 92;
    }
    if (child) return 0;
    int st = 0;
    waitpid(kid, &st, 0);
    shm_unlink(linked);
    printf("done %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}
