//! File descriptors. The kernel tells almost everything at checkpoint time
//! (`/proc/self/fd` links, `fcntl` flags, `lseek` offsets, `fstat`), so
//! nothing is tracked while the program runs.
//!
//! At restart, fds 0–2 that were terminals, pipes or sockets to something
//! outside the computation, or files that cannot be opened again here,
//! are bound to `hiber restart`'s own stdio (they are inherited through the
//! restorer); every other fd is recreated at its
//! number, and fds the process did not have are closed. Kinds that cannot
//! be recreated (kernel objects of unknown kinds, netlink sockets, sockets
//! to outside) get a placeholder at their number and a warning
//! ([`placeholder`]); `O_PATH` descriptors are reopened as such.
//!
//! Kernel objects without a path (`anon_inode:`) are recreated from what
//! `/proc/self/fdinfo/N` tells: eventfd, timerfd, signalfd, epoll and
//! inotify each have a module named after them. epoll registrations are
//! added last, once every descriptor they name is back.

mod epoll;
mod eventfd;
mod file;
pub mod inet;
pub mod inotify;
mod mqueue;
mod pipe;
pub mod pty;
mod signalfd;
mod socket;
pub mod tcp;
mod timerfd;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use hiber_image::meta::{FdKind, FdMeta};
use hiber_protocol::handoff::{InheritedFile, InheritedPipe, InheritedPty, InheritedSocket};

/// Lowest number for the agent's own descriptors, out of the program's way
/// (the program's first `open` must get the number it would without us).
pub const AGENT_FD_BASE: i32 = 900;

pub fn save(exclude: &[i32]) -> Vec<FdMeta> {
    let mut fds: Vec<i32> = crate::procfs::numeric_entries(c"/proc/self/fd")
        .into_iter()
        .map(|f| f as i32)
        .collect();
    // The directory handle used for the listing is closed by now, so its
    // number fails below and is skipped.
    fds.sort_unstable();
    let mut out: Vec<FdMeta> = fds
        .into_iter()
        .filter(|fd| !exclude.contains(fd))
        .filter_map(save_one)
        .collect();
    // Descriptors sharing one open file description (dup, 2>&1) are
    // restored as duplicates of the lowest of them.
    for i in 0..out.len() {
        if let Some(j) =
            (0..i).find(|&j| out[j].dup_of.is_none() && same_description(out[j].fd, out[i].fd))
        {
            out[i].dup_of = Some(out[j].fd);
        }
    }
    share_with_children(&mut out);
    out
}

/// Records which of our regular files our children have too, as the same
/// open file description (`kcmp`, which a parent may always use on its
/// children). Every process of the computation is stopped now, so the
/// children's descriptor tables are still.
fn share_with_children(out: &mut [FdMeta]) {
    let files: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].dup_of.is_none() && matches!(out[i].kind, FdKind::File { .. }))
        .collect();
    if files.is_empty() {
        return;
    }
    let pid = hiber_sys::getpid();
    for child in children() {
        for cfd in crate::procfs::numeric_entries(&proc_fd_dir(child)) {
            let cfd = cfd as i32;
            let is_path = std::fs::read_link(format!("/proc/{child}/fd/{cfd}"))
                .is_ok_and(|l| l.is_absolute());
            if !is_path {
                continue;
            }
            for &i in &files {
                if kcmp_file(pid, out[i].fd, child, cfd) {
                    out[i].shared_with.push((child, cfd));
                    break;
                }
            }
        }
    }
}

/// This process's children (of every thread).
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    for tid in crate::procfs::numeric_entries(c"/proc/self/task") {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

fn proc_fd_dir(pid: u32) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/{pid}/fd")).unwrap_or_default()
}

/// `kcmp(KCMP_FILE)` across two processes.
fn kcmp_file(pid1: u32, fd1: i32, pid2: u32, fd2: i32) -> bool {
    const KCMP_FILE: i64 = 0;
    // SAFETY: kcmp only compares kernel objects; no memory involved.
    unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            i64::from(pid1),
            i64::from(pid2),
            KCMP_FILE,
            i64::from(fd1),
            i64::from(fd2),
        ) == 0
    }
}

