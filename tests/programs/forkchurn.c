/* Children forked continuously, three alive at a time, each exiting with
 * its own code: every child forked before a checkpoint must be there after
 * the restart for its parent to reap (a child that joined the computation
 * too late for the checkpoint would be missing: waitpid fails).
 * Usage: forkchurn STEPS DELAY_MS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t kids[3] = {0};
    for (int s = 0; s < steps + 3; s++) {
        pid_t old = kids[s % 3];
        if (old > 0) {
            int st = 0;
            pid_t w = waitpid(old, &st, 0);
            printf("step %d reaped %d code %d\n", s - 3, w == old, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
        if (s < steps) {
            pid_t k = fork();
            if (k == 0) {
                usleep(delay * 3000);
                _exit(s % 100);
            }
            kids[s % 3] = k;
        }
        usleep(delay * 1000);
    }
    return 0;
}
