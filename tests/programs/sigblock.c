/* Blocks and ignores every signal, as some runtimes do: the checkpoint
 * signal must still stop it, and the program must read back its own
 * settings. Usage: sigblock STEPS DELAY_MS */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 30;
    int delay = argc > 2 ? atoi(argv[2]) : 50;
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    struct sigaction ign = {0};
    ign.sa_handler = SIG_IGN;
    for (int s = 1; s < 65; s++) sigaction(s, &ign, NULL);
    unsigned long acc = 0;
    for (int i = 0; i < steps; i++) {
        int ignored = 0;
        for (int s = 1; s < 65; s++) {
            struct sigaction back;
            if (sigaction(s, NULL, &back) == 0 && back.sa_handler == SIG_IGN) ignored++;
        }
        acc = acc * 31 + (unsigned long)i;
        printf("i %d acc %lu ignored %d\n", i, acc, ignored);
        usleep(delay * 1000);
    }
    return 0;
}
