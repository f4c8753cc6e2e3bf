//! Connected TCP sockets at a checkpoint.
//!
//! The bytes in flight on a TCP connection are in three places: the
//! receiver's queue, the sender's queue (unacknowledged or not yet sent),
//! and the network. Only the first can be read, and without `TCP_REPAIR`
//! (which needs `CAP_NET_ADMIN`) nothing can be put back into a receive
//! queue except by the peer sending it. So, with every process of the
//! computation stopped:
//!
//! 1. Each process lists its connected TCP sockets ([`ends`], sent as
//!    `TcpEnds` before the `suspended` barrier); the coordinator pairs them
//!    and says, per socket, whether the peer is in the computation, which
//!    process saves it (one among those sharing it), and whether it must be
//!    drained (`TcpPlan`).
//! 2. A pair where neither end has unacknowledged bytes holds everything in
//!    its receive queues: each end peeks at its queue (`MSG_PEEK`), nothing
//!    moves. So does a socket whose peer is outside the computation (what
//!    it had sent and we did not receive yet is lost with it).
//! 3. Otherwise both ends drain ([`drain`]): each writes the checkpoint's
//!    random marker, then reads until the peer's marker — every byte the
//!    peer's program had sent is now in our buffer, and the queues are
//!    empty. Then each sends its drained bytes back to the peer, length
//!    first, and writes back what the peer sent it: the bytes re-enter the
//!    receive queue they came from, in order, before the program runs
//!    again (DMTCP's "refill by echo"). The echo fits: it occupies the
//!    same two buffers its bytes occupied before.
//!
//! What was saved ([`Saved`]) is kept until the image is written, where
//! [`save`] puts it in the socket's [`FdKind::TcpSocket`].
//!
//! All of this runs in the checkpoint thread while the program's threads
//! are stopped; it allocates (the agent's allocator serves that thread, as
//! for every descriptor saved) and takes the [`SAVED`] lock, which no other
//! thread uses.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hiber_image::meta::FdKind;
use hiber_protocol::{TcpEnd, TcpRole};

use super::inet;

/// What the checkpoint found for one connected TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub inode: u64,
    pub internal: bool,
    /// The bytes the program had not read (leader only).
    pub queue: Option<Vec<u8>>,
}

/// The sockets of the running checkpoint.
static SAVED: Mutex<Vec<Saved>> = Mutex::new(Vec::new());

/// A drain that makes no progress for this long gives up (the data read so
/// far is kept; what the echo could not put back is lost, and said).
const DRAIN_STALL: Duration = Duration::from_secs(20);

/// Connected TCP sockets of this process: (fd, what the coordinator needs),
/// one per socket (the lowest of duplicated descriptors).
pub fn ends() -> Vec<(i32, TcpEnd)> {
    let mut out: Vec<(i32, TcpEnd)> = Vec::new();
    let mut inodes = Vec::new();
    for fd in crate::procfs::numeric_entries(c"/proc/self/fd") {
        let fd = fd as i32;
        let Ok(link) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        let link = link.display().to_string();
        if !link.starts_with("socket:[") {
            continue;
        }
        let inode = super::inode_of(&link);
        inodes.push(inode);
        let family = inet::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(0);
        if family != libc::AF_INET && family != libc::AF_INET6 {
            continue;
        }
        if inet::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) != Some(libc::IPPROTO_TCP) {
            continue;
        }
        let Some((state, _)) = inet::tcp_state(fd) else {
            continue;
        };
        if matches!(
            state,
            inet::TCP_CLOSE | inet::TCP_LISTEN | inet::TCP_SYN_SENT
        ) || out.iter().any(|(_, e)| e.inode == inode)
        {
            continue;
        }
        let (Some(local), Some(remote)) = (inet::address(fd, false), inet::address(fd, true))
        else {
            continue;
        };
        let mut unsent: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int.
        unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) };
        out.push((
            fd,
            TcpEnd {
                inode,
                local: local.to_string(),
                remote: remote.to_string(),
                established: state == inet::TCP_ESTABLISHED,
                unsent: unsent.max(0) as u32,
            },
        ));
    }
    inet::forget_closed(&inodes);
    out
}

/// Carries out the coordinator's plan for this process's sockets (`plan`
/// `None`: no coordinator, every socket is outside and peeked). Returns
/// warnings.
pub fn prepare(ends: &[(i32, TcpEnd)], plan: Option<(&[u8], &[TcpRole])>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut saved = Vec::new();
    let mut draining = Vec::new();
    for (fd, e) in ends {
        let role = match plan {
            Some((_, roles)) => roles.iter().find(|r| r.inode == e.inode).copied(),
            None => None,
        }
        .unwrap_or(TcpRole {
            inode: e.inode,
            internal: false,
            leader: true,
            drain: false,
        });
        if role.leader && role.drain {
            draining.push((*fd, e.inode));
            continue;
        }
        saved.push(Saved {
            inode: e.inode,
            internal: role.internal,
            queue: role.leader.then(|| peek(*fd)),
        });
    }
    if let (Some((marker, _)), false) = (plan, draining.is_empty()) {
        for (inode, queue, warning) in drain(&draining, marker) {
            warnings.extend(warning);
            saved.push(Saved {
                inode,
                internal: true,
                queue: Some(queue),
            });
        }
    }
    if let Ok(mut g) = SAVED.lock() {
        *g = saved;
    }
    warnings
}

