/* A program that uses SIGUSR2 and real-time signal 62 (hiber's default
 * checkpoint signal) itself. Usage: sigusr STEPS DELAY_MS */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t usr2, rt62;
static void on_usr2(int s) { (void)s; usr2++; }
static void on_rt(int s) { (void)s; rt62++; }

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR2, on_usr2);
    struct sigaction sa = {0};
    sa.sa_handler = on_rt;
    sigaction(62, &sa, NULL);
    for (int s = 0; s < steps; s++) {
        raise(SIGUSR2);
        raise(62);
        printf("step %d usr2 %d rt62 %d\n", s, (int)usr2, (int)rt62);
        usleep(delay * 1000);
    }
    return 0;
}
