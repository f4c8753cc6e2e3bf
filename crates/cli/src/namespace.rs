//! Restarting with the same process and thread ids (the default; `hiber
//! restart --new-ids` opts out).
//!
//! With CAP_CHECKPOINT_RESTORE (root), when every original pid and tid is
//! free, each restorer is started with its original pid in the current pid
//! namespace ([`spawn_with_pid`]), and the agent gives every thread its
//! original tid; an id another process takes between that check and the
//! clone is replaced by a new one, with a warning from the agent. When an
//! id is taken already, or without the capability:
//!
//! The kernel lets a process choose the pid of a child, and the tid of a
//! thread, with `clone3(set_tid)`, given CAP_CHECKPOINT_RESTORE over the pid
//! namespace. An unprivileged user gets that in a pid namespace it creates
//! inside its own user namespace, where every pid is free. So the restart
//! runs there: `hiber restart` forks a child that enters a new user, pid and
//! mount namespace (mapping only its own uid and gid, so the program sees
//! the same ids), forks the namespace's init, which mounts a /proc of the new
//! namespace and starts every restorer with its original pid, carrying
//! CAP_CHECKPOINT_RESTORE as an ambient capability so the agent can give
//! each thread its original tid (it drops the capability before the program
//! runs again). With the same ids, everything the kernel or glibc keyed on
//! them stays right: `struct pthread` tids, error-checking and recursive
//! mutex owners, `/proc/<pid>` and `/proc/self/task/<tid>` paths, signals.
//!
//! Between `fork` and `execve` only async-signal-safe calls are made, on data
//! prepared before the fork.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

use anyhow::{Context, bail};
use hiber_sys::CloneArgs;

/// One restorer to start: its plan descriptor, the descriptors it
/// inherits, and the pid it must have.
pub struct Launch {
    pub plan_fd: RawFd,
    pub keep: Vec<RawFd>,
    pub pid: i32,
}

const CAP_CHECKPOINT_RESTORE: u32 = 40;
const EXIT_NO_USERNS: i32 = 120;
const EXIT_NO_MAPS: i32 = 121;
const EXIT_NO_PIDNS: i32 = 122;
const EXIT_NO_PROC: i32 = 123;
const EXIT_PID_TAKEN: i32 = 124;
const EXIT_NO_EXEC: i32 = 125;

/// Writes `data` to `path` (async-signal-safe).
fn write_file(path: &CString, data: &[u8]) -> bool {
    // SAFETY: open/write/close with valid pointers.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, data.as_ptr().cast(), data.len()) == data.len() as isize;
        libc::close(fd);
        ok
    }
}

/// Moves this (single-threaded) process into a user namespace of its own
/// where our uid and gid map to themselves: an unprivileged user then holds
/// every capability over the namespaces it creates next (an IPC namespace
/// whose `*_next_id` it may set, `sysv.rs`).
pub fn enter_user_namespace() -> anyhow::Result<()> {
    // SAFETY: plain id queries.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: unshare affects only this process.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWUSER)");
    }
    let _ = write_file(&CString::new("/proc/self/setgroups")?, b"deny");
    for (path, id) in [("/proc/self/uid_map", uid), ("/proc/self/gid_map", gid)] {
        if !write_file(&CString::new(path)?, format!("{id} {id} 1\n").as_bytes()) {
            bail!("cannot write {path}");
        }
    }
    Ok(())
}

