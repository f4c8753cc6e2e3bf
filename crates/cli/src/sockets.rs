//! Connected UNIX sockets between the processes of a restart.
//!
//! Every image lists its connected UNIX sockets with their inode, their
//! peer's inode (from `sock_diag` at the checkpoint), type, options and
//! receive queue. A pair whose both ends are among the images (on one host)
//! is created here once with `socketpair` of its type, given its buffer
//! sizes back and refilled — the messages queued for one end are written
//! into the other, one `send` per message for datagram and seqpacket
//! sockets so boundaries come back — and each end is inherited by every
//! process that had it (through `fork`, several may); the agent puts it at
//! its number. A socket whose peer is not among the images is not
//! recreated: the agent leaves a placeholder and a warning.
//!
//! A listening socket is created once too, bound to its name again (a
//! stale socket file at its path, left by the killed process, is removed
//! first) and listening with its backlog; connections that were waiting to
//! be accepted are lost (their clients' ends have no peer among the images
//! and become placeholders). Sockets connected through a path come back as
//! a pair, with no names (`getsockname`/`getpeername` are empty).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;

use anyhow::{Context, bail};
use hiber_image::Image;
use hiber_image::meta::FdKind;
use hiber_protocol::handoff::InheritedSocket;

/// One socket end as the images saw it.
#[derive(Default)]
struct Seen {
    peer: u64,
    sock_type: i32,
    sndbuf: i32,
    rcvbuf: i32,
    passcred: bool,
    peek_off: i32,
    queue: Vec<Vec<u8>>,
    peer_gone: bool,
}

/// One socket of the images, recorded once per host and inode (as the
/// first image that has it saw it), with every image that has it.
pub struct Found<T> {
    pub host: String,
    pub inode: u64,
    pub what: T,
    pub users: Vec<usize>,
}

