/* MTCP's use: a program that makes itself checkpointable, with no
 * coordinator and without `hiber launch`.
 * Usage: standalone STEPS CKPT_AT DELAY_MS IMAGE
 * Calls hiber_init_standalone(IMAGE, 0), then behaves as api_loop: at step
 * CKPT_AT it checkpoints itself to IMAGE and prints "ckpt -> RESUMED", or
 * "ckpt -> RESTARTED" after `hiber restart IMAGE`. */
#include <hiber.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: standalone STEPS CKPT_AT DELAY_MS IMAGE\n");
        return 2;
    }
    int steps = atoi(argv[1]), at = atoi(argv[2]), delay = atoi(argv[3]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int r = hiber_init_standalone(argv[4], 0);
    printf("init -> %d (%s), enabled %d\n", r, hiber_strerror(r), hiber_is_enabled());
    char path[4096];
    if (hiber_image_path(path, sizeof path) == HIBER_OK)
        printf("image %s\n", strcmp(path, argv[4]) == 0 ? "as requested" : path);
    char *text = malloc(64 * 1024);
    size_t len = 0;
    unsigned long long hash = 14695981039346656037ULL;
    for (int i = 1; i <= steps; i++) {
        len += (size_t)snprintf(text + len, 64 * 1024 - len, "%d,", i * i);
        for (size_t j = 0; j < len; j++) hash = (hash ^ (unsigned char)text[j]) * 1099511628211ULL;
        if (i == at) {
            r = hiber_checkpoint();
            if (r == HIBER_RESUMED)
                puts("ckpt -> RESUMED");
            else if (r == HIBER_RESTARTED)
                puts("ckpt -> RESTARTED");
            else
                printf("ckpt -> error %d: %s\n", r, hiber_strerror(r));
        }
        printf("step %d len %zu hash %016llx\n", i, len, hash);
        usleep(delay * 1000);
    }
    puts("done");
    return 0;
}
