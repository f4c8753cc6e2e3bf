/* Threads created and joined continuously (thousands per second) while
 * checkpoints happen. Usage: churn LINES DELAY_MS (200 rounds of 4 threads
 * per line). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long acc;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static void *work(void *a) {
    pthread_mutex_lock(&m);
    acc += (long)a;
    pthread_mutex_unlock(&m);
    return a;
}

int main(int argc, char **argv) {
    int lines = argc > 1 ? atoi(argv[1]) : 50;
    int delay = argc > 2 ? atoi(argv[2]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    long expect = 0, joined = 0;
    for (int l = 0; l < lines; l++) {
        for (int r = 0; r < 200; r++) {
            pthread_t t[4];
            for (long i = 0; i < 4; i++) {
                pthread_create(&t[i], NULL, work, (void *)(i + r + l));
                expect += i + r + l;
            }
            for (int i = 0; i < 4; i++) {
                void *ret;
                pthread_join(t[i], &ret);
                joined += (long)ret;
            }
        }
        printf("line %d acc %ld ok %d\n", l, acc, acc == expect && joined == expect);
        if (delay) usleep(delay * 1000);
    }
    return 0;
}
