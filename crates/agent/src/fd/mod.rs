//! File descriptors. The kernel tells almost everything at checkpoint time
//! (`/proc/self/fd` links, `fcntl` flags, `lseek` offsets, `fstat`), so
//! nothing is tracked while the program runs.
//!
//! At restart, fds 0–2 that were terminals, pipes or sockets to something
//! outside the computation are bound to `hiber restart`'s own stdio (they
//! are inherited through the restorer); every other fd is recreated at its
//! number, and fds the process did not have are closed.

mod file;
mod mqueue;
mod pipe;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use hiber_image::meta::{FdKind, FdMeta};
use hiber_protocol::handoff::{InheritedFile, InheritedPipe};

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
        Some(t) if t.is_file() && mqueue::is_mqueue(fd) => {
            mqueue::save(fd, &link, flags, meta.as_ref().map_or(0o600, |m| m.mode()))
        }
        Some(t) if t.is_file() => file::save(fd, &link, flags, meta.as_ref()?),
        Some(t) if t.is_dir() => FdKind::Directory {
            path: link,
            flags,
            offset: file::offset(fd),
        },
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
        Some(t) if t.is_socket() => FdKind::Socket {
            inode: inode_of(&link),
            flags,
        },
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
    // SAFETY: isatty only queries the descriptor.
    link.starts_with("/dev/pts/")
        || link.starts_with("/dev/tty")
        || unsafe { libc::isatty(fd) } == 1
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
                // SAFETY: duplicating an inherited descriptor high up, then
                // closing the original number.
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
    let mut held: Vec<i32> = pipes
        .iter()
        .flat_map(|p| [p.read_fd, p.write_fd])
        .filter(|&fd| fd >= 0)
        .collect();
    held.extend(files.iter().map(|f| f.inherited));
    let internal = |k: &FdKind| match k {
        FdKind::Pipe { inode, path, .. } => pipe::inherited(*inode, path, &pipes).is_some(),
        _ => false,
    };
    // fds 0-2 to something outside the computation are `hiber restart`'s.
    let keep_inherited = |fd: i32| {
        fd <= 2
            && saved.iter().any(|m| {
                m.fd == fd
                    && matches!(
                        m.kind,
                        FdKind::Terminal { .. }
                            | FdKind::Pipe { .. }
                            | FdKind::Socket { .. }
                            | FdKind::Other { .. }
                    )
                    && !internal(&m.kind)
            })
    };
    // Close what `hiber restart` left open that the process did not have.
    let open_now: Vec<i32> = crate::procfs::numeric_entries(c"/proc/self/fd")
        .into_iter()
        .map(|f| f as i32)
        .collect();
    for fd in open_now {
        if !keep_inherited(fd) && !held.contains(&fd) {
            // SAFETY: closing descriptors the restored program never had
            // (or that are about to be recreated).
            unsafe { libc::close(fd) };
        }
    }
    for m in saved {
        if keep_inherited(m.fd) {
            continue;
        }
        if let Some(orig) = m.dup_of {
            // SAFETY: duplicating a descriptor restored just before (lower
            // numbers come first) onto this one's number.
            unsafe { libc::dup3(orig, m.fd, if m.cloexec { libc::O_CLOEXEC } else { 0 }) };
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
            FdKind::Mqueue { .. } => mqueue::restore(m),
            FdKind::Pipe {
                inode, path, flags, ..
            } if internal(&m.kind) => match pipe::inherited(*inode, path, &pipes) {
                Some(p) => pipe::restore(p, *flags),
                None => Err("pipe not recreated".into()),
            },
            other => {
                warnings.push(format!(
                    "fd {} ({}) leads outside the computation; it now reads as /dev/null",
                    m.fd,
                    describe(other)
                ));
                file::reopen("/dev/null", libc::O_RDWR)
            }
        };
        match r {
            Ok(newfd) => {
                place(newfd, m.fd, m.cloexec);
                if let Some(o) = m.owner {
                    set_owner(m.fd, o);
                }
            }
            Err(e) => {
                warnings.push(format!("fd {}: {e}; it now reads as /dev/null", m.fd));
                if let Ok(nfd) = file::reopen("/dev/null", libc::O_RDWR) {
                    place(nfd, m.fd, m.cloexec);
                }
            }
        }
    }
    for fd in held {
        // SAFETY: our own temporary copies of the inherited pipe ends.
        unsafe { libc::close(fd) };
    }
    warnings
}

/// Where inherited pipe ends and shared files wait while descriptors are
/// recreated (above the agent's own).
const PIPE_FD_BASE: i32 = AGENT_FD_BASE + 100;

fn describe(k: &FdKind) -> String {
    match k {
        FdKind::Pipe { inode, path, .. } if path.is_empty() => format!("pipe:[{inode}]"),
        FdKind::Pipe { path, .. } => path.clone(),
        FdKind::Socket { inode, .. } => format!("socket:[{inode}]"),
        FdKind::Other { link, .. } => link.clone(),
        FdKind::Mqueue { name, .. } => format!("message queue {name}"),
        FdKind::File { path, .. }
        | FdKind::Directory { path, .. }
        | FdKind::Terminal { path, .. } => path.clone(),
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
        let w = restore(&ctx.saved.fds, ctx.temp_fds, ctx.pipes, ctx.files);
        ctx.warnings.extend(w);
    }
}
