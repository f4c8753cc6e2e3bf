/*
 * crs_hiber.c — the CRS module of crs_hiber.h, built only on hiber.h.
 *
 * How each slot maps onto hiber (see docs/c-api.md, "CRS, BLCR and MTCP"):
 *   init            hiber_is_enabled(); standalone mode if $CRS_HIBER_IMAGE;
 *                   a callback that tracks the state (BLCR's thread callback)
 *   checkpoint      hiber_set_ckpt_dir() + hiber_checkpoint():
 *                   HIBER_RESUMED -> CONTINUE, HIBER_RESTARTED -> RESTART
 *   restart         exec `hiber restart IMAGE` (opal-restart's exec of
 *                   cr_restart / mtcp_restart)
 *   disable/enable  hiber_disable_checkpoint()/hiber_enable_checkpoint()
 *                   (cr_enter_cs/cr_leave_cs, mtcp_no/mtcp_ok)
 *   prelaunch       runs the rank under `hiber launch`
 *   reg_thread      nothing: hiber needs no per-thread registration
 */
#define _GNU_SOURCE
#include "crs_hiber.h"

#include <errno.h>
#include <hiber.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int current_state = CRS_HIBER_NONE;
static int callback_handle = -1;

static void set_state(crs_hiber_state_t s) {
    __atomic_store_n(&current_state, (int)s, __ATOMIC_RELEASE);
}

crs_hiber_state_t crs_hiber_current_state(void) {
    return (crs_hiber_state_t)__atomic_load_n(&current_state, __ATOMIC_ACQUIRE);
}

const char *crs_hiber_state_name(crs_hiber_state_t state) {
    static const char *const names[] = {"NONE",     "CHECKPOINT", "RESTART_PRE",
                                        "RESTART",  "CONTINUE",   "TERM",
                                        "RUNNING",  "ERROR"};
    return (unsigned)state < CRS_HIBER_STATE_MAX ? names[state] : "?";
}

/* Runs on hiber's checkpoint thread. PRE_CHECKPOINT comes while the
 * program's threads still run, RESUME/RESTART just before they go on. */
static void on_event(hiber_event_t event, void *data) {
    (void)data;
    switch (event) {
    case HIBER_EVENT_PRE_CHECKPOINT:
        set_state(CRS_HIBER_CHECKPOINT);
        break;
    case HIBER_EVENT_RESUME:
        set_state(CRS_HIBER_CONTINUE);
        break;
    case HIBER_EVENT_RESTART:
        set_state(CRS_HIBER_RESTART);
        break;
    default:
        break;
    }
}

static int crs_hiber_init(void) {
    if (!hiber_is_enabled()) {
        const char *image = getenv("CRS_HIBER_IMAGE");
        if (image != NULL && image[0] != '\0') {
            int r = hiber_init_standalone(image, 0);
            if (r != HIBER_OK) {
                fprintf(stderr, "crs_hiber: cannot checkpoint to %s: %s\n", image,
                        hiber_strerror(r));
                return CRS_HIBER_ERROR;
            }
        }
    }
    if (hiber_is_enabled() && callback_handle < 0) {
        int h = hiber_register_callback(on_event, NULL);
        if (h < 0) {
            fprintf(stderr, "crs_hiber: %s\n", hiber_strerror(h));
            return CRS_HIBER_ERROR;
        }
        callback_handle = h;
    }
    /* Without hiber we are CRS "none": running, but not checkpointable. */
    set_state(CRS_HIBER_RUNNING);
    return CRS_HIBER_SUCCESS;
}

static int crs_hiber_finalize(void) {
    if (callback_handle >= 0) {
        hiber_unregister_callback(callback_handle);
        callback_handle = -1;
    }
    set_state(CRS_HIBER_NONE);
    return CRS_HIBER_SUCCESS;
}

static int crs_hiber_checkpoint(pid_t pid, crs_hiber_snapshot_t *snapshot,
                                crs_hiber_ckpt_options_t *options, crs_hiber_state_t *state) {
    if (state != NULL) *state = CRS_HIBER_ERROR_STATE;
    if (pid != 0 && pid != getpid()) return CRS_HIBER_ERR_NOT_SUPPORTED;
    if (!hiber_is_enabled()) return CRS_HIBER_ERR_NOT_SUPPORTED;
    if (snapshot != NULL && snapshot->snapshot_directory[0] != '\0') {
        int r = hiber_set_ckpt_dir(snapshot->snapshot_directory);
        if (r != HIBER_OK) {
            fprintf(stderr, "crs_hiber: checkpoint directory %s: %s\n",
                    snapshot->snapshot_directory, hiber_strerror(r));
            return CRS_HIBER_ERR_BAD_PARAM;
        }
    }

    set_state(CRS_HIBER_CHECKPOINT);
    int r = hiber_checkpoint();
    crs_hiber_state_t result;
    if (r == HIBER_RESUMED) {
        result = CRS_HIBER_CONTINUE;
    } else if (r == HIBER_RESTARTED) {
        result = CRS_HIBER_RESTART;
    } else {
        fprintf(stderr, "crs_hiber: checkpoint failed: %s\n", hiber_strerror(r));
        set_state(CRS_HIBER_RUNNING);
        return CRS_HIBER_ERROR;
    }
    set_state(result);
    if (state != NULL) *state = result;
    if (snapshot != NULL &&
        hiber_image_path(snapshot->context_filename, sizeof snapshot->context_filename) !=
            HIBER_OK)
        snapshot->context_filename[0] = '\0';
    /* term/stop apply to the process that wrote the image, as in OPAL. */
    if (result == CRS_HIBER_CONTINUE && options != NULL) {
        if (options->stop) raise(SIGSTOP);
        if (options->term) exit(0);
    }
    return CRS_HIBER_SUCCESS;
}

