/* A parent and its child write one file through one open file description
 * (opened without O_APPEND before the fork: they share its offset), taking
 * turns through two pipes. If the offset were not shared after a restart
 * they would overwrite each other's lines. Usage: sharedfile STEPS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void turn(int in) {
    char c;
    if (read(in, &c, 1) != 1) exit(91);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    int fd = open("log.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int p2c[2], c2p[2];
    if (fd < 0 || pipe(p2c) || pipe(c2p)) return 1;
    pid_t kid = fork();
    int me = kid == 0, in = me ? p2c[0] : c2p[0], out = me ? c2p[1] : p2c[1];
    if (!me) write(out, "x", 1); /* the child goes first */
    for (int s = 0; s < steps; s++) {
        turn(in);
        char line[64];
        int n = snprintf(line, sizeof line, "%s step %d\n", me ? "child " : "parent", s);
        if (write(fd, line, n) != n) return 2;
        usleep(delay * 1000);
        if (write(out, "x", 1) != 1) return 3;
    }
    if (me) return 0;
    int st = 0;
    waitpid(kid, &st, 0);
    printf("done %d offset %ld\n", WIFEXITED(st) && WEXITSTATUS(st) == 0, (long)lseek(fd, 0, SEEK_CUR));
    return 0;
}