/// `kcmp(KCMP_FILE)`: whether two of our descriptors are one open file
/// description.
fn same_description(a: i32, b: i32) -> bool {
    const KCMP_FILE: i64 = 0;
    let pid = i64::from(hiber_sys::getpid());
    // SAFETY: kcmp only compares kernel objects of our own process.
    unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            i64::from(a),
            i64::from(b),
        ) == 0
    }
}

/// `/proc/self/fdinfo/N`.
fn fdinfo(fd: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()
}

/// The value of the first fdinfo line starting with `key` (trimmed).
fn field<'a>(fdinfo: &'a str, key: &str) -> Option<&'a str> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// The kinds without a path, told by their `anon_inode:` link; `None` for
/// one we do not know (or whose fdinfo did not parse).
fn save_anon(fd: i32, link: &str, flags: i32) -> Option<FdKind> {
    match link.strip_prefix("anon_inode:")? {
        "[eventfd]" => eventfd::save(fd, flags),
        "[timerfd]" => timerfd::save(fd, flags),
        "[signalfd]" => signalfd::save(fd, flags),
        "[eventpoll]" => epoll::save(fd, flags),
        "inotify" => inotify::save(fd, flags),
        _ => None,
    }
}

fn save_one(fd: i32) -> Option<FdMeta> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()?
        .display()
        .to_string();
    // SAFETY: fcntl queries on a descriptor number; no memory involved.
    let (flags, fdflags) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    if flags < 0 || fdflags < 0 {
        return None;
    }
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let kind = match ft {
        _ if link.starts_with("anon_inode:") => {
            save_anon(fd, &link, flags).unwrap_or(FdKind::Other { link, flags })
        }
        // Objects with no path (`anon_inode:[io_uring]`, `anon_inode:[pidfd]`,
        // `anon_inode:[perf_event]`, `net:[4026531833]`, ...): the link
        // decides, not the type, which says nothing for an anonymous inode
        // (mode 0600) but "regular file" for a namespace. Pipes and sockets
        // have no path either but are known kinds.
        Some(t) if !link.starts_with('/') && !t.is_fifo() && !t.is_socket() => {
            FdKind::Other { link, flags }
        }
        // An `O_PATH` descriptor names an inode without opening it (no
        // offset, no I/O; `lseek` and `F_GETPIPE_SZ` fail on it), whatever
        // the inode is: it is reopened by path with `O_PATH`, which works
        // for FIFOs, devices and sockets as for files.
        Some(t) if flags & libc::O_PATH != 0 && !t.is_dir() && link.starts_with('/') => {
            file::save(fd, &link, flags, meta.as_ref()?)
        }
        Some(t) if t.is_file() && mqueue::is_mqueue(fd) => {
            mqueue::save(fd, &link, flags, meta.as_ref().map_or(0o600, |m| m.mode()))
        }
        Some(t) if t.is_file() => file::save(fd, &link, flags, meta.as_ref()?),
        Some(t) if t.is_dir() => FdKind::Directory {
            path: link,
            flags,
            offset: file::offset(fd),
        },
        Some(t) if t.is_char_device() && pty::is_master(&link) => {
            pty::save_master(fd, flags).unwrap_or(FdKind::Other { link, flags })
        }
        Some(t)
            if t.is_char_device()
                && let Some(index) = meta.as_ref().and_then(|m| pty::slave_index(m.rdev())) =>
        {
            pty::save_slave(fd, &link, flags, index)
        }
        Some(t) if t.is_char_device() && is_terminal(fd, &link) => {
            FdKind::Terminal { path: link, flags }
        }
        Some(t) if t.is_char_device() => FdKind::File {
            path: link,
            flags,
            offset: 0,
            size: 0,
            mode: 0,
            deleted: false,
            contents: None,
        },
        Some(t) if t.is_fifo() => {
            let inode = meta.as_ref().map_or_else(|| inode_of(&link), |m| m.ino());
            pipe::save(fd, &link, flags, inode)
        }
        // A netlink socket talks to the kernel, not to a peer: nothing of
        // it can be recreated (its subscriptions and sequence numbers are
        // the kernel's); the description says so in the restart's warning.
        Some(t) if t.is_socket() && socket_domain(fd) == Some(libc::AF_NETLINK) => FdKind::Other {
            link: format!("netlink {link}"),
            flags,
        },
        Some(t) if t.is_socket() => socket::save(fd, inode_of(&link), flags),
        _ => FdKind::Other { link, flags },
    };
    Some(FdMeta {
        fd,
        cloexec: fdflags & libc::FD_CLOEXEC != 0,
        kind,
        dup_of: None,
        shared_with: Vec::new(),
        owner: owner(fd),
    })
}