/// The sockets `pick` takes among the images' descriptors, in image order;
/// `merge` folds a later image's record of the same socket into the first.
pub fn collect<T>(
    images: &[&Image],
    mut pick: impl FnMut(FdKind) -> Option<(u64, T)>,
    mut merge: impl FnMut(&mut T, T),
) -> anyhow::Result<Vec<Found<T>>> {
    let mut out: Vec<Found<T>> = Vec::new();
    let mut index: HashMap<(String, u64), usize> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        let host = &img.identity().hostname;
        for m in img.fds()? {
            let Some((inode, what)) = pick(m.kind) else {
                continue;
            };
            match index.get(&(host.clone(), inode)) {
                Some(&j) => {
                    let f = &mut out[j];
                    if !f.users.contains(&i) {
                        f.users.push(i);
                    }
                    merge(&mut f.what, what);
                }
                None => {
                    index.insert((host.clone(), inode), out.len());
                    out.push(Found {
                        host: host.clone(),
                        inode,
                        what,
                        users: vec![i],
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Adds a created socket as an end that every image of `who` inherits.
pub fn add(
    ends: &mut Vec<(u64, OwnedFd)>,
    users: &mut [Vec<usize>],
    inode: u64,
    fd: OwnedFd,
    who: &[usize],
) {
    for &u in who {
        users[u].push(ends.len());
    }
    ends.push((inode, fd));
}

pub struct Sockets {
    /// Created ends: (inode, descriptor).
    ends: Vec<(u64, OwnedFd)>,
    /// For each image, the indices of the ends it has.
    users: Vec<Vec<usize>>,
}

impl Sockets {
    pub fn create(images: &[&Image]) -> anyhow::Result<Sockets> {
        let found = collect(
            images,
            |k| match k {
                FdKind::UnixSocket {
                    inode,
                    peer,
                    sock_type,
                    sndbuf,
                    rcvbuf,
                    passcred,
                    peek_off,
                    queue,
                    peer_gone,
                    ..
                } => Some((
                    inode,
                    Seen {
                        peer,
                        sock_type,
                        sndbuf,
                        rcvbuf,
                        passcred,
                        peek_off,
                        queue,
                        peer_gone,
                    },
                )),
                _ => None,
            },
            |_, _| {},
        )?;
        let seen: HashMap<(String, u64), &Found<Seen>> = found
            .iter()
            .map(|f| ((f.host.clone(), f.inode), f))
            .collect();
        let mut ends = Vec::new();
        let mut users = vec![Vec::new(); images.len()];
        listeners(images, &mut ends, &mut users)?;
        datagrams(images, &mut ends, &mut users)?;
        crate::inet::create(images, &mut ends, &mut users)?;
        let mut keys: Vec<(String, u64)> = seen.keys().cloned().collect();
        keys.sort();
        for (host, a) in keys {
            let Some(fa_) = seen.get(&(host.clone(), a)) else {
                continue;
            };
            let sa = &fa_.what;
            let b = sa.peer;
            // Each pair once, from its lower inode; both ends must be ours
            // and name each other.
            let Some(fb_) = seen.get(&(host.clone(), b)) else {
                if sa.peer_gone {
                    // The peer was closed: a pair for what it had sent, its
                    // other end closed (end of file after the bytes).
                    let (fa, fb) = pair(sa.sock_type).with_context(|| format!("socket:[{a}]"))?;
                    set_buffers(fa.as_raw_fd(), sa);
                    refill(&fb, sa.sock_type, &sa.queue)
                        .with_context(|| format!("refilling unix socket:[{a}]"))?;
                    drop(fb);
                    set_after_refill(fa.as_raw_fd(), sa);
                    add(&mut ends, &mut users, a, fa, &fa_.users);
                }
                continue;
            };
            let sb = &fb_.what;
            if a >= b || sb.peer != a {
                continue;
            }
            if sa.sock_type != sb.sock_type {
                bail!(
                    "unix socket:[{a}] (type {}) and its peer socket:[{b}] (type {}) differ",
                    sa.sock_type,
                    sb.sock_type
                );
            }
            let (fa, fb) = pair(sa.sock_type).with_context(|| format!("socket:[{a}]"))?;
            for (s, fd) in [(sa, &fa), (sb, &fb)] {
                set_buffers(fd.as_raw_fd(), s);
            }
            // What was queued for A arrives at A: written into B.
            refill(&fb, sa.sock_type, &sa.queue)
                .with_context(|| format!("refilling unix socket:[{a}]"))?;
            refill(&fa, sb.sock_type, &sb.queue)
                .with_context(|| format!("refilling unix socket:[{b}]"))?;
            for (s, fd) in [(sa, &fa), (sb, &fb)] {
                set_after_refill(fd.as_raw_fd(), s);
            }
            add(&mut ends, &mut users, a, fa, &fa_.users);
            add(&mut ends, &mut users, b, fb, &fb_.users);
        }
        Ok(Sockets { ends, users })
    }

    /// Descriptors image `i` inherits.
    pub fn fds_of(&self, i: usize) -> Vec<RawFd> {
        self.users[i]
            .iter()
            .map(|&e| self.ends[e].1.as_raw_fd())
            .collect()
    }

    /// What the agent of image `i` is told about its sockets.
    pub fn inherited_by(&self, i: usize) -> Vec<InheritedSocket> {
        self.users[i]
            .iter()
            .map(|&e| InheritedSocket {
                inode: self.ends[e].0,
                fd: self.ends[e].1.as_raw_fd(),
            })
            .collect()
    }
}

/// Creates every listening socket of the images once.
fn listeners(
    images: &[&Image],
    ends: &mut Vec<(u64, OwnedFd)>,
    users: &mut [Vec<usize>],
) -> anyhow::Result<()> {
    let found = collect(
        images,
        |k| match k {
            FdKind::UnixListener {
                inode,
                sock_type,
                name,
                cwd,
                backlog,
                pending,
                sndbuf,
                rcvbuf,
                passcred,
                ..
            } => Some((
                inode,
                (
                    sock_type, name, cwd, backlog, pending, sndbuf, rcvbuf, passcred,
                ),
            )),
            _ => None,
        },
        |_, _| {},
    )?;
    for f in found {
        let (sock_type, name, cwd, backlog, pending, sndbuf, rcvbuf, passcred) = f.what;
        let shown = String::from_utf8_lossy(&name).into_owned();
        if pending > 0 {
            tracing::warn!("{pending} connections waiting on {shown:?} are lost");
            eprintln!(
                "hiber: warning: {pending} connections that were waiting on unix \
                 socket {shown:?} are lost"
            );
        }
        let fd = listen(sock_type, &name, &cwd, backlog)
            .with_context(|| format!("listening unix socket {shown:?}"))?;
        let seen = Seen {
            sndbuf,
            rcvbuf,
            passcred,
            peek_off: -1,
            ..Seen::default()
        };
        set_buffers(fd.as_raw_fd(), &seen);
        set_after_refill(fd.as_raw_fd(), &seen);
        add(ends, users, f.inode, fd, &f.users);
    }
    Ok(())
}

/// A socket bound to `name` and listening.
fn listen(sock_type: i32, name: &[u8], cwd: &str, backlog: u32) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_UNIX, sock_type | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    bind_name(&sock, sock_type, name, cwd)?;
    let backlog = i32::try_from(backlog).unwrap_or(libc::SOMAXCONN);
    // SAFETY: listen on our own socket.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(std::io::Error::last_os_error()).context("listen");
    }
    Ok(sock)
}

/// `sockaddr_un` for `name` (a path, or an abstract name starting with
/// NUL) and its length.
fn unix_addr(name: &[u8]) -> anyhow::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.len() >= addr.sun_path.len() {
        bail!("name of {} bytes is too long", name.len());
    }
    for (d, &c) in addr.sun_path.iter_mut().zip(name) {
        *d = c as libc::c_char;
    }
    let abstract_name = name.first() == Some(&0);
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len() + usize::from(!abstract_name);
    Ok((addr, len as libc::socklen_t))
}

/// Runs `f` from directory `cwd` when `name` is a relative path (`bind`
/// and `connect` have no *at form). `hiber restart` runs one thread here,
/// so changing its working directory for the call is safe.
fn from_dir<T>(name: &[u8], cwd: &str, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let relative = name.first().is_some_and(|&c| c != 0 && c != b'/');
    if !relative {
        return Ok(f());
    }
    let here = std::env::current_dir().context("current directory")?;
    std::env::set_current_dir(cwd).with_context(|| format!("cd {cwd}"))?;
    let r = f();
    std::env::set_current_dir(&here).with_context(|| format!("cd {}", here.display()))?;
    Ok(r)
}

/// Binds `sock` to `name`. A relative path is bound from `cwd` (the
/// process's working directory at the checkpoint), so `getsockname`
/// returns the same name as before. A socket file left at the path by the
/// killed process is removed first — unless something still answers there
/// (the original still running?): never steal it.
fn bind_name(sock: &OwnedFd, sock_type: i32, name: &[u8], cwd: &str) -> anyhow::Result<()> {
    let (addr, len) = unix_addr(name)?;
    let abstract_name = name.first() == Some(&0);
    let path = if abstract_name || name.first() == Some(&b'/') {
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name))
    } else {
        std::path::Path::new(cwd).join(std::ffi::OsStr::from_bytes(name))
    };
    if !abstract_name && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
        let live = if sock_type == libc::SOCK_DGRAM {
            std::os::unix::net::UnixDatagram::unbound().is_ok_and(|d| d.connect(&path).is_ok())
        } else {
            std::os::unix::net::UnixStream::connect(&path).is_ok()
        };
        if live {
            bail!(
                "{} is in use: another process listens on it",
                path.display()
            );
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    let fd = sock.as_raw_fd();
    // SAFETY: bind reads `len` bytes of `addr`, which is that large.
    let r = from_dir(name, cwd, || unsafe {
        libc::bind(fd, (&raw const addr).cast(), len)
    })?;
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("bind");
    }
    Ok(())
}

/// Creates the images' datagram sockets that are not ends of a pair:
/// servers (bound, unconnected) first, then the sockets connected to
/// them by name. Each is bound to its name, its waiting messages are sent
/// to it from an unnamed socket (so they come from an unnamed sender),
/// and then it connects to its peer's name (a connected datagram socket
/// takes messages from its peer only; and disconnecting one, as
/// `AF_UNSPEC` would, empties its queue).
fn datagrams(
    images: &[&Image],
    ends: &mut Vec<(u64, OwnedFd)>,
    users: &mut [Vec<usize>],
) -> anyhow::Result<()> {
    let mut found = collect(
        images,
        |k| match k {
            FdKind::UnixDgram {
                inode,
                name,
                peer_name,
                cwd,
                queue,
                sndbuf,
                rcvbuf,
                passcred,
                ..
            } => Some((
                inode,
                (
                    name,
                    peer_name,
                    cwd,
                    Seen {
                        sock_type: libc::SOCK_DGRAM,
                        sndbuf,
                        rcvbuf,
                        passcred,
                        peek_off: -1,
                        queue,
                        ..Seen::default()
                    },
                ),
            )),
            _ => None,
        },
        |_, _| {},
    )?;
    // Servers first, so that clients can connect to them.
    found.sort_by_key(|f| !f.what.1.is_empty());
    for f in found {
        let (name, peer_name, cwd, seen) = &f.what;
        let fd = datagram(seen, name, peer_name, cwd).with_context(|| {
            format!(
                "unix datagram socket {:?} -> {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(peer_name)
            )
        })?;
        add(ends, users, f.inode, fd, &f.users);
    }
    Ok(())
}

fn datagram(s: &Seen, name: &[u8], peer_name: &[u8], cwd: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    set_buffers(fd, s);
    if !name.is_empty() {
        bind_name(&sock, libc::SOCK_DGRAM, name, cwd)?;
        // Refilled before it connects: a connected datagram socket takes
        // messages from its peer only.
        let (addr, len) = unix_addr(name)?;
        // SAFETY: plain socket creation.
        let t = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if t < 0 {
            return Err(std::io::Error::last_os_error()).context("socket");
        }
        // SAFETY: a fresh descriptor we own.
        let temp = unsafe { OwnedFd::from_raw_fd(t) };
        for (i, m) in s.queue.iter().enumerate() {
            // SAFETY: sendto reads `m.len()` bytes of `m` and `len` of `addr`.
            let r = from_dir(name, cwd, || unsafe {
                libc::sendto(
                    temp.as_raw_fd(),
                    m.as_ptr().cast(),
                    m.len(),
                    libc::MSG_DONTWAIT,
                    (&raw const addr).cast(),
                    len,
                )
            })?;
            if r < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("refilling message {i} of {}", s.queue.len()));
            }
        }
    } else if !s.queue.is_empty() {
        // Nothing can address an unnamed, unconnected socket.
        eprintln!(
            "hiber: warning: {} messages waiting on an unnamed unix datagram socket are dropped",
            s.queue.len()
        );
    }
    if !peer_name.is_empty() {
        let (addr, len) = unix_addr(peer_name)?;
        // SAFETY: connect reads `len` bytes of `addr`.
        let r = from_dir(peer_name, cwd, || unsafe {
            libc::connect(fd, (&raw const addr).cast(), len)
        })?;
        if r != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("connect to {:?}", String::from_utf8_lossy(peer_name)));
        }
    }
    set_after_refill(fd, s);
    Ok(sock)
}

