/* Critical sections (BLCR's cr_enter_cs/cr_leave_cs) and callbacks.
 * Usage: critical INSIDE_MS TOTAL_MS
 * A worker thread enters a (nested) critical section, prints "inside",
 * stays INSIDE_MS, prints "leaving" and leaves. A checkpoint requested
 * meanwhile must wait: the callback's "callback PRE_CHECKPOINT" (which
 * runs when the checkpoint starts, threads still running) comes after
 * "leaving". The main thread just lives TOTAL_MS. */
#include <hiber.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int inside_ms;

static void on_event(hiber_event_t ev, void *data) {
    const char *name = ev == HIBER_EVENT_PRE_CHECKPOINT ? "PRE_CHECKPOINT"
                       : ev == HIBER_EVENT_RESUME       ? "RESUME"
                       : ev == HIBER_EVENT_RESTART      ? "RESTART"
                                                        : "other";
    printf("callback %s %s\n", name, (const char *)data);
}

static void *worker(void *arg) {
    (void)arg;
    int a = hiber_disable_checkpoint();
    int b = hiber_disable_checkpoint(); /* nested */
    printf("inside (disable -> %d %d)\n", a, b);
    /* Asking for a checkpoint from inside would wait for ourselves. */
    printf("checkpoint inside -> %d\n", hiber_checkpoint());
    usleep(inside_ms * 1000);
    printf("leaving\n");
    int c = hiber_enable_checkpoint();
    int d = hiber_enable_checkpoint();
    printf("left (enable -> %d %d)\n", c, d);
    return NULL;
}

int main(int argc, char **argv) {
    inside_ms = argc > 1 ? atoi(argv[1]) : 1500;
    int total = argc > 2 ? atoi(argv[2]) : 6000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int h = hiber_register_callback(on_event, "from main");
    printf("registered %s\n", h >= 0 ? "ok" : hiber_strerror(h));
    usleep(300 * 1000);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    for (int waited = 0; waited < total; waited += 100) usleep(100 * 1000);
    puts("done");
    return 0;
}
