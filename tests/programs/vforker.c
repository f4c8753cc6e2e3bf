/* vfork + exec in a loop (as dash and other shells run commands): the
 * vfork child runs in the parent's memory until it execs, and the exec'd
 * program joins the computation. Usage: vforker STEPS DELAY_MS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int s = 0; s < steps; s++) {
        pid_t k = vfork();
        if (k == 0) {
            char *av[] = {"true", NULL};
            char *env[] = {NULL};
            execve("/bin/true", av, env);
            _exit(99);
        }
        int st = 0;
        waitpid(k, &st, 0);
        printf("step %d child-ok %d\n", s, WIFEXITED(st) && WEXITSTATUS(st) == 0);
        usleep(delay * 1000);
    }
    return 0;
}
