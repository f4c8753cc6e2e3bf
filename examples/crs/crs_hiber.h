/*
 * crs_hiber.h — a checkpoint/restart service ("CRS") module built on
 * hiber's C API (include/hiber.h), with the shape of Open MPI's
 * opal_crs_base_module_1_0_0_t: a table of init, finalize, checkpoint,
 * restart, disable/enable_checkpoint, prelaunch and reg_thread, and the
 * CRS states (same names and values as opal_crs_state_type_t).
 *
 * A runtime calls crs_hiber_module.crs_init() once, then
 * crs_checkpoint(0, &snapshot, &options, &state) whenever it wants a
 * checkpoint of itself; `state` then says CONTINUE (this process wrote the
 * image and goes on) or RESTART (this process was just restarted from that
 * image). crs_restart() turns an image back into a process by exec'ing
 * `hiber restart IMAGE` (opal-restart's role).
 *
 * Under `hiber launch` the whole computation is checkpointed through its
 * coordinator. A program not started that way becomes checkpointable by
 * itself when $CRS_HIBER_IMAGE names an image file (standalone mode, as
 * MTCP's component did with mtcp_init). Otherwise the module behaves like
 * CRS "none": checkpoints report CRS_HIBER_ERR_NOT_SUPPORTED.
 */
#ifndef CRS_HIBER_H
#define CRS_HIBER_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes of the table's functions. */
#define CRS_HIBER_SUCCESS 0
#define CRS_HIBER_ERROR (-1)
#define CRS_HIBER_ERR_BAD_PARAM (-5)
#define CRS_HIBER_ERR_NOT_SUPPORTED (-8)

/* The state of a checkpoint, as opal_crs_state_type_t. */
typedef enum crs_hiber_state {
    CRS_HIBER_NONE = 0,
    CRS_HIBER_CHECKPOINT = 1,  /* a checkpoint is being taken */
    CRS_HIBER_RESTART_PRE = 2,
    CRS_HIBER_RESTART = 3,     /* returned by checkpoint in the restarted process */
    CRS_HIBER_CONTINUE = 4,    /* returned by checkpoint in the process that took it */
    CRS_HIBER_TERM = 5,
    CRS_HIBER_RUNNING = 6,
    CRS_HIBER_ERROR_STATE = 7, /* OPAL_CRS_ERROR */
    CRS_HIBER_STATE_MAX = 8
} crs_hiber_state_t;

/* Options of one checkpoint (opal_crs_base_ckpt_options_t). */
typedef struct crs_hiber_ckpt_options {
    bool term; /* exit(0) after the image is written (not in the restarted process) */
    bool stop; /* raise SIGSTOP after the image is written */
} crs_hiber_ckpt_options_t;

/* Where an image goes and what it is called (opal_crs_base_snapshot_t
 * with the context_filename the blcr and dmtcp components add). */
typedef struct crs_hiber_snapshot {
    /* In: directory for the image; "" keeps hiber's (the launch directory,
     * or the standalone image's). Must exist. */
    char snapshot_directory[PATH_MAX];
    /* Out of checkpoint, in to restart: the image file. */
    char context_filename[PATH_MAX];
} crs_hiber_snapshot_t;

/* The module table (opal_crs_base_module_1_0_0_t), in the same order. */
typedef struct crs_hiber_module {
    int (*crs_init)(void);
    int (*crs_finalize)(void);
    /* Checkpoints this process (`pid` 0 or getpid(): other processes are
     * checkpointed by `hiber checkpoint`, not from inside). Blocks until
     * the image is on disk; sets *state to CONTINUE, RESTART or ERROR. */
    int (*crs_checkpoint)(pid_t pid, crs_hiber_snapshot_t *snapshot,
                          crs_hiber_ckpt_options_t *options, crs_hiber_state_t *state);
    /* Restarts snapshot->context_filename: exec's `hiber restart IMAGE` in
     * place (returns only on error), or with spawn_child in a child whose
     * pid is stored in *child_pid. `hiber` is $CRS_HIBER_HIBER, else
     * found in $PATH. */
    int (*crs_restart)(crs_hiber_snapshot_t *snapshot, bool spawn_child, pid_t *child_pid);
    /* Critical section: a checkpoint requested meanwhile waits until the
     * matching enable. Per thread and nestable. */
    int (*crs_disable_checkpoint)(void);
    int (*crs_enable_checkpoint)(void);
    /* Called by a launcher before exec'ing a rank: prepends `hiber launch`
     * to (*app, *argv). *app and *argv are replaced by malloc'd copies. */
    int (*crs_prelaunch)(int rank, char *base_snapshot_dir, char **app, char **cwd,
                         char ***argv, char ***env);
    /* Threads need no registration with hiber: a no-op. */
    int (*crs_reg_thread)(void);
} crs_hiber_module_t;

extern const crs_hiber_module_t crs_hiber_module;

/* "CONTINUE", "RESTART", ... */
const char *crs_hiber_state_name(crs_hiber_state_t state);

/* The module's state: RUNNING after init, CHECKPOINT while one is taken,
 * then CONTINUE or RESTART until the next one (BLCR's current state). */
crs_hiber_state_t crs_hiber_current_state(void);

#ifdef __cplusplus
}
#endif

#endif /* CRS_HIBER_H */
