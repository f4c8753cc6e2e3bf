/* A hiber plugin: `hiber launch --with-plugin plugin.so PROG`.
 * Appends every event it gets to PLUGIN_LOG_DIR/plugin.NAME.PID.log
 * (NAME from $PLUGIN_NAME, PID of the launched process; the name is kept
 * across a restart, since it lives in the process's memory). In
 * PRE_SUSPEND it puts a value for its peer ($PLUGIN_PEER), waits at the
 * barrier "plugin-test" and reads the peer's value; in RESTART it waits at
 * the barrier "plugin-restart".
 * Build: cc -shared -fPIC -I include -o plugin.so plugin.c */
#include <fcntl.h>
#include <hiber.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char log_path[4096];

/* open/write/close only: PRE_CHECKPOINT must be async-signal-safe. */
static void note(const char *line) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
        /* nothing better to do in a test plugin */
    }
    close(fd);
}

static void init_path(void) {
    if (log_path[0]) return;
    const char *dir = getenv("PLUGIN_LOG_DIR");
    const char *name = getenv("PLUGIN_NAME");
    snprintf(log_path, sizeof log_path, "%s/plugin.%s.%d.log", dir ? dir : ".",
             name ? name : "x", (int)getpid());
}

void hiber_plugin_event(hiber_event_t ev) {
    char line[512];
    const char *name = getenv("PLUGIN_NAME");
    const char *peer = getenv("PLUGIN_PEER");
    switch (ev) {
    case HIBER_EVENT_PRE_SUSPEND: {
        init_path();
        note("PRE_SUSPEND");
        char key[128], value[128];
        snprintf(key, sizeof key, "plugin-test/%s", name ? name : "x");
        snprintf(value, sizeof value, "hello from %s", name ? name : "x");
        int r = hiber_kv_put(key, value, strlen(value) + 1);
        snprintf(line, sizeof line, "kv put %s", r == HIBER_OK ? "ok" : hiber_strerror(r));
        note(line);
        r = hiber_barrier("plugin-test");
        snprintf(line, sizeof line, "barrier %s", r == HIBER_OK ? "ok" : hiber_strerror(r));
        note(line);
        snprintf(key, sizeof key, "plugin-test/%s", peer ? peer : "x");
        char got[128] = "";
        long n = hiber_kv_get(key, got, sizeof got);
        if (n >= 0)
            snprintf(line, sizeof line, "kv got %s", got);
        else
            snprintf(line, sizeof line, "kv get failed: %s", hiber_strerror((int)n));
        note(line);
        break;
    }
    case HIBER_EVENT_PRE_CHECKPOINT:
        note("PRE_CHECKPOINT");
        break;
    case HIBER_EVENT_RESUME:
        note("RESUME");
        break;
    case HIBER_EVENT_RESTART: {
        note("RESTART");
        int r = hiber_barrier("plugin-restart");
        snprintf(line, sizeof line, "restart barrier %s", r == HIBER_OK ? "ok" : hiber_strerror(r));
        note(line);
        break;
    }
    default:
        note("UNKNOWN");
    }
}
