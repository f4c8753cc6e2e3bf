/* The demo program: counts, one line per 200 ms, keeping its state in
 * ordinary memory (a heap buffer and a local). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int limit = argc > 1 ? atoi(argv[1]) : 50;
    long *sum = malloc(sizeof *sum);
    *sum = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i <= limit; i++) {
        *sum += i;
        printf("count %d sum %ld\n", i, *sum);
        usleep(200 * 1000);
    }
    return 0;
}