/// Forgets the sockets of the checkpoint just written.
pub fn clear() {
    if let Ok(mut g) = SAVED.lock() {
        g.clear();
    }
}

/// The receive queue, read without consuming it.
fn peek(fd: i32) -> Vec<u8> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize];
    // A TCP peek copies across the whole queue, up to the length asked.
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
    let r = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    buf.truncate(r.max(0) as usize);
    buf
}

/// One socket being drained and refilled.
struct Drain {
    fd: i32,
    inode: u64,
    /// Everything read; until the peer's marker is found, the program's
    /// bytes.
    input: Vec<u8>,
    /// Where the peer's marker starts in `input`, once found.
    marker_at: Option<usize>,
    /// What to write: our marker, then our drained bytes (length first),
    /// then the echo of the peer's.
    out: Vec<u8>,
    written: usize,
    /// The peer's drained bytes have all arrived and their echo is queued in `out`.
    echoed: bool,
    /// The connection ended (end of file or error) before the drain did.
    broken: Option<String>,
}

impl Drain {
    fn done(&self) -> bool {
        self.broken.is_some() || (self.echoed && self.written == self.out.len())
    }

    /// How many more bytes may be read: unbounded before the marker (the
    /// peer sends nothing after it until we have found it, then only its
    /// request), exactly the rest of its request after.
    fn want(&self, marker_len: usize) -> usize {
        let Some(at) = self.marker_at else {
            return 1 << 16;
        };
        let have = self.input.len() - at - marker_len;
        if have < 8 {
            return 8 - have;
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&self.input[at + marker_len..at + marker_len + 8]);
        (u64::from_le_bytes(len) as usize).saturating_sub(have - 8)
    }

    /// After new input: finds the marker, sends our bytes back to the peer
    /// for the echo, and queues the echo once the peer's request is whole.
    fn advance(&mut self, marker: &[u8], searched_from: usize) {
        if self.marker_at.is_none() {
            let from = searched_from.saturating_sub(marker.len() - 1);
            if let Some(p) = self.input[from..]
                .windows(marker.len())
                .position(|w| w == marker)
            {
                let at = from + p;
                self.marker_at = Some(at);
                let mine = self.input[..at].to_vec();
                self.out
                    .extend_from_slice(&(mine.len() as u64).to_le_bytes());
                self.out.extend_from_slice(&mine);
            }
        }
        if let Some(at) = self.marker_at
            && !self.echoed
            && self.want(marker.len()) == 0
        {
            let payload = self.input[at + marker.len() + 8..].to_vec();
            self.out.extend_from_slice(&payload);
            self.echoed = true;
        }
    }
}

/// Drains the sockets (fd, inode) and has their bytes echoed back (see the
/// module docs). Returns each socket's unread bytes, with a warning if the
/// connection broke on the way.
fn drain(sockets: &[(i32, u64)], marker: &[u8]) -> Vec<(u64, Vec<u8>, Option<String>)> {
    let mut ds: Vec<Drain> = sockets
        .iter()
        .map(|&(fd, inode)| Drain {
            fd,
            inode,
            input: Vec::new(),
            marker_at: None,
            out: marker.to_vec(),
            written: 0,
            echoed: false,
            broken: None,
        })
        .collect();
    let mut buf = vec![0u8; 1 << 16];
    let mut last_progress = Instant::now();
    let mut grown = false;
    while ds.iter().any(|d| !d.done()) {
        let mut progress = false;
        for d in ds.iter_mut().filter(|d| !d.done()) {
            // Write what is queued.
            while d.written < d.out.len() {
                let rest = &d.out[d.written..];
                // SAFETY: sending from a live buffer of the given length.
                let n = unsafe {
                    libc::send(
                        d.fd,
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n <= 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        d.broken = Some(format!("send: {e}"));
                    }
                    break;
                }
                d.written += n as usize;
                progress = true;
            }
            // Read what may be read.
            loop {
                let want = d.want(marker.len()).min(buf.len());
                if d.echoed || want == 0 || d.broken.is_some() {
                    break;
                }
                let (fd, out) = (d.fd, buf.as_mut_ptr().cast());
                // SAFETY: recv writes at most `want` ≤ `buf.len()` bytes.
                let n = unsafe { libc::recv(fd, out, want, libc::MSG_DONTWAIT) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        d.broken = Some(format!("recv: {e}"));
                    }
                    break;
                }
                if n == 0 {
                    d.broken = Some("the peer closed the connection".into());
                    break;
                }
                let from = d.input.len();
                d.input.extend_from_slice(&buf[..n as usize]);
                d.advance(marker, from);
                progress = true;
            }
        }
        if progress {
            last_progress = Instant::now();
            continue;
        }
        let stalled = last_progress.elapsed();
        if stalled > Duration::from_secs(2) && !grown {
            // An echo that does not fit where its bytes were: more room
            // on our side (this stops the buffer's automatic growth).
            grown = true;
            for d in ds.iter().filter(|d| !d.done() && d.echoed) {
                let room = i32::try_from(d.out.len() - d.written).unwrap_or(i32::MAX);
                hiber_sys::set_socket_int(d.fd, libc::SO_SNDBUF, room.saturating_mul(2));
            }
        }
        if stalled > DRAIN_STALL {
            for d in ds.iter_mut().filter(|d| !d.done()) {
                d.broken = Some(format!(
                    "no progress for {}s ({} of {} bytes written)",
                    DRAIN_STALL.as_secs(),
                    d.written,
                    d.out.len()
                ));
            }
            break;
        }
        let mut pfds: Vec<libc::pollfd> = ds
            .iter()
            .filter(|d| !d.done())
            .map(|d| libc::pollfd {
                fd: d.fd,
                events: if d.written < d.out.len() {
                    libc::POLLOUT
                } else {
                    0
                } | if d.echoed { 0 } else { libc::POLLIN },
                revents: 0,
            })
            .collect();
        // SAFETY: poll reads and writes `pfds.len()` pollfd entries.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
    }
    ds.into_iter()
        .map(|d| {
            let warning = d.broken.as_ref().map(|why| {
                format!(
                    "tcp socket:[{}]: draining failed ({why}); bytes in flight may be lost",
                    d.inode
                )
            });
            let queue = match d.marker_at {
                Some(at) => d.input[..at].to_vec(),
                None => d.input,
            };
            (d.inode, queue, warning)
        })
        .collect()
}

