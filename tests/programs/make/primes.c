#include <stdlib.h>
#include <string.h>
#include "calc.h"

int count_primes(int below) {
    char *composite = calloc(below, 1);
    int n = 0;
    if (!composite)
        return -1;
    for (int i = 2; i < below; i++) {
        if (composite[i])
            continue;
        n++;
        for (long j = (long)i * i; j < below; j += i)
            composite[j] = 1;
    }
    free(composite);
    return n;
}
