/* The agent's wrappers of variadic libc functions: `execl`, `execlp`,
 * `execle` and `clone`.
 *
 * Why C: a wrapper has to be defined with the wrapped function's
 * signature, and Rust cannot define C-variadic functions on stable. Each
 * function here collects its variadic arguments and hands over to the
 * agent's Rust code (the exec wrappers in wrappers.rs, the fork sequence in
 * fork.rs), which does the actual work.
 *
 * Why wrap them at all: glibc's execl* call its internal execve, not the
 * exported one, so the agent's execve/execv/execvp wrappers never see them,
 * and `execle(path, arg0, ..., NULL, envp)` with an environment lacking
 * LD_PRELOAD would take the new program out of the computation. glibc's
 * `clone` without CLONE_VM makes a new process, like fork, but runs no
 * fork wrapper: the child would run without a checkpoint thread, unknown
 * to the coordinator.
 *
 * build.rs compiles this file into libhiber.so. The functions here have
 * hidden names (hiber_shim_*): rustc links a cdylib with a version script
 * that exports only Rust's #[no_mangle] items, so shim.rs defines the
 * exported execl, execlp, execle and clone, each a single jump here that
 * leaves registers and stack (the variadic arguments) untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* fork.rs: the fork sequence, split around the copy (see there). */
void *hiber_internal_fork_enter(void);
void hiber_internal_fork_child(void *fork);
void hiber_internal_fork_parent(void *fork, pid_t pid);
/* alloc.rs: keeps every thread out of the agent's allocator across a copy
 * (see clone below). Both are also pthread_atfork handlers. */
void hiber_internal_alloc_hold(void);
void hiber_internal_alloc_release(void);
void hiber_internal_wake(void);

#define HIDDEN __attribute__((visibility("hidden")))

/* ---- execl, execlp, execle --------------------------------------------
 *
 * These may run in a vfork child (in its parent's memory, with the
 * parent's locks in whatever state they were) or in a signal handler
 * (POSIX makes execle async-signal-safe): no malloc, no locks. The argument
 * vector is a variable-length array on this stack, as glibc's own execl*
 * build it, and the calls go to the exported execv/execvp/execve, which are
 * the agent's wrappers (this library comes before libc in the lookup
 * order): they put LD_PRELOAD and HIBER_* back into the environment and
 * call libc's. (Those wrappers allocate, from the agent's own allocator,
 * as they do when the program calls them directly.)
 *
 * The counting loops are glibc's (posix/execl.c): argv[0] is `arg`, the
 * variadic list is read up to and including its terminating NULL (so, as
 * in glibc, `arg` itself is never taken for the terminator), and more
 * than INT_MAX arguments fail with E2BIG. */

/* Number of variadic arguments before the terminating NULL, plus one for
 * `arg`; -1 (errno E2BIG) if that exceeds INT_MAX. `ap` is the caller's
 * copy, consumed. */
static ptrdiff_t count_args(va_list ap) {
    ptrdiff_t argc;
    for (argc = 1; va_arg(ap, const char *) != NULL; argc++) {
        if (argc == INT_MAX) {
            errno = E2BIG;
            return -1;
        }
    }
    return argc;
}

/* Declares `argv`, the array of `arg` and the variadic arguments up to and
 * including their NULL (on the stack: argc + 1 slots), and leaves `ap`
 * just past that NULL, still open; returns -1 from the enclosing function
 * on E2BIG. */
#define COLLECT_ARGV(argv, arg, ap)                                          \
    va_list ap, count_;                                                      \
    va_start(ap, arg);                                                       \
    va_copy(count_, ap);                                                     \
    ptrdiff_t argc_ = count_args(count_);                                    \
    va_end(count_);                                                          \
    if (argc_ < 0) {                                                         \
        va_end(ap);                                                          \
        return -1;                                                           \
    }                                                                        \
    char *argv[argc_ + 1];                                                   \
    argv[0] = (char *)(arg);                                                 \
    for (ptrdiff_t i_ = 1; i_ <= argc_; i_++) argv[i_] = va_arg(ap, char *)

