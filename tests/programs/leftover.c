/* A pipe whose only writer wrote everything and exited: the reader takes
 * one line per step, across checkpoints, then sees end-of-file.
 * Usage: leftover STEPS DELAY_MS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p)) return 1;
    pid_t w = fork();
    if (w == 0) {
        close(p[0]);
        FILE *f = fdopen(p[1], "w");
        for (int i = 0; i < steps; i++) fprintf(f, "message %03d\n", i); /* 12 bytes */
        return 0;
    }
    close(p[1]);
    waitpid(w, NULL, 0);
    /* fixed-size reads straight from the pipe (no stdio buffer that would
     * take everything into memory at once) */
    char line[13];
    int n = 0;
    while (read(p[0], line, 12) == 12) {
        line[12] = 0;
        printf("read %d: %s", n++, line);
        usleep(delay * 1000);
    }
    printf("eof after %d\n", n);
    return 0;
}
