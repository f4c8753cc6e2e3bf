//! Pipes and FIFOs.
//!
//! At a checkpoint every process of the computation is stopped, so what a
//! pipe holds is still: each process that has a read end copies it out
//! with `tee(2)`, which duplicates pipe data without consuming it, so the
//! program finds its bytes where they were when it resumes, and no other
//! reader is disturbed. Several readers save the same bytes; `hiber
//! restart` keeps one copy.
//!
//! At restart, a pipe whose both ends belong to the computation is created
//! once by `hiber restart`, refilled, and inherited by every process that
//! had an end of it ([`InheritedPipe`]); the agent puts the ends at the
//! numbers the process had, so a pipe shared by several processes is shared
//! again and still a pipe (`fstat` says FIFO).

use hiber_image::meta::FdKind;
use hiber_protocol::handoff::InheritedPipe;

/// Records a pipe end: its inode, flags, capacity and, for a read end, the
/// bytes in flight.
pub fn save(fd: i32, link: &str, flags: i32, inode: u64) -> FdKind {
    let path = if link.starts_with("pipe:[") {
        String::new()
    } else {
        link.to_string()
    };
    // SAFETY: fcntl query on a descriptor number.
    let capacity = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) }.max(0) as u32;
    let readable = flags & libc::O_ACCMODE != libc::O_WRONLY;
    let data = if readable {
        peek(fd, capacity as usize)
    } else {
        Vec::new()
    };
    FdKind::Pipe {
        inode,
        flags,
        path,
        capacity,
        data,
        writers_gone: readable && no_writers(fd),
    }
}

/// Whether the pipe `fd` reads from has no writer left (`POLLHUP`).
fn no_writers(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one descriptor with a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLHUP != 0
}

/// The bytes in the pipe `fd` reads from, left in place.
fn peek(fd: i32, capacity: usize) -> Vec<u8> {
    if capacity == 0 {
        return Vec::new();
    }
    let mut tmp = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `tmp`.
    if unsafe { libc::pipe2(tmp.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    // SAFETY: fcntl/tee/read on descriptors we own; `buf` is writable for its length.
    unsafe {
        libc::fcntl(tmp[1], libc::F_SETPIPE_SZ, capacity as libc::c_int);
        let n = libc::tee(fd, tmp[1], capacity, libc::SPLICE_F_NONBLOCK);
        if n > 0 {
            out.resize(n as usize, 0);
            let mut got = 0;
            while got < out.len() {
                let r = libc::read(tmp[0], out[got..].as_mut_ptr().cast(), out.len() - got);
                if r <= 0 {
                    break;
                }
                got += r as usize;
            }
            out.truncate(got);
        }
        libc::close(tmp[0]);
        libc::close(tmp[1]);
    }
    out
}

/// The inherited end that stands for a saved pipe end, if `hiber restart`
/// recreated that pipe.
pub fn inherited<'a>(
    inode: u64,
    path: &str,
    pipes: &'a [InheritedPipe],
) -> Option<&'a InheritedPipe> {
    pipes.iter().find(|p| {
        if path.is_empty() {
            p.path.is_empty() && p.inode == inode
        } else {
            p.path == path
        }
    })
}

/// A new descriptor for the saved end: a duplicate of the inherited end
/// (one open file description per end, shared as after a fork), with the
/// saved status flags (O_NONBLOCK).
pub fn restore(p: &InheritedPipe, flags: i32) -> Result<i32, String> {
    let src = if flags & libc::O_ACCMODE == libc::O_WRONLY {
        p.write_fd
    } else {
        p.read_fd
    };
    // SAFETY: duplicating an inherited descriptor above the agent's range.
    let fd = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!(
            "pipe:[{}]: {}",
            p.inode,
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: flag change on our own descriptor.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            flags & (libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT),
        )
    };
    Ok(fd)
}
