#ifndef CALC_H
#define CALC_H
long sum_of(const int *v, int n);
long fib(int n);
int count_primes(int below);
#endif
