//! libc functions wrapped so that a checkpoint stays invisible.
//!
//! The checkpoint signal interrupts blocking calls. `SA_RESTART` makes the
//! kernel restart most of them, but sleeps and waits with a timeout return
//! `EINTR` whenever a handler ran (and a restarted process resumes right
//! after such a return). These wrappers retry when the interruption was a
//! checkpoint (the checkpoint epoch changed during the call), with the
//! remaining time where the call reports it. A real signal still returns
//! `EINTR` to the program.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::Ordering::*;

use crate::next::real;
use crate::threads::suspend::EPOCH;

fn epoch() -> u64 {
    EPOCH.load(Acquire)
}

fn errno() -> c_int {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

type NanosleepFn = unsafe extern "C" fn(*const libc::timespec, *mut libc::timespec) -> c_int;
type ClockNanosleepFn = unsafe extern "C" fn(
    libc::clockid_t,
    c_int,
    *const libc::timespec,
    *mut libc::timespec,
) -> c_int;
type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
type PpollFn = unsafe extern "C" fn(
    *mut libc::pollfd,
    libc::nfds_t,
    *const libc::timespec,
    *const libc::sigset_t,
) -> c_int;
type SelectFn = unsafe extern "C" fn(
    c_int,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::fd_set,
    *mut libc::timeval,
) -> c_int;
type EpollWaitFn = unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int) -> c_int;
type EpollPwaitFn = unsafe extern "C" fn(
    c_int,
    *mut libc::epoll_event,
    c_int,
    c_int,
    *const libc::sigset_t,
) -> c_int;
type PauseFn = unsafe extern "C" fn() -> c_int;
type SigsuspendFn = unsafe extern "C" fn(*const libc::sigset_t) -> c_int;

/// # Safety
/// Same contract as libc's `nanosleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int {
    let f = real!("nanosleep", NanosleepFn);
    let mut left = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut cur = req;
    loop {
        let before = epoch();
        // SAFETY: forwarded arguments; `left` outlives the call.
        let r = unsafe { f(cur, &mut left) };
        if r == -1 && errno() == libc::EINTR && epoch() != before {
            cur = &left;
            continue;
        }
        if r == -1 && !rem.is_null() {
            // SAFETY: caller-provided out pointer.
            unsafe { *rem = left };
        }
        return r;
    }
}

/// # Safety
/// Same contract as libc's `clock_nanosleep`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const libc::timespec,
    rem: *mut libc::timespec,
) -> c_int {
    let f = real!("clock_nanosleep", ClockNanosleepFn);
    let mut left = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut cur = req;
    loop {
        let before = epoch();
        // SAFETY: forwarded arguments.
        let r = unsafe { f(clock, flags, cur, &mut left) };
        if r == libc::EINTR && epoch() != before {
            if flags & libc::TIMER_ABSTIME == 0 {
                cur = &left;
            }
            continue;
        }
        if r == libc::EINTR && !rem.is_null() {
            // SAFETY: caller-provided out pointer.
            unsafe { *rem = left };
        }
        return r;
    }
}

/// glibc's `sleep` calls its internal nanosleep, which we cannot see, so it
/// is reimplemented on top of the wrapper above.
///
/// # Safety
/// Always safe; `unsafe` only for the C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    let req = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let mut rem = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointers to locals.
    if unsafe { nanosleep(&req, &mut rem) } == 0 {
        0
    } else {
        (rem.tv_sec + i64::from(rem.tv_nsec > 0)) as c_uint
    }
}

/// # Safety
/// Always safe; `unsafe` only for the C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn usleep(usec: libc::useconds_t) -> c_int {
    let req = libc::timespec {
        tv_sec: (usec / 1_000_000) as libc::time_t,
        tv_nsec: (usec % 1_000_000) as i64 * 1000,
    };
    // SAFETY: valid pointer to a local; rem may be null.
    unsafe { nanosleep(&req, std::ptr::null_mut()) }
}

macro_rules! retry_on_checkpoint {
    ($call:expr) => {{
        loop {
            let before = epoch();
            let r = $call;
            if r == -1 && errno() == libc::EINTR && epoch() != before {
                continue;
            }
            break r;
        }
    }};
}