/// Turns an init exit status into the process's wait status semantics of
/// `hiber restart`: the root's exit code, or 128 + its signal.
fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Why a namespace restart could not even start (nothing ran yet, so the
/// caller may fall back to new ids).
pub fn setup_failed(e: &anyhow::Error) -> bool {
    e.to_string().starts_with(SETUP_PREFIX)
}
const SETUP_PREFIX: &str = "same ids unavailable: ";

/// Starts a restorer as a child with pid `l.pid` in our own pid namespace
/// (needs CAP_CHECKPOINT_RESTORE, e.g. root). `Ok(None)` if that pid is
/// taken or not allowed: the caller starts it with a new pid instead.
pub fn spawn_with_pid(restorer: &Path, l: &Launch) -> anyhow::Result<Option<i32>> {
    let exe = CString::new(restorer.as_os_str().as_encoded_bytes()).context("restorer path")?;
    let plan = CString::new(l.plan_fd.to_string())?;
    let argv = [exe.as_ptr(), plan.as_ptr(), std::ptr::null()];
    let tid: libc::pid_t = l.pid;
    let mut args = CloneArgs::process_with_pid(&tid);
    // Clone3 without CLONE_VM is a fork; the child only makes
    // async-signal-safe calls on data prepared above, then execs.
    // SAFETY: see just above.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Ok(None);
    }
    if pid == 0 {
        // SAFETY: in the child, see above.
        unsafe {
            for &fd in &l.keep {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            libc::fcntl(l.plan_fd, libc::F_SETFD, 0);
            libc::execve(exe.as_ptr(), argv.as_ptr(), environ_ptr());
            libc::_exit(EXIT_NO_EXEC);
        }
    }
    Ok(Some(pid as i32))
}

/// Starts the restorers in a new namespace; returns the root process's
/// exit code (128 + signal if it was killed).
/// `started` runs once every restorer has been started (our copies of the
/// descriptors handed to them can go: a pipe end kept here would keep its
/// reader from end-of-file for the whole run); if the namespace could not be
/// set up it does not run, and the caller may start them otherwise.
pub fn restart_in_namespace(
    restorer: &Path,
    launches: &[Launch],
    started: &mut dyn FnMut(),
) -> anyhow::Result<i32> {
    if launches.is_empty() {
        bail!("nothing to restart");
    }
    // The namespace's init writes one byte here once every restorer runs.
    let mut status = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `status`.
    if unsafe { libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    let [status_r, status_w] = status;
    let exe = CString::new(restorer.as_os_str().as_encoded_bytes()).context("restorer path")?;
    let plan_args: Vec<CString> = launches
        .iter()
        .map(|l| CString::new(l.plan_fd.to_string()))
        .collect::<Result<_, _>>()?;
    let argvs: Vec<[*const libc::c_char; 3]> = plan_args
        .iter()
        .map(|a| [exe.as_ptr(), a.as_ptr(), std::ptr::null()])
        .collect();
    // SAFETY: plain id queries.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{uid} {uid} 1\n");
    let gid_map = format!("{gid} {gid} 1\n");
    let setgroups = CString::new("/proc/self/setgroups")?;
    let uid_path = CString::new("/proc/self/uid_map")?;
    let gid_path = CString::new("/proc/self/gid_map")?;
    let proc_s = CString::new("proc")?;
    let proc_dir = CString::new("/proc")?;
    let root = CString::new("/")?;

    // Fork; the child only makes async-signal-safe calls on the
    // data prepared above and never returns.
    // SAFETY: see just above.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if child == 0 {
        // SAFETY: we are the forked child; see above.
        unsafe {
            libc::close(status_r);
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(EXIT_NO_USERNS);
            }
            let _ = write_file(&setgroups, b"deny");
            if !write_file(&uid_path, uid_map.as_bytes())
                || !write_file(&gid_path, gid_map.as_bytes())
            {
                libc::_exit(EXIT_NO_MAPS);
            }
            if libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) != 0 {
                libc::_exit(EXIT_NO_PIDNS);
            }
            let init = libc::fork();
            if init < 0 {
                libc::_exit(EXIT_NO_PIDNS);
            }
            if init == 0 {
                namespace_init(&root, &proc_s, &proc_dir, &exe, &argvs, launches, status_w);
            }
            libc::close(status_w);
            // The restore descriptors are the restorers' business now (a
            // pipe end held here would keep its reader from end-of-file).
            close_launch_fds(launches);
            let mut st = 0;
            while libc::waitpid(init, &mut st, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(1);
                }
            }
            libc::_exit(exit_code(st));
        }
    }
    // SAFETY: our copy of the write end; then a blocking one-byte read.
    let ok = unsafe {
        libc::close(status_w);
        let mut b = 0u8;
        let n = loop {
            let n = libc::read(status_r, (&mut b as *mut u8).cast(), 1);
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        libc::close(status_r);
        n == 1
    };
    if ok {
        started();
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(child, &mut st, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            bail!(
                "waiting for the restart namespace: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    let code = exit_code(st);
    match code {
        EXIT_NO_USERNS => bail!(
            "--same-ids: cannot create a user namespace (are unprivileged user namespaces disabled?)"
        ),
        EXIT_NO_MAPS => bail!("--same-ids: cannot write the user namespace's uid/gid maps"),
        EXIT_NO_PIDNS => bail!("--same-ids: cannot create a pid and mount namespace"),
        EXIT_NO_PROC => bail!("--same-ids: cannot mount /proc for the new pid namespace"),
        EXIT_PID_TAKEN => bail!(
            "--same-ids: cannot give a process its original pid (kernel without clone3 set_tid?)"
        ),
        EXIT_NO_EXEC => bail!("--same-ids: cannot run {}", restorer.display()),
        c => Ok(c),
    }
}

/// pid 1 of the new namespace: mount its /proc, start every restorer with
/// its original pid, reap, and exit with the root process's status.
///
/// # Safety
/// Only in the forked child, as described in the module docs.
unsafe fn namespace_init(
    root: &CString,
    proc_s: &CString,
    proc_dir: &CString,
    exe: &CString,
    argvs: &[[*const libc::c_char; 3]],
    launches: &[Launch],
    status_w: libc::c_int,
) -> ! {
    // SAFETY: async-signal-safe calls on prepared data (module docs).
    unsafe {
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
            || libc::mount(
                proc_s.as_ptr(),
                proc_dir.as_ptr(),
                proc_s.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
        {
            libc::_exit(EXIT_NO_PROC);
        }
        let mut root_pid = 0;
        for (i, l) in launches.iter().enumerate() {
            let tid: libc::pid_t = l.pid;
            let mut args = CloneArgs::process_with_pid(&tid);
            let pid = libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            );
            if pid < 0 {
                libc::_exit(EXIT_PID_TAKEN);
            }
            if pid == 0 {
                for &fd in &l.keep {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                libc::fcntl(l.plan_fd, libc::F_SETFD, 0);
                raise_ambient(CAP_CHECKPOINT_RESTORE);
                libc::execve(exe.as_ptr(), argvs[i].as_ptr(), environ_ptr());
                libc::_exit(EXIT_NO_EXEC);
            }
            if i == 0 {
                root_pid = pid as libc::pid_t;
            }
        }
        close_launch_fds(launches);
        // Every restorer runs: `hiber restart` may drop its copies.
        libc::write(status_w, b"1".as_ptr().cast(), 1);
        libc::close(status_w);
        let mut root_status = 0;
        loop {
            let mut st = 0;
            let p = libc::waitpid(-1, &mut st, 0);
            if p < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if p == root_pid {
                root_status = st;
                // The computation ends with its root process.
                break;
            }
        }
        libc::_exit(exit_code(root_status))
    }
}

/// Closes every descriptor handed to the restorers (async-signal-safe).
fn close_launch_fds(launches: &[Launch]) {
    for l in launches {
        // SAFETY: plain close of descriptor numbers.
        unsafe { libc::close(l.plan_fd) };
        for &fd in &l.keep {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
}

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

fn environ_ptr() -> *const *const libc::c_char {
    // SAFETY: reading the libc global.
    unsafe { environ }
}

/// Puts `cap` into the inheritable and ambient sets, so it survives execve.
///
/// # Safety
/// Async-signal-safe system calls only.
unsafe fn raise_ambient(cap: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget/capset with the v3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) != 0 {
            return;
        }
        d[(cap / 32) as usize].inheritable |= 1 << (cap % 32);
        if libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) != 0 {
            return;
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE,
            cap as libc::c_ulong,
            0,
            0,
        );
    }
}