fn pair(sock_type: i32) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors into `fds`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            sock_type | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("socketpair(AF_UNIX, type {sock_type})"));
    }
    // SAFETY: fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_int(fd: RawFd, opt: i32, v: i32) {
    // A refusal keeps the default (e.g. a size above the system's maximum).
    let _ = hiber_sys::set_socket_int(fd, opt, v);
}

/// `SO_SNDBUF`/`SO_RCVBUF` before the refill, so what was in flight fits
/// as it did. `getsockopt` reported them doubled; `setsockopt` doubles.
fn set_buffers(fd: RawFd, s: &Seen) {
    if s.sndbuf > 0 {
        set_int(fd, libc::SO_SNDBUF, s.sndbuf / 2);
    }
    if s.rcvbuf > 0 {
        set_int(fd, libc::SO_RCVBUF, s.rcvbuf / 2);
    }
}

/// Options set after the refill: `SO_PASSCRED` (set before, the refilled
/// messages would carry our credentials) and the program's peek offset.
fn set_after_refill(fd: RawFd, s: &Seen) {
    if s.passcred {
        set_int(fd, libc::SO_PASSCRED, 1);
    }
    if s.peek_off >= 0 {
        set_int(fd, libc::SO_PEEK_OFF, s.peek_off);
    }
}