/// `SO_DOMAIN` of a socket.
fn socket_domain(fd: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

/// `F_GETOWN_EX` (the pid, thread or group that gets `SIGIO` for the fd),
/// when one is set. Pids are kept across a restart, so it is restored as is.
fn owner(fd: i32) -> Option<(i32, i32)> {
    // `struct f_owner_ex { int type; pid_t pid; }`
    let mut o = [0i32; 2];
    // SAFETY: F_GETOWN_EX writes the two ints into `o`.
    let r = unsafe { libc::fcntl(fd, F_GETOWN_EX, o.as_mut_ptr()) };
    (r == 0 && o[1] != 0).then_some((o[0], o[1]))
}

fn set_owner(fd: i32, (type_, pid): (i32, i32)) {
    let o = [type_, pid];
    // SAFETY: F_SETOWN_EX reads the two ints of `o`.
    unsafe { libc::fcntl(fd, F_SETOWN_EX, o.as_ptr()) };
}

const F_SETOWN_EX: libc::c_int = 15;
const F_GETOWN_EX: libc::c_int = 16;

fn is_terminal(fd: i32, link: &str) -> bool {
    link.starts_with("/dev/pts/") || link.starts_with("/dev/tty") || {
        // SAFETY: isatty only queries the descriptor.
        unsafe { libc::isatty(fd) == 1 }
    }
}

fn inode_of(link: &str) -> u64 {
    // "pipe:[1234]" / "socket:[1234]"
    link.split_once('[')
        .and_then(|(_, r)| r.trim_end_matches(']').parse().ok())
        .unwrap_or(0)
}

/// Recreates the saved descriptors. Returns warnings for the user.
pub fn restore(
    saved: &[FdMeta],
    temp_fds: &[i32],
    inherited: &[InheritedPipe],
    shared_files: &[InheritedFile],
    inherited_sockets: &[InheritedSocket],
    inherited_ptys: &[InheritedPty],
) -> Vec<String> {
    let mut warnings = Vec::new();
    for &fd in temp_fds {
        // SAFETY: the restorer's descriptors; memory mapped from them stays.
        unsafe { libc::close(fd) };
    }
    // The inherited pipe ends move out of the way of the numbers about to
    // be recreated.
    let pipes: Vec<InheritedPipe> = inherited
        .iter()
        .map(|p| {
            let high = |fd: i32| {
                if fd < 0 {
                    return -1; // no such end
                }
                // Duplicating an inherited descriptor high up, then
                // closing the original number.
                // SAFETY: see just above.
                unsafe {
                    let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, PIPE_FD_BASE);
                    libc::close(fd);
                    h
                }
            };
            InheritedPipe {
                read_fd: high(p.read_fd),
                write_fd: high(p.write_fd),
                ..p.clone()
            }
        })
        .collect();
    let files: Vec<InheritedFile> = shared_files
        .iter()
        .map(|f| InheritedFile {
            fd: f.fd,
            // SAFETY: as for the pipes above.
            inherited: unsafe {
                let h = libc::fcntl(f.inherited, libc::F_DUPFD_CLOEXEC, PIPE_FD_BASE);
                libc::close(f.inherited);
                h
            },
        })
        .collect();
    let sockets: Vec<InheritedSocket> = inherited_sockets
        .iter()
        .map(|s| InheritedSocket {
            inode: s.inode,
            // SAFETY: as for the pipes above.
            fd: unsafe {
                let h = libc::fcntl(s.fd, libc::F_DUPFD_CLOEXEC, PIPE_FD_BASE);
                libc::close(s.fd);
                h
            },
        })
        .collect();
    let mut held: Vec<i32> = pipes
        .iter()
        .flat_map(|p| [p.read_fd, p.write_fd])
        .filter(|&fd| fd >= 0)
        .collect();
    held.extend(files.iter().map(|f| f.inherited));
    held.extend(sockets.iter().map(|s| s.fd).filter(|&fd| fd >= 0));
    let ptys: Vec<InheritedPty> = inherited_ptys
        .iter()
        .map(|p| {
            let high = |fd: i32| {
                if fd < 0 {
                    return -1;
                }
                // SAFETY: as for the pipes above.
                unsafe {
                    let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, PIPE_FD_BASE);
                    libc::close(fd);
                    h
                }
            };
            InheritedPty {
                index: p.index,
                master: high(p.master),
                slave: high(p.slave),
            }
        })
        .collect();
    held.extend(
        ptys.iter()
            .flat_map(|p| [p.master, p.slave])
            .filter(|&fd| fd >= 0),
    );
    let internal = |k: &FdKind| match k {
        FdKind::Pipe { inode, path, .. } => pipe::inherited(*inode, path, &pipes).is_some(),
        FdKind::UnixSocket { inode, .. }
        | FdKind::UnixListener { inode, .. }
        | FdKind::TcpSocket { inode, .. }
        | FdKind::InetSocket { inode, .. }
        | FdKind::UnixDgram { inode, .. } => socket::inherited(*inode, &sockets).is_some(),
        FdKind::PtyMaster { index, .. } | FdKind::PtySlave { index, .. } => {
            pty::inherited(*index, &ptys).is_some()
        }
        _ => false,
    };
    // fds 0-2 to something outside the computation are `hiber restart`'s,
    // and so are files there that cannot be opened again (a log of another
    // user, say; not shared files, which `hiber restart` opened).
    let unreachable_stdio = |m: &FdMeta| {
        m.fd <= 2
            && m.dup_of.is_none()
            && !files.iter().any(|f| f.fd == m.fd)
            && matches!(&m.kind, FdKind::File { path, flags, deleted: false, .. }
                if !file::can_reopen(path, *flags))
    };
    let keep_inherited = |fd: i32| {
        fd <= 2
            && saved.iter().any(|m| {
                m.fd == fd
                    && (matches!(
                        m.kind,
                        FdKind::Terminal { .. }
                            | FdKind::Pipe { .. }
                            | FdKind::Socket { .. }
                            | FdKind::UnixSocket { .. }
                            | FdKind::UnixListener { .. }
                            | FdKind::TcpSocket { .. }
                            | FdKind::InetSocket { .. }
                            | FdKind::UnixDgram { .. }
                            | FdKind::Other { .. }
                            | FdKind::PtySlave { .. }
                    ) && !internal(&m.kind)
                        || unreachable_stdio(m))
            })
    };
    for m in saved.iter().filter(|m| unreachable_stdio(m)) {
        if let FdKind::File { path, .. } = &m.kind {
            warnings.push(format!(
                "fd {} ({path}) cannot be opened again here; it is hiber restart's own now",
                m.fd
            ));
        }
    }
    // Close what `hiber restart` left open that the process did not have.
    let open_now: Vec<i32> = crate::procfs::numeric_entries(c"/proc/self/fd")
        .into_iter()
        .map(|f| f as i32)
        .collect();
    for fd in open_now {
        if !keep_inherited(fd) && !held.contains(&fd) {
            // Closing descriptors the restored program never had
            // (or that are about to be recreated).
            // SAFETY: see just above.
            unsafe { libc::close(fd) };
        }
    }
    // Descriptors recreated as what they were (not /dev/null instead).
    let mut restored: Vec<i32> = Vec::new();
    for m in saved {
        if keep_inherited(m.fd) {
            restored.push(m.fd);
            continue;
        }
        if let Some(orig) = m.dup_of {
            // Duplicating a descriptor restored just before (lower
            // numbers come first) onto this one's number.
            // SAFETY: see just above.
            unsafe { libc::dup3(orig, m.fd, if m.cloexec { libc::O_CLOEXEC } else { 0 }) };
            if restored.contains(&orig) {
                restored.push(m.fd);
            }
            continue;
        }
        let shared = files.iter().find(|f| f.fd == m.fd);
        let r = match &m.kind {
            FdKind::File { .. } if shared.is_some() => {
                let src = shared.map_or(-1, |f| f.inherited);
                // SAFETY: duplicating an inherited descriptor.
                match unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 0) } {
                    fd if fd >= 0 => Ok(fd),
                    _ => Err(format!("shared file: {}", std::io::Error::last_os_error())),
                }
            }
            FdKind::File { .. } | FdKind::Directory { .. } => file::restore(m, &mut warnings),
            FdKind::Terminal { path, flags } => file::reopen(path, *flags),
            FdKind::PtyMaster { index, flags, .. } => match pty::inherited(*index, &ptys) {
                Some(p) => pty::restore(p.master, *flags),
                None => Err(format!("pty master of /dev/pts/{index} not recreated")),
            },
            FdKind::PtySlave {
                index, path, flags, ..
            } => match pty::inherited(*index, &ptys) {
                Some(p) => pty::restore(p.slave, *flags),
                // The terminal the program was started on, above 0–2.
                None => file::reopen(path, *flags),
            },
            FdKind::Mqueue { .. } => mqueue::restore(m),
            FdKind::Pipe {
                inode, path, flags, ..
            } if internal(&m.kind) => match pipe::inherited(*inode, path, &pipes) {
                Some(p) => pipe::restore(p, *flags),
                None => Err("pipe not recreated".into()),
            },
            FdKind::EventFd {
                flags,
                count,
                semaphore,
            } => eventfd::restore(*flags, *count, *semaphore),
            FdKind::TimerFd {
                flags,
                clock,
                settime_flags,
                value_ns,
                interval_ns,
                ticks,
            } => timerfd::restore(
                &timerfd::Saved {
                    flags: *flags,
                    clock: *clock,
                    settime_flags: *settime_flags,
                    value_ns: *value_ns,
                    interval_ns: *interval_ns,
                    ticks: *ticks,
                },
                &mut warnings,
                m.fd,
            ),
            FdKind::SignalFd { flags, mask } => signalfd::restore(*flags, *mask),
            FdKind::Epoll { .. } => epoll::create(),
            FdKind::Inotify { flags, watches } => {
                inotify::restore(*flags, watches, m.fd, &mut warnings)
            }
            FdKind::Other { link, .. } => {
                warnings.push(format!(
                    "fd {} ({link}) cannot be restored; it now reads as /dev/null",
                    m.fd
                ));
                placeholder()
            }
            FdKind::UnixSocket { inode, flags, .. }
            | FdKind::UnixListener { inode, flags, .. }
            | FdKind::TcpSocket { inode, flags, .. }
            | FdKind::InetSocket { inode, flags, .. }
            | FdKind::UnixDgram { inode, flags, .. }
                if internal(&m.kind) =>
            {
                match socket::inherited(*inode, &sockets) {
                    Some(s) => socket::restore(s, *flags),
                    None => Err("socket pair not recreated".into()),
                }
            }
            other => {
                warnings.push(format!(
                    "fd {} ({}) leads outside the computation; it now reads as /dev/null",
                    m.fd,
                    describe(other)
                ));
                placeholder()
            }
        };
        match r {
            Ok(newfd) => {
                place(newfd, m.fd, m.cloexec);
                restored.push(m.fd);
                if let FdKind::TcpSocket { options, .. } | FdKind::InetSocket { options, .. } =
                    &m.kind
                {
                    // The socket has a new inode: the sizes the program set
                    // are noted again under it.
                    inet::note_options(m.fd, options);
                }
                if let Some(o) = m.owner {
                    set_owner(m.fd, o);
                }
            }
            Err(e) => {
                warnings.push(format!("fd {}: {e}; it now reads as /dev/null", m.fd));
                if let Ok(nfd) = placeholder() {
                    place(nfd, m.fd, m.cloexec);
                }
            }
        }
    }
    // Terminals: a recreated pair's slave is the controlling terminal again
    // where it was; the program's own terminal gets its modes back.
    for m in saved
        .iter()
        .filter(|m| m.dup_of.is_none() && restored.contains(&m.fd))
    {
        if let FdKind::PtySlave {
            index,
            state,
            ctty,
            fg_pgrp,
            ..
        } = &m.kind
        {
            if pty::inherited(*index, &ptys).is_none() {
                pty::reattach_own(m.fd, state);
            } else if *ctty {
                pty::reattach_controlling(m.fd, *fg_pgrp, &mut warnings);
            }
        }
    }
    for fd in held {
        // SAFETY: our own temporary copies of the inherited pipe ends.
        unsafe { libc::close(fd) };
    }
    // Every descriptor is back: the epoll instances get their interest
    // lists (a duplicate shares its original's instance).
    for m in saved {
        if let (FdKind::Epoll { targets, .. }, None) = (&m.kind, m.dup_of)
            && restored.contains(&m.fd)
        {
            epoll::add_targets(m.fd, targets, |fd| restored.contains(&fd), &mut warnings);
        }
    }
    warnings
}