HIDDEN int hiber_shim_execl(const char *path, const char *arg, ...) {
    COLLECT_ARGV(argv, arg, ap);
    va_end(ap);
    return execv(path, argv);
}

HIDDEN int hiber_shim_execlp(const char *file, const char *arg, ...) {
    COLLECT_ARGV(argv, arg, ap);
    va_end(ap);
    return execvp(file, argv);
}

HIDDEN int hiber_shim_execle(const char *path, const char *arg, ...) {
    COLLECT_ARGV(argv, arg, ap);
    /* The environment follows the NULL that ends the arguments. */
    char **envp = va_arg(ap, char **);
    va_end(ap);
    return execve(path, argv, envp);
}

/* ---- clone --------------------------------------------------------------
 *
 * glibc: int clone(int (*fn)(void *), void *stack, int flags, void *arg,
 *                  ... pid_t *parent_tid, void *tls, pid_t *child_tid);
 *
 * A child that shares memory, signal handlers, TLS or the descriptor table
 * with its parent is not a new process of the computation in the agent's
 * sense: threads (pthread_create does not come here, but raw users of
 * clone do), vfork-like children (CLONE_VM|CLONE_VFORK, as posix_spawn
 * makes them), a child that switches to its own TLS (agent code needs
 * glibc's), and a child sharing the descriptor table (joining would close
 * the parent's coordinator socket under it). Those go to glibc's clone
 * untouched. Every other clone is a fork on another stack, and gets the
 * fork wrapper's sequence (fork.rs): enter before the copy, the child
 * joins the computation before `fn` runs, the parent returns once it has.
 * The child joins on the stack the caller gave clone, before `fn`: that
 * takes some 6 KiB of it (measured: connecting, starting the checkpoint
 * thread), well within what a stack for `fn` has. */
#define SHARES_WITH_CHILD (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_SETTLS | CLONE_FILES)

typedef int (*clone_fn)(int (*)(void *), void *, int, void *, ...);

/* glibc's clone, resolved once. A racing first call resolves it twice to
 * the same value; the relaxed atomics only keep the pointer whole. */
static clone_fn real_clone(void) {
    static clone_fn real;
    clone_fn f = __atomic_load_n(&real, __ATOMIC_RELAXED);
    if (f == NULL) {
        f = (clone_fn)dlsym(RTLD_NEXT, "clone");
        __atomic_store_n(&real, f, __ATOMIC_RELAXED);
    }
    return f;
}

/* The whole signal mask (the kernel's 64-bit set), set and read with the
 * raw syscall: libc's sigprocmask is the agent's wrapper, which hides the
 * checkpoint signal, and glibc's refuses to block its own internal
 * signals; here the mask must be restored exactly as it was. */
static void set_mask(const uint64_t *set, uint64_t *old) {
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, set, old, sizeof *set);
}

/* What the child needs to start: the caller's function and argument, the
 * fork sequence in progress, the caller's signal mask, and whether the
 * parent held the allocator at the copy. */
struct clone_start {
    int (*fn)(void *);
    void *arg;
    void *fork;
    uint64_t mask;
    int held;
};

/* First code of a fork-like clone child, on the caller's stack `stack`,
 * with every signal blocked.
 *
 * `p` points to the parent's `struct clone_start`, on the parent's stack
 * in clone()'s frame. Without CLONE_VM the child has its own copy of the
 * parent's whole memory as it was at the copy, that frame included, so the
 * address is valid here and the struct is complete (it was filled in
 * before the copy); what the parent does with its own frame afterwards
 * (return, reuse it) is not seen here. The child runs on another stack, so
 * nothing here overwrites that copy either; it is copied out first anyway.
 *
 * glibc's clone would end the child with SYS_exit when `fn` returns, which
 * ends only the calling thread; here the child also has the agent's
 * checkpoint thread, so the process ends with _exit (exit_group), the
 * same status and, like SYS_exit, no atexit handlers or stdio flushing. */