/* A process started by `hiber launch` has the agent in LD_PRELOAD; the
 * `hiber` command we exec must not load it into itself. */
static void drop_agent_from_preload(void) {
    const char *old = getenv("LD_PRELOAD");
    if (old == NULL) return;
    char *copy = strdup(old);
    char *kept = calloc(1, strlen(old) + 1);
    if (copy == NULL || kept == NULL) {
        free(copy);
        free(kept);
        unsetenv("LD_PRELOAD");
        return;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ": ", &save); tok != NULL; tok = strtok_r(NULL, ": ", &save)) {
        const char *base = strrchr(tok, '/');
        base = base != NULL ? base + 1 : tok;
        if (strcmp(base, "libhiber.so") == 0) continue;
        if (kept[0] != '\0') strcat(kept, ":");
        strcat(kept, tok);
    }
    if (kept[0] != '\0')
        setenv("LD_PRELOAD", kept, 1);
    else
        unsetenv("LD_PRELOAD");
    free(copy);
    free(kept);
}

static const char *hiber_command(void) {
    const char *exe = getenv("CRS_HIBER_HIBER");
    return exe != NULL && exe[0] != '\0' ? exe : "hiber";
}

static int crs_hiber_restart(crs_hiber_snapshot_t *snapshot, bool spawn_child, pid_t *child_pid) {
    if (snapshot == NULL || snapshot->context_filename[0] == '\0') return CRS_HIBER_ERR_BAD_PARAM;
    const char *exe = hiber_command();
    char *argv[] = {(char *)"hiber", (char *)"restart", snapshot->context_filename, NULL};
    if (spawn_child) {
        fflush(NULL);
        pid_t child = fork();
        if (child < 0) return CRS_HIBER_ERROR;
        if (child == 0) {
            drop_agent_from_preload();
            unsetenv("HIBER_PLUGINS");
            execvp(exe, argv);
            fprintf(stderr, "crs_hiber: cannot run %s: %s\n", exe, strerror(errno));
            _exit(127);
        }
        if (child_pid != NULL) *child_pid = child;
        return CRS_HIBER_SUCCESS;
    }
    fflush(NULL);
    drop_agent_from_preload();
    unsetenv("HIBER_PLUGINS");
    execvp(exe, argv);
    fprintf(stderr, "crs_hiber: cannot run %s: %s\n", exe, strerror(errno));
    return CRS_HIBER_ERROR;
}

static int crs_hiber_disable_checkpoint(void) {
    int r = hiber_disable_checkpoint();
    return r == HIBER_OK || r == HIBER_ENOTENABLED ? CRS_HIBER_SUCCESS : CRS_HIBER_ERROR;
}

static int crs_hiber_enable_checkpoint(void) {
    int r = hiber_enable_checkpoint();
    return r == HIBER_OK || r == HIBER_ENOTENABLED ? CRS_HIBER_SUCCESS : CRS_HIBER_ERROR;
}

static int crs_hiber_prelaunch(int rank, char *base_snapshot_dir, char **app, char **cwd,
                               char ***argv, char ***env) {
    (void)rank;
    (void)base_snapshot_dir;
    (void)cwd;
    (void)env;
    if (app == NULL || *app == NULL || argv == NULL || *argv == NULL) return CRS_HIBER_ERR_BAD_PARAM;
    size_t n = 0;
    while ((*argv)[n] != NULL) n++;
    /* hiber launch APP ARGV[1..] */
    char **launched = calloc(n + 3, sizeof *launched);
    char *exe = strdup(hiber_command());
    if (launched == NULL || exe == NULL) {
        free(launched);
        free(exe);
        return CRS_HIBER_ERROR;
    }
    launched[0] = exe;
    launched[1] = strdup("launch");
    launched[2] = strdup(*app);
    for (size_t i = 1; i < n; i++) launched[i + 2] = strdup((*argv)[i]);
    *app = exe;
    *argv = launched;
    return CRS_HIBER_SUCCESS;
}

static int crs_hiber_reg_thread(void) {
    return CRS_HIBER_SUCCESS;
}

const crs_hiber_module_t crs_hiber_module = {
    crs_hiber_init,
    crs_hiber_finalize,
    crs_hiber_checkpoint,
    crs_hiber_restart,
    crs_hiber_disable_checkpoint,
    crs_hiber_enable_checkpoint,
    crs_hiber_prelaunch,
    crs_hiber_reg_thread,
};