/// # Safety
/// Same contract as libc's `poll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout: c_int) -> c_int {
    let f = real!("poll", PollFn);
    // SAFETY: forwarded arguments.
    retry_on_checkpoint!(unsafe { f(fds, n, timeout) })
}

/// # Safety
/// Same contract as libc's `ppoll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    ts: *const libc::timespec,
    mask: *const libc::sigset_t,
) -> c_int {
    let f = real!("ppoll", PpollFn);
    // SAFETY: forwarded arguments.
    retry_on_checkpoint!(unsafe { f(fds, n, ts, mask) })
}

/// # Safety
/// Same contract as libc's `select` (Linux updates the timeout in place,
/// so a retry waits only for what is left).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn select(
    n: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    t: *mut libc::timeval,
) -> c_int {
    let f = real!("select", SelectFn);
    // SAFETY: forwarded arguments.
    retry_on_checkpoint!(unsafe { f(n, r, w, e, t) })
}

/// # Safety
/// Same contract as libc's `epoll_wait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    ep: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    let f = real!("epoll_wait", EpollWaitFn);
    // SAFETY: forwarded arguments.
    retry_on_checkpoint!(unsafe { f(ep, ev, max, timeout) })
}

/// # Safety
/// Same contract as libc's `epoll_pwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    ep: c_int,
    ev: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
    mask: *const libc::sigset_t,
) -> c_int {
    let f = real!("epoll_pwait", EpollPwaitFn);
    // SAFETY: forwarded arguments.
    retry_on_checkpoint!(unsafe { f(ep, ev, max, timeout, mask) })
}

/// # Safety
/// Same contract as libc's `pause`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pause() -> c_int {
    let f = real!("pause", PauseFn);
    // SAFETY: no arguments.
    retry_on_checkpoint!(unsafe { f() })
}

/// # Safety
/// Same contract as libc's `sigsuspend`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigsuspend(mask: *const libc::sigset_t) -> c_int {
    let f = real!("sigsuspend", SigsuspendFn);
    let filtered = crate::signals::sigsuspend_mask(mask);
    let mask = filtered
        .as_ref()
        .map_or(mask, |m| m as *const libc::sigset_t);
    // SAFETY: forwarded argument.
    retry_on_checkpoint!(unsafe { f(mask) })
}

#[allow(dead_code)]
fn _assert_ptr_size(_: *mut c_void) {}

// ---- gated wrappers (see gate.rs) ------------------------------------------

type PthreadCreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut c_void) -> *mut c_void,
    *mut c_void,
) -> c_int;
type ForkFn = unsafe extern "C" fn() -> libc::pid_t;
type ExecveFn = unsafe extern "C" fn(
    *const libc::c_char,
    *const *const libc::c_char,
    *const *const libc::c_char,
) -> c_int;
type FexecveFn =
    unsafe extern "C" fn(c_int, *const *const libc::c_char, *const *const libc::c_char) -> c_int;
type DlopenFn = unsafe extern "C" fn(*const libc::c_char, c_int) -> *mut c_void;
type DlcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// # Safety
/// Same contract as libc's `pthread_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: extern "C" fn(*mut c_void) -> *mut c_void,
    arg: *mut c_void,
) -> c_int {
    let f = real!("pthread_create", PthreadCreateFn);
    // A second thread ends what makes it safe to start the checkpoint
    // thread from the signal handler (`threads::dormant`).
    crate::threads::dormant::wake();
    let _pass = crate::gate::Pass::enter();
    // SAFETY: forwarded arguments.
    unsafe { f(thread, attr, start, arg) }
}

/// # Safety
/// Same contract as libc's `fork`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    let f = real!("fork", ForkFn);
    let fork = crate::fork::Fork::enter();
    // SAFETY: no arguments.
    let pid = unsafe { f() };
    if pid == 0 {
        fork.child();
    } else {
        fork.parent(pid);
    }
    pid
}

