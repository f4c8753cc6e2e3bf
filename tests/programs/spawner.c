/* Contagion through exec: the child execs this program again with an
 * EMPTY environment (the agent must carry itself over), and a third
 * process runs `hiber nocheckpoint sleep 5` (which must stay out of the
 * computation). The parent prints to stdout, the exec'd kid to k.out; the
 * parent waits for the kid at the end.
 * Usage: spawner HIBER STEPS DELAY_MS   |   spawner kid STEPS DELAY_MS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int steps = atoi(argv[2]), delay = atoi(argv[3]);
    if (strcmp(argv[1], "kid") == 0) {
        int fd = open("k.out", O_WRONLY | O_CREAT | O_APPEND, 0644);
        FILE *f = fdopen(fd, "a");
        setvbuf(f, NULL, _IOLBF, 0);
        long sum = 0;
        for (int s = 0; s < steps; s++) {
            sum += s * 7;
            fprintf(f, "kid step %d sum %ld env-cleared %d\n", s, sum, getenv("PATH") == NULL);
            usleep(delay * 1000);
        }
        return 5;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t kid = fork();
    if (kid == 0) {
        char *kargv[] = {argv[0], "kid", argv[2], argv[3], NULL};
        char *empty[] = {NULL};
        execve(argv[0], kargv, empty);
        _exit(99);
    }
    pid_t out = fork();
    if (out == 0) {
        char *oargv[] = {argv[1], "nocheckpoint", "sleep", "5", NULL};
        execvp(argv[1], oargv);
        _exit(98);
    }
    long sum = 0;
    for (int s = 0; s < steps; s++) {
        sum += s;
        printf("parent step %d sum %ld\n", s, sum);
        usleep(delay * 1000);
    }
    int st = 0;
    pid_t w = waitpid(kid, &st, 0);
    printf("parent waited %d status %d\n", w == kid, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