/// What stands in for a descriptor that cannot be recreated: `/dev/null`,
/// read-write. The program keeps the number (nothing else gets it by
/// accident) and the close-on-exec flag; reads see end of file, the usual
/// "the other side is gone" that programs handle; writes succeed; `poll`
/// says ready. Operations specific to the lost kind fail (`io_uring_enter`,
/// `pidfd_send_signal`, `ioctl`s, `recv` on a socket) with the kernel's
/// error for a wrong kind of descriptor. Nothing raises `SIGPIPE` or
/// blocks, as a closed pipe end or an eventfd would, so the computation
/// never dies or hangs because of the placeholder itself.
fn placeholder() -> Result<i32, String> {
    file::reopen("/dev/null", libc::O_RDWR)
}

/// Where inherited pipe ends and shared files wait while descriptors are
/// recreated (above the agent's own).
const PIPE_FD_BASE: i32 = AGENT_FD_BASE + 100;

fn describe(k: &FdKind) -> String {
    match k {
        FdKind::Pipe { inode, path, .. } if path.is_empty() => format!("pipe:[{inode}]"),
        FdKind::Pipe { path, .. } => path.clone(),
        FdKind::Socket { inode, .. } => format!("socket:[{inode}]"),
        FdKind::UnixSocket { inode, peer, .. } => {
            format!("unix socket:[{inode}] whose peer socket:[{peer}] is not restarted")
        }
        FdKind::UnixListener { inode, name, .. } => format!(
            "unix socket:[{inode}] listening on {:?}, not recreated",
            String::from_utf8_lossy(name)
        ),
        FdKind::Other { link, .. } => link.clone(),
        FdKind::TcpSocket {
            inode,
            local,
            remote,
            ..
        } => format!("tcp socket:[{inode}] {local} -> {remote}, not recreated"),
        FdKind::InetSocket { inode, local, .. } => {
            format!("socket:[{inode}] bound to {local:?}, not recreated")
        }
        FdKind::UnixDgram { inode, name, .. } => format!(
            "unix datagram socket:[{inode}] {:?}, not recreated",
            String::from_utf8_lossy(name)
        ),
        FdKind::EventFd { .. } => "anon_inode:[eventfd]".into(),
        FdKind::TimerFd { .. } => "anon_inode:[timerfd]".into(),
        FdKind::SignalFd { .. } => "anon_inode:[signalfd]".into(),
        FdKind::Epoll { .. } => "anon_inode:[eventpoll]".into(),
        FdKind::Inotify { .. } => "anon_inode:inotify".into(),
        FdKind::Mqueue { name, .. } => format!("message queue {name}"),
        FdKind::File { path, .. }
        | FdKind::Directory { path, .. }
        | FdKind::Terminal { path, .. }
        | FdKind::PtySlave { path, .. } => path.clone(),
        FdKind::PtyMaster { index, .. } => format!("pty master of /dev/pts/{index}"),
    }
}