/// glibc's `forkpty` forks through its internal `__fork`, which no
/// preloaded `fork` replaces: the child would run outside the computation.
/// This is `forkpty` again, on `openpty` and `login_tty`, forking through
/// our [`fork`].
///
/// # Safety
/// Same contract as libc's `forkpty`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn forkpty(
    amaster: *mut c_int,
    name: *mut libc::c_char,
    termp: *const libc::termios,
    winp: *const libc::winsize,
) -> libc::pid_t {
    let (mut m, mut s) = (-1, -1);
    // the caller's name, termios and window size, as openpty takes
    // them; the two descriptors land in our locals.
    // SAFETY: see just above.
    if unsafe { libc::openpty(&mut m, &mut s, name, termp, winp) } < 0 {
        return -1;
    }
    // our fork wrapper; the descriptors are the pair just opened,
    // `amaster` is the caller's.
    // SAFETY: see just above.
    unsafe {
        match fork() {
            -1 => {
                libc::close(m);
                libc::close(s);
                -1
            }
            0 => {
                libc::close(m);
                if libc::login_tty(s) < 0 {
                    libc::_exit(1);
                }
                0
            }
            pid => {
                *amaster = m;
                libc::close(s);
                pid
            }
        }
    }
}

/// # Safety
/// Same contract as libc's `execve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> c_int {
    let f = real!("execve", ExecveFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: `path` and `envp` as the caller passed them.
    let prep = unsafe { crate::exec::prepare(envp, crate::exec::Target::Path(path)) };
    // SAFETY: forwarded arguments (or the same environment with the agent's variables added).
    let r = unsafe { f(path, argv, prep.envp(envp)) };
    prep.failed();
    r
}

/// # Safety
/// Same contract as libc's `execv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
) -> c_int {
    let f = real!("execve", ExecveFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: `path` as the caller passed it; `environ` is the process's environment.
    let prep = unsafe { crate::exec::prepare(environ, crate::exec::Target::Path(path)) };
    // SAFETY: forwarded arguments, with the (amended) environment.
    let r = unsafe { f(path, argv, prep.envp(environ)) };
    prep.failed();
    r
}

/// # Safety
/// Same contract as libc's `execvp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(
    file: *const libc::c_char,
    argv: *const *const libc::c_char,
) -> c_int {
    let f = real!("execvpe", ExecveFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: `file` as the caller passed it; `environ` is the process's environment.
    let prep = unsafe { crate::exec::prepare(environ, crate::exec::Target::Search(file)) };
    // SAFETY: forwarded arguments, with the (amended) environment.
    let r = unsafe { f(file, argv, prep.envp(environ)) };
    prep.failed();
    r
}

/// # Safety
/// Same contract as libc's `execvpe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> c_int {
    let f = real!("execvpe", ExecveFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: `file` and `envp` as the caller passed them.
    let prep = unsafe { crate::exec::prepare(envp, crate::exec::Target::Search(file)) };
    // SAFETY: forwarded arguments.
    let r = unsafe { f(file, argv, prep.envp(envp)) };
    prep.failed();
    r
}

/// # Safety
/// Same contract as libc's `fexecve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> c_int {
    let f = real!("fexecve", FexecveFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: `envp` as the caller passed it.
    let prep = unsafe { crate::exec::prepare(envp, crate::exec::Target::Fd(fd)) };
    // SAFETY: forwarded arguments.
    let r = unsafe { f(fd, argv, prep.envp(envp)) };
    prep.failed();
    r
}

type PosixSpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const libc::c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *mut libc::c_char,
    *const *mut libc::c_char,
) -> c_int;

/// # Safety
/// Same contract as libc's `posix_spawn`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const libc::c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
) -> c_int {
    let f = real!("posix_spawn", PosixSpawnFn);
    // SAFETY: `envp` as the caller passed it.
    let env = unsafe { crate::exec::with_agent(envp.cast()) };
    let envp = env.as_ref().map_or(envp, |e| e.as_ptr().cast());
    // SAFETY: forwarded arguments.
    unsafe { f(pid, path, actions, attr, argv, envp) }
}

/// # Safety
/// Same contract as libc's `posix_spawnp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const libc::c_char,
    actions: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
) -> c_int {
    let f = real!("posix_spawnp", PosixSpawnFn);
    // SAFETY: `envp` as the caller passed it.
    let env = unsafe { crate::exec::with_agent(envp.cast()) };
    let envp = env.as_ref().map_or(envp, |e| e.as_ptr().cast());
    // SAFETY: forwarded arguments.
    unsafe { f(pid, file, actions, attr, argv, envp) }
}

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

