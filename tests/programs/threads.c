/* Worker threads updating shared state under a mutex while the main
 * thread reports; the final total is deterministic.
 * Usage: threads STEPS DELAY_MS [WORKERS (4, at most 64)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAXW 64
static int WORKERS = 4;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long total, rounds_done[MAXW];
static int round_no, delay;
static __thread long mine; /* thread-local */

static void *worker(void *arg) {
    long id = (long)arg;
    for (int r = 1; r <= 1000; r++) {
        pthread_mutex_lock(&lock);
        while (round_no < r / 10) pthread_cond_wait(&cond, &lock);
        total += id * r;
        mine += r;
        rounds_done[id] = r;
        pthread_mutex_unlock(&lock);
    }
    return (void *)mine;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 100;
    delay = argc > 2 ? atoi(argv[2]) : 20;
    if (argc > 3) WORKERS = atoi(argv[3]) > MAXW ? MAXW : atoi(argv[3]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t t[MAXW];
    for (long i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int s = 0; s <= steps; s++) {
        pthread_mutex_lock(&lock);
        round_no = s;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        printf("step %d\n", s);
        usleep(delay * 1000);
    }
    long sum = 0;
    for (int i = 0; i < WORKERS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        sum += (long)ret;
    }
    printf("total %ld tls %ld\n", total, sum);
    return 0;
}
