/*
 * crs_example — a "runtime" using the CRS adapter (crs_hiber.h).
 *
 *   crs_example STEPS EVERY DELAY_MS   compute STEPS steps; every EVERY
 *                                      steps take a checkpoint
 *   crs_example --restart IMAGE        restart an image (execs `hiber restart`)
 *
 * The state is an array and a running hash. Each step updates them inside a
 * critical section (a checkpoint never sees half a step) and prints them.
 * Each checkpoint prints whether this process CONTINUEs after writing the
 * image or was RESTARTed from it; the image's name goes to stderr.
 *
 *   hiber launch ./crs_example 40 10 100     # checkpoints of the computation
 *   CRS_HIBER_IMAGE=$PWD/me.hiber ./crs_example 40 10 100   # standalone
 *   ./crs_example --restart me.hiber        # or: hiber restart me.hiber
 *   ./crs_example 40 10 100                 # without hiber: "not enabled"
 */
#include "crs_hiber.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CELLS 4096

int main(int argc, char **argv) {
    const crs_hiber_module_t *crs = &crs_hiber_module;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "--restart") == 0) {
        crs_hiber_snapshot_t snapshot = {0};
        snprintf(snapshot.context_filename, sizeof snapshot.context_filename, "%s", argv[2]);
        int r = crs->crs_restart(&snapshot, false, NULL);
        fprintf(stderr, "crs_example: restart failed (%d)\n", r);
        return 1;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: crs_example STEPS EVERY DELAY_MS | --restart IMAGE\n");
        return 2;
    }
    int steps = atoi(argv[1]), every = atoi(argv[2]), delay = atoi(argv[3]);
    if (crs->crs_init() != CRS_HIBER_SUCCESS) return 1;
    printf("crs init: %s\n", crs_hiber_state_name(crs_hiber_current_state()));

    unsigned *cells = calloc(CELLS, sizeof *cells);
    unsigned long long hash = 14695981039346656037ULL;
    int checkpoints = 0;
    for (int i = 1; i <= steps; i++) {
        crs->crs_disable_checkpoint();
        for (int j = 0; j < CELLS; j += 61) cells[(j + i) % CELLS] += (unsigned)(i * j + 1);
        unsigned long long sum = 0;
        for (int j = 0; j < CELLS; j++) {
            hash = (hash ^ cells[j]) * 1099511628211ULL;
            sum += cells[j];
        }
        crs->crs_enable_checkpoint();

        if (every > 0 && i % every == 0) {
            crs_hiber_snapshot_t snapshot = {0};
            crs_hiber_ckpt_options_t options = {0};
            crs_hiber_state_t state = CRS_HIBER_NONE;
            int r = crs->crs_checkpoint(0, &snapshot, &options, &state);
            checkpoints++;
            if (r == CRS_HIBER_SUCCESS) {
                printf("checkpoint %d: %s\n", checkpoints, crs_hiber_state_name(state));
                fprintf(stderr, "crs_example: image %s\n", snapshot.context_filename);
            } else if (r == CRS_HIBER_ERR_NOT_SUPPORTED) {
                printf("checkpoint %d: not enabled\n", checkpoints);
            } else {
                printf("checkpoint %d: failed (%d)\n", checkpoints, r);
            }
        }
        printf("step %d hash %016llx sum %llu\n", i, hash, sum);
        usleep((useconds_t)delay * 1000);
    }
    crs->crs_finalize();
    puts("done");
    return 0;
}
