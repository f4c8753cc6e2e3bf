#include "calc.h"

long sum_of(const int *v, int n) {
    long s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s;
}
