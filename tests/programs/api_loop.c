/* A program that asks for its own checkpoint through the C API.
 * Usage: api_loop STEPS CKPT_AT DELAY_MS
 * Keeps some state (a static array, a heap array, a running hash), prints
 * it every step, and at step CKPT_AT (0: never) calls hiber_checkpoint()
 * and prints the outcome: "ckpt -> RESUMED" in the process that took the
 * checkpoint, "ckpt -> RESTARTED" when it comes back from the image,
 * "ckpt -> not enabled" when it runs without hiber. */
#include <hiber.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned long long table[1024];

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int at = argc > 2 ? atoi(argv[2]) : 10;
    int delay = argc > 3 ? atoi(argv[3]) : 50;
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned long long *heap = calloc(1 << 16, sizeof *heap);
    unsigned long long hash = 1469598103934665603ULL;
    printf("enabled %d\n", hiber_is_enabled());
    for (int i = 1; i <= steps; i++) {
        table[i % 1024] += (unsigned long long)i * 2654435761u;
        hash = (hash ^ table[i % 1024]) * 1099511628211ULL;
        heap[(i * 7919) % (1 << 16)] = hash;
        if (i == at) {
            int r = hiber_checkpoint();
            if (r == HIBER_RESUMED)
                puts("ckpt -> RESUMED");
            else if (r == HIBER_RESTARTED)
                puts("ckpt -> RESTARTED");
            else if (r == HIBER_ENOTENABLED)
                puts("ckpt -> not enabled");
            else
                printf("ckpt -> error %d: %s\n", r, hiber_strerror(r));
        }
        unsigned long long check = 0;
        for (int j = 0; j < 1 << 16; j++) check += heap[j] * (unsigned long long)(j + 1);
        printf("step %d hash %016llx check %016llx\n", i, hash, check);
        usleep(delay * 1000);
    }
    puts("done");
    return 0;
}
