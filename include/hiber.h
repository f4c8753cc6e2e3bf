/*
 * hiber.h — the C interface of hiber's agent (libhiber.so).
 *
 * A program, or a runtime such as an MPI library's checkpoint/restart
 * service, can ask for checkpoints of itself, keep them out of critical
 * sections and be told when it resumes or restarts. Link with -lhiber
 * (`pkg-config --cflags --libs hiber`). Without hiber (not started by
 * `hiber launch`, no hiber_init_standalone()), every call reports
 * HIBER_ENOTENABLED and nothing else happens, so the same binary runs
 * with and without hiber.
 *
 * A program that must not depend on libhiber.so at all can define
 * HIBER_WEAK before including this header: the functions are then weak
 * references, and hiber_is_enabled() and friends are called only when
 * the agent is present (under `hiber launch`, which preloads it).
 *
 * All functions are thread-safe. None may be called from a signal handler
 * except hiber_is_enabled(). Usable from C++.
 */
#ifndef HIBER_H
#define HIBER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HIBER_API_VERSION 1

/* Results of hiber_checkpoint() */
#define HIBER_RESUMED 1   /* the image is written; this process carries on (CRS "CONTINUE") */
#define HIBER_RESTARTED 2 /* this process was restarted from that image (CRS "RESTART") */

/* Status codes: 0 is success, negative values are errors (hiber_strerror). */
#define HIBER_OK 0
#define HIBER_ENOTENABLED (-1) /* not running under hiber */
#define HIBER_EBUSY (-2)       /* a checkpoint is already in progress */
#define HIBER_ECOORD (-3)      /* the coordinator is unreachable or refused */
#define HIBER_EFAILED (-4)     /* the checkpoint failed (in this or another process) */
#define HIBER_EINVAL (-5)      /* bad argument */
#define HIBER_EDEADLK (-6)     /* called where it would deadlock: inside a critical
                                  section or from a callback */
#define HIBER_ERANGE (-7)      /* the output buffer is too small */

/* Events. Everything runs on hiber's checkpoint thread, in this order:
 *   PRE_SUSPEND     the program's threads still run (take locks, flush
 *                   buffers, talk to peers, use barriers and the kv store);
 *   PRE_CHECKPOINT  the program's threads are stopped and the image is about
 *                   to be written: async-signal-safe code only (no malloc,
 *                   no stdio, no locks the program may hold);
 *   RESUME          the image is on disk and this process carries on, or
 *   RESTART         this process was restarted from the image; its threads
 *                   run again right after.
 * Plugins get all four. Callbacks registered with hiber_register_callback
 * (BLCR's cr_register_callback) get HIBER_EVENT_PRE_CHECKPOINT at the
 * PRE_SUSPEND moment, while the program's threads still run, then RESUME or
 * RESTART. */
typedef enum hiber_event {
    HIBER_EVENT_PRE_CHECKPOINT = 1,
    HIBER_EVENT_RESUME = 2,
    HIBER_EVENT_RESTART = 3,
    HIBER_EVENT_PRE_SUSPEND = 4
} hiber_event_t;

typedef void (*hiber_callback_t)(hiber_event_t event, void *user_data);

/* Coordinator state, as `hiber status` prints it. */
typedef struct hiber_status {
    int processes;          /* processes in the computation */
    int state;              /* 0 running, 1 checkpointing, 2 restarting */
    long long generation;   /* last complete checkpoint */
    long long interval;     /* seconds between automatic checkpoints, 0 = off */
    char coordinator[128];  /* HOST:PORT, "" in standalone mode */
} hiber_status_t;

/* Standalone flags */
#define HIBER_STANDALONE_NO_COMPRESS 1u /* raw, page-aligned image */
#define HIBER_STANDALONE_NO_SYNC 2u     /* don't fsync the image */

#ifdef HIBER_WEAK
#define HIBER_DECL __attribute__((weak))
#else
#define HIBER_DECL
#endif

/* 1 if this process is checkpointable by hiber, 0 otherwise. */
HIBER_DECL int hiber_is_enabled(void);

/* Checkpoints the whole computation and blocks until every image is on
 * disk. Returns HIBER_RESUMED or HIBER_RESTARTED, or a negative error.
 * If a critical section of another thread is open, the checkpoint starts
 * when it closes. */
HIBER_DECL int hiber_checkpoint(void);

/* A static English message for any code above. */
HIBER_DECL const char *hiber_strerror(int code);

/* Critical sections (BLCR's cr_enter_cs/cr_leave_cs): while any thread is
 * inside one, no checkpoint starts; a requested checkpoint waits until the
 * last one closes. Per thread and nestable. */
HIBER_DECL int hiber_disable_checkpoint(void);
HIBER_DECL int hiber_enable_checkpoint(void);

/* Calls `cb(event, user_data)` at PRE_CHECKPOINT, RESUME and RESTART.
 * Returns a handle (>= 0) for hiber_unregister_callback, or an error. */
HIBER_DECL int hiber_register_callback(hiber_callback_t cb, void *user_data);
HIBER_DECL int hiber_unregister_callback(int handle);

/* Queries */
HIBER_DECL long long hiber_generation(void); /* last complete checkpoint, or an error */
HIBER_DECL int hiber_get_ckpt_dir(char *buf, size_t len);
HIBER_DECL int hiber_set_ckpt_dir(const char *dir); /* for the next checkpoints */
HIBER_DECL int hiber_image_path(char *buf, size_t len); /* this process's image */
HIBER_DECL int hiber_coordinator_status(hiber_status_t *out);

/* Standalone mode (MTCP's use): a program not started by `hiber launch`
 * makes itself checkpointable, with no coordinator, to `image_path`.
 * `hiber restart IMAGE` later brings it back (hiber_checkpoint() then
 * returns HIBER_RESTARTED). */
HIBER_DECL int hiber_init_standalone(const char *image_path, unsigned flags);

/* ---- Plugins ------------------------------------------------------------
 * `hiber launch --with-plugin lib.so` loads lib.so into every process of
 * the computation. It must export
 *     void hiber_plugin_event(hiber_event_t event);
 * called on the checkpoint thread of every process, in the order above:
 * PRE_SUSPEND, PRE_CHECKPOINT, then RESUME or, after a restart, RESTART.
 * In PRE_SUSPEND, RESUME and RESTART a plugin (and a callback) may use the
 * coordinator: */

/* Waits until every process of the computation has reached the barrier
 * `name` (only from a plugin event or a callback). */
HIBER_DECL int hiber_barrier(const char *name);
/* The coordinator's key-value store: put, and get (waits until the key exists). */
HIBER_DECL int hiber_kv_put(const char *key, const void *value, size_t len);
HIBER_DECL long hiber_kv_get(const char *key, void *buf, size_t len); /* returns the value's length */

#undef HIBER_DECL

#ifdef __cplusplus
}
#endif

#endif /* HIBER_H */