/// # Safety
/// Same contract as libc's `dlopen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(file: *const libc::c_char, mode: c_int) -> *mut c_void {
    let f = real!("dlopen", DlopenFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: forwarded arguments.
    unsafe { f(file, mode) }
}

/// # Safety
/// Same contract as libc's `dlclose`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    let f = real!("dlclose", DlcloseFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: forwarded argument.
    unsafe { f(handle) }
}

type InotifyAddWatchFn = unsafe extern "C" fn(c_int, *const libc::c_char, u32) -> c_int;
type InotifyRmWatchFn = unsafe extern "C" fn(c_int, c_int) -> c_int;

/// The kernel does not tell a watch's path afterwards (`fd/inotify.rs`):
/// the agent records it here.
///
/// # Safety
/// Same contract as libc's `inotify_add_watch`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_add_watch(
    fd: c_int,
    path: *const libc::c_char,
    mask: u32,
) -> c_int {
    let f = real!("inotify_add_watch", InotifyAddWatchFn);
    // Inside the wrapper lock, so no checkpoint happens between the call
    // and the record, and no thread is stopped holding the table.
    let _pass = crate::gate::Pass::enter();
    // SAFETY: forwarded arguments.
    let wd = unsafe { f(fd, path, mask) };
    if wd >= 0 && !path.is_null() {
        let e = errno();
        // SAFETY: the call succeeded, so `path` is a NUL-terminated string.
        let p = unsafe { std::ffi::CStr::from_ptr(path) };
        crate::fd::inotify::record(fd, p, mask, wd);
        // SAFETY: restores this thread's errno.
        unsafe { *libc::__errno_location() = e };
    }
    wd
}

/// # Safety
/// Same contract as libc's `inotify_rm_watch`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_rm_watch(fd: c_int, wd: c_int) -> c_int {
    let f = real!("inotify_rm_watch", InotifyRmWatchFn);
    let _pass = crate::gate::Pass::enter();
    // SAFETY: forwarded arguments.
    let r = unsafe { f(fd, wd) };
    if r == 0 {
        crate::fd::inotify::forget(fd, wd);
    }
    r
}

// System V IPC: the ids the program obtains are recorded, so that a
// checkpoint saves those objects (`state/sysvipc.rs`).

type ShmgetFn = unsafe extern "C" fn(libc::key_t, libc::size_t, c_int) -> c_int;
type ShmatFn = unsafe extern "C" fn(c_int, *const c_void, c_int) -> *mut c_void;
type SemgetFn = unsafe extern "C" fn(libc::key_t, c_int, c_int) -> c_int;
type MsggetFn = unsafe extern "C" fn(libc::key_t, c_int) -> c_int;

/// # Safety
/// Same contract as libc's `shmget`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmget(key: libc::key_t, size: libc::size_t, flags: c_int) -> c_int {
    let f = real!("shmget", ShmgetFn);
    // SAFETY: forwarded arguments.
    let id = unsafe { f(key, size, flags) };
    crate::state::sysvipc::SHM_IDS.record(id);
    id
}

/// # Safety
/// Same contract as libc's `shmat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmat(id: c_int, addr: *const c_void, flags: c_int) -> *mut c_void {
    let f = real!("shmat", ShmatFn);
    // SAFETY: forwarded arguments.
    let p = unsafe { f(id, addr, flags) };
    if p as isize != -1 {
        crate::state::sysvipc::SHM_IDS.record(id);
    }
    p
}

/// # Safety
/// Same contract as libc's `semget`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semget(key: libc::key_t, nsems: c_int, flags: c_int) -> c_int {
    let f = real!("semget", SemgetFn);
    // SAFETY: forwarded arguments.
    let id = unsafe { f(key, nsems, flags) };
    crate::state::sysvipc::SEM_IDS.record(id);
    id
}