/// Records a connected TCP socket with what the checkpoint found for it.
pub fn save(fd: i32, inode: u64, flags: i32) -> FdKind {
    let family = inet::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(libc::AF_INET);
    let found = SAVED
        .lock()
        .ok()
        .and_then(|g| g.iter().find(|s| s.inode == inode).cloned());
    let (internal, queue) = match found {
        Some(s) => (s.internal, s.queue),
        // Not listed (no coordinator): outside, peeked now.
        None => (false, Some(peek(fd))),
    };
    let state = inet::tcp_state(fd).map_or(0, |(s, _)| s);
    // FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK: this end shut down writing.
    let shut_wr = matches!(state, 4 | 5 | 9 | 11);
    FdKind::TcpSocket {
        inode,
        flags,
        local: inet::address(fd, false)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        remote: inet::address(fd, true)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        internal,
        queue,
        shut_wr,
        options: inet::options(fd, inode, family, true),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    use super::*;

    fn inode(fd: i32) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    }

    /// Both ends of a loopback connection in one process, with a full
    /// stream queued each way: after the drain, each end's saved bytes are
    /// what was in flight towards it, and the echo has put them back, so
    /// the program reads exactly what it would have.
    #[test]
    fn drain_and_echo_put_every_byte_back() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let fill = |s: &mut std::net::TcpStream, seed: u8| {
            let mut sent = Vec::new();
            let chunk: Vec<u8> = (0..4096u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
            while let Ok(n) = s.write(&chunk) {
                sent.extend_from_slice(&chunk[..n]);
            }
            sent
        };
        let to_b = fill(&mut a, 3);
        let to_a = fill(&mut b, 7);
        assert!(to_b.len() > 100_000, "buffers full: {}", to_b.len());
        let marker: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5c).collect();
        let out = drain(
            &[
                (a.as_raw_fd(), inode(a.as_raw_fd())),
                (b.as_raw_fd(), inode(b.as_raw_fd())),
            ],
            &marker,
        );
        assert!(out.iter().all(|(_, _, w)| w.is_none()), "{out:?}");
        assert_eq!(out[0].1, to_a, "a's unread bytes");
        assert_eq!(out[1].1, to_b, "b's unread bytes");
        // The echo put them back in order: the program reads them again.
        let read_all = |s: &mut std::net::TcpStream, n: usize| {
            s.set_nonblocking(false).unwrap();
            let mut got = vec![0u8; n];
            s.read_exact(&mut got).unwrap();
            got
        };
        let (ta, tb) = (to_a.len(), to_b.len());
        let ra = std::thread::spawn(move || read_all(&mut a, ta));
        assert_eq!(read_all(&mut b, tb), to_b);
        assert_eq!(ra.join().unwrap(), to_a);
    }

    #[test]
    fn peek_leaves_the_queue() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        a.write_all(b"hello there").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(peek(b.as_raw_fd()), b"hello there");
        let mut got = [0u8; 11];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello there");
        let listed = ends();
        assert!(
            listed
                .iter()
                .any(|(_, e)| e.local == b.local_addr().unwrap().to_string()
                    && e.remote == a.local_addr().unwrap().to_string()
                    && e.established)
        );
    }
}