/// Writes the saved queue into `fd` without blocking: one `send` per
/// message (datagram, seqpacket), as many as it takes for a stream.
fn refill(fd: &OwnedFd, sock_type: i32, queue: &[Vec<u8>]) -> anyhow::Result<()> {
    let total: usize = queue.iter().map(Vec::len).sum();
    for (i, msg) in queue.iter().enumerate() {
        let mut rest = &msg[..];
        loop {
            // SAFETY: sending from a live buffer of the given length.
            let n = unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                bail!(
                    "message {i} of {} ({} bytes; {total} in all) does not fit: {e}",
                    queue.len(),
                    rest.len()
                );
            }
            if sock_type != libc::SOCK_STREAM {
                break; // one message, sent whole
            }
            rest = &rest[n as usize..];
            if rest.is_empty() {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn recv(fd: &OwnedFd) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        // SAFETY: receiving into a live buffer.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    #[test]
    fn seqpacket_refill_keeps_boundaries() {
        let (a, b) = pair(libc::SOCK_SEQPACKET).unwrap();
        let q = vec![b"one".to_vec(), b"two two".to_vec(), b"3".to_vec()];
        refill(&b, libc::SOCK_SEQPACKET, &q).unwrap();
        for m in &q {
            assert_eq!(recv(&a).as_ref(), Some(m));
        }
        assert_eq!(recv(&a), None, "nothing more");
    }

    #[test]
    fn listener_is_bound_again_over_a_stale_socket_file() {
        let dir = std::env::temp_dir().join(format!("hiber-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cwd = dir.to_str().unwrap();
        let first = listen(libc::SOCK_STREAM, b"l.sock", cwd, 8).unwrap();
        drop(first); // the socket file stays, as after a SIGKILL
        let l = listen(libc::SOCK_STREAM, b"l.sock", cwd, 8).unwrap();
        let c = std::os::unix::net::UnixStream::connect(dir.join("l.sock")).unwrap();
        // SAFETY: accept on our listening socket; no address wanted.
        let a = unsafe { libc::accept(l.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) };
        assert!(a >= 0);
        // SAFETY: closing the accepted descriptor.
        unsafe { libc::close(a) };
        drop(c);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_live_listener_is_never_replaced() {
        let dir = std::env::temp_dir().join(format!("hiber-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cwd = dir.to_str().unwrap();
        let live = listen(libc::SOCK_STREAM, b"l.sock", cwd, 8).unwrap();
        assert!(listen(libc::SOCK_STREAM, b"l.sock", cwd, 8).is_err());
        drop(live);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stream_refill_is_the_bytes() {
        let (a, b) = pair(libc::SOCK_STREAM).unwrap();
        refill(
            &a,
            libc::SOCK_STREAM,
            &[b"hello ".to_vec(), b"world".to_vec()],
        )
        .unwrap();
        assert_eq!(recv(&b).unwrap(), b"hello world");
    }
}