/// Moves `newfd` to number `target`.
fn place(newfd: i32, target: i32, cloexec: bool) {
    if newfd != target {
        // SAFETY: dup3 onto the target number, then drop the temporary.
        unsafe {
            libc::dup3(newfd, target, if cloexec { libc::O_CLOEXEC } else { 0 });
            libc::close(newfd);
        }
    } else {
        // The descriptor may come from F_DUPFD_CLOEXEC: set the flag either
        // way.
        let flag = if cloexec { libc::FD_CLOEXEC } else { 0 };
        // SAFETY: flag change on our own descriptor.
        unsafe { libc::fcntl(target, libc::F_SETFD, flag) };
    }
}

/// File descriptors as a mechanism (see `mechanisms.rs`).
pub struct Descriptors;

impl crate::mechanisms::Mechanism for Descriptors {
    fn name(&self) -> &'static str {
        "file descriptors"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.fds = save(ctx.exclude_fds);
        Ok(())
    }

    fn restore(&self, ctx: &mut crate::mechanisms::Restore<'_>) {
        let w = restore(
            &ctx.saved.fds,
            ctx.temp_fds,
            ctx.pipes,
            ctx.files,
            ctx.sockets,
            ctx.ptys,
        );
        ctx.warnings.extend(w);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(fd: i32) {
        // SAFETY: closing a descriptor the test opened.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn kinds_without_a_path_are_other() {
        // SAFETY: plain syscalls creating descriptors the test owns.
        let (pidfd, nl) = unsafe {
            (
                libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as i32,
                libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
            )
        };
        assert!(pidfd >= 0 && nl >= 0);
        match save_one(pidfd).unwrap().kind {
            FdKind::Other { link, .. } => assert_eq!(link, "anon_inode:[pidfd]"),
            other => panic!("pidfd saved as {other:?}"),
        }
        match save_one(nl).unwrap().kind {
            FdKind::Other { link, .. } => assert!(link.starts_with("netlink socket:["), "{link}"),
            other => panic!("netlink socket saved as {other:?}"),
        }
        close(pidfd);
        close(nl);
    }

    #[test]
    fn o_path_is_a_file_reopened_as_o_path() {
        let dir = std::env::temp_dir().join(format!("hiber-opath-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated path; plain mkfifo and open.
        let fd = unsafe {
            assert_eq!(libc::mkfifo(c.as_ptr(), 0o600), 0);
            libc::open(c.as_ptr(), libc::O_PATH)
        };
        assert!(fd >= 0);
        let m = save_one(fd).unwrap();
        let FdKind::File { flags, .. } = m.kind else {
            panic!("O_PATH FIFO saved as {:?}", m.kind);
        };
        assert_ne!(flags & libc::O_PATH, 0);
        let mut warnings = Vec::new();
        let again = file::restore(&m, &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // SAFETY: flag query on the descriptor just opened.
        let now = unsafe { libc::fcntl(again, libc::F_GETFL) };
        assert_ne!(now & libc::O_PATH, 0);
        close(fd);
        close(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