static int clone_start(void *p) {
    struct clone_start start = *(const struct clone_start *)p;
    /* The allocator hold taken in the parent is this process's too. */
    if (start.held) hiber_internal_alloc_release();
    hiber_internal_fork_child(start.fork);
    set_mask(&start.mask, NULL);
    _exit(start.fn(start.arg));
}

/* The allocator hold is taken around fork too (pthread_atfork), so that a
 * fork in another thread, whose atfork handler holds dlmalloc's lock
 * (lib.rs), is never copied by a clone here with that lock taken.
 * Registered at the first fork-like clone, after lib.rs registered
 * dlmalloc's: prepare handlers run in reverse order of registration, so
 * fork takes the hold first, then dlmalloc's lock (the other order could
 * deadlock with a thread inside dlmalloc waiting for that lock). */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void register_atfork(void) {
    pthread_atfork(hiber_internal_alloc_hold, hiber_internal_alloc_release,
                   hiber_internal_alloc_release);
}

HIDDEN int hiber_shim_clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) {
    /* The optional arguments, read as far as the flags say the caller
     * passed them (callers pass them positionally: a later one implies the
     * earlier ones), as bionic's clone reads them: reading past what was
     * passed would read whatever lies on the caller's stack. The kernel
     * only looks at each when its flag is set, so NULL stands in for an
     * absent one. */
    pid_t *parent_tid = NULL, *child_tid = NULL;
    void *tls = NULL;
    va_list ap;
    va_start(ap, arg);
    if (flags & (CLONE_PARENT_SETTID | CLONE_PIDFD | CLONE_SETTLS | CLONE_CHILD_SETTID |
                 CLONE_CHILD_CLEARTID))
        parent_tid = va_arg(ap, pid_t *);
    if (flags & (CLONE_SETTLS | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID))
        tls = va_arg(ap, void *);
    if (flags & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID))
        child_tid = va_arg(ap, pid_t *);
    va_end(ap);

    clone_fn real = real_clone();
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (flags & SHARES_WITH_CHILD) {
        /* A thread made without pthread_create (CLONE_THREAD, or sharing
         * our memory while we run on: not a vfork): the checkpoint thread
         * must exist first, as before any second thread
         * (threads/dormant.rs). */
        if ((flags & CLONE_THREAD) || ((flags & CLONE_VM) && !(flags & CLONE_VFORK)))
            hiber_internal_wake();
        return real(fn, stack, flags, arg, parent_tid, tls, child_tid);
    }

    pthread_once(&atfork_once, register_atfork);
    struct clone_start start = {fn, arg, hiber_internal_fork_enter(), 0, 0};

    /* Every signal blocked across the copy, as glibc's posix_spawn and
     * musl's clone do: the child starts with them blocked until it has
     * joined, and no handler runs in this thread while it holds the
     * allocator (a handler calling an agent wrapper that allocates would
     * wait for itself). The checkpoint signal cannot be due meanwhile:
     * hiber_internal_fork_enter holds the wrapper gate. */
    uint64_t all = ~(uint64_t)0;
    set_mask(&all, &start.mask);

    /* No other thread inside the agent's allocator at the copy: fork gets
     * that from dlmalloc's pthread_atfork handler, clone runs no atfork
     * handlers. A copy taken while another thread (the checkpoint thread,
     * another wrapper) held dlmalloc's lock would leave it locked for ever
     * in the child, which allocates to join.
     *
     * Not with CLONE_VFORK: the parent then sleeps in clone until the
     * child execs or exits, which may take the child's `fn` any time and
     * may itself wait for a checkpoint that needs this process's
     * checkpoint thread to allocate. That case keeps the (narrow) race. */
    start.held = !(flags & CLONE_VFORK);
    if (start.held) hiber_internal_alloc_hold();
    int pid = real(clone_start, stack, flags, &start, parent_tid, tls, child_tid);
    int err = errno;
    if (start.held) hiber_internal_alloc_release();
    set_mask(&start.mask, NULL);
    /* Also with -1 (nothing was copied): it ends the sequence. It may
     * change errno, which is the clone's to report. */
    hiber_internal_fork_parent(start.fork, pid);
    errno = err;
    return pid;
}
