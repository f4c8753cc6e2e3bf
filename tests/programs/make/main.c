#include <stdio.h>
#include "calc.h"
#include "squares.h"

int main(void) {
    static const int squares[] = { SQUARES };
    int n = (int)(sizeof squares / sizeof squares[0]);
    printf("calc: %d squares, sum %ld\n", n, sum_of(squares, n));
    printf("calc: fib(40) = %ld\n", fib(40));
    printf("calc: %d primes below 100000\n", count_primes(100000));
    return 0;
}