/// # Safety
/// Same contract as libc's `msgget`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msgget(key: libc::key_t, flags: c_int) -> c_int {
    let f = real!("msgget", MsggetFn);
    // SAFETY: forwarded arguments.
    let id = unsafe { f(key, flags) };
    crate::state::sysvipc::MSG_IDS.record(id);
    id
}

// `semop`, `semtimedop`, `msgsnd` and `msgrcv` are never restarted after a
// signal handler, whatever `SA_RESTART` says (signal(7)): retried here when
// the handler was the checkpoint's. (`semtimedop` waits its full timeout
// again: the kernel does not report the time left.)

type SemopFn = unsafe extern "C" fn(c_int, *mut libc::sembuf, libc::size_t) -> c_int;
type SemtimedopFn =
    unsafe extern "C" fn(c_int, *mut libc::sembuf, libc::size_t, *const libc::timespec) -> c_int;
type MsgsndFn = unsafe extern "C" fn(c_int, *const c_void, libc::size_t, c_int) -> c_int;
type MsgrcvFn =
    unsafe extern "C" fn(c_int, *mut c_void, libc::size_t, libc::c_long, c_int) -> libc::ssize_t;

/// Runs `call` again while it fails with `EINTR` because of a checkpoint.
fn retry_checkpoint<T: PartialEq + From<i8>>(mut call: impl FnMut() -> T) -> T {
    loop {
        let before = epoch();
        let r = call();
        if r == T::from(-1) && errno() == libc::EINTR && epoch() != before {
            continue;
        }
        return r;
    }
}

/// # Safety
/// Same contract as libc's `semop`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semop(id: c_int, ops: *mut libc::sembuf, n: libc::size_t) -> c_int {
    let f = real!("semop", SemopFn);
    // SAFETY: forwarded arguments.
    retry_checkpoint(|| unsafe { f(id, ops, n) })
}

/// # Safety
/// Same contract as libc's `semtimedop`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semtimedop(
    id: c_int,
    ops: *mut libc::sembuf,
    n: libc::size_t,
    timeout: *const libc::timespec,
) -> c_int {
    let f = real!("semtimedop", SemtimedopFn);
    // SAFETY: forwarded arguments.
    retry_checkpoint(|| unsafe { f(id, ops, n, timeout) })
}

/// # Safety
/// Same contract as libc's `msgsnd`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msgsnd(
    id: c_int,
    msg: *const c_void,
    size: libc::size_t,
    flags: c_int,
) -> c_int {
    let f = real!("msgsnd", MsgsndFn);
    // SAFETY: forwarded arguments.
    retry_checkpoint(|| unsafe { f(id, msg, size, flags) })
}

/// # Safety
/// Same contract as libc's `msgrcv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msgrcv(
    id: c_int,
    msg: *mut c_void,
    size: libc::size_t,
    typ: libc::c_long,
    flags: c_int,
) -> libc::ssize_t {
    let f = real!("msgrcv", MsgrcvFn);
    // SAFETY: forwarded arguments.
    retry_checkpoint(|| unsafe { f(id, msg, size, typ, flags) })
}

type SetsockoptFn =
    unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int;

/// A TCP socket's buffer sizes grow by themselves until the program sets
/// one, and the kernel does not tell afterwards whether it did
/// (`fd/inet.rs`): the agent notes `SO_SNDBUF`/`SO_RCVBUF` here.
///
/// # Safety
/// Same contract as libc's `setsockopt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: libc::socklen_t,
) -> c_int {
    let f = real!("setsockopt", SetsockoptFn);
    // SAFETY: forwarded arguments.
    let r = unsafe { f(fd, level, name, value, len) };
    if r == 0
        && level == libc::SOL_SOCKET
        && (name == libc::SO_SNDBUF || name == libc::SO_RCVBUF)
        && !value.is_null()
        && len as usize >= std::mem::size_of::<c_int>()
    {
        let e = errno();
        // the call succeeded, so `value` points to at least `len`
        // ≥ 4 readable bytes; they need not be aligned.
        // SAFETY: see just above.
        let v = unsafe { value.cast::<c_int>().read_unaligned() };
        crate::fd::inet::note_setsockopt(fd, level, name, v);
        // SAFETY: restores this thread's errno.
        unsafe { *libc::__errno_location() = e };
    }
    r
}
