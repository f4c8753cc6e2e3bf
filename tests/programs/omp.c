/* An OpenMP reduction, step by step. Usage: omp STEPS DELAY_MS */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int delay = argc > 2 ? atoi(argv[2]) : 30;
    setvbuf(stdout, NULL, _IOLBF, 0);
    omp_set_num_threads(4);
    unsigned long total = 0;
    for (int s = 0; s < steps; s++) {
        unsigned long sum = 0;
#pragma omp parallel for reduction(+ : sum)
        for (long i = 1; i <= 200000; i++) sum += (unsigned long)(i * (i + s)) % 1000003UL;
        total = total * 31 + sum;
        printf("step %d sum %lu total %lu threads %d\n", s, sum, total, omp_get_max_threads());
        usleep(delay * 1000);
    }
    return 0;
}
