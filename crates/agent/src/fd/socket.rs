//! UNIX-domain sockets.
//!
//! At a checkpoint a UNIX socket records its type, options and peer: the
//! peer's inode comes from `sock_diag` (`NETLINK_SOCK_DIAG`,
//! `UNIX_DIAG_PEER`, which needs no privilege), so `hiber restart` can pair
//! the two ends again. Every process of the computation is stopped, so the
//! receive queue is still; it is read without consuming it: `SO_PEEK_OFF`
//! makes each `MSG_PEEK` start where the previous one ended, which for a
//! datagram or seqpacket socket is the next message — so messages are kept
//! one by one, boundaries included — and for a stream socket the next
//! bytes. The program's own peek offset is put back after.
//!
//! At restart, a pair whose both ends belong to the computation is created
//! once by `hiber restart` (`socketpair` of the same type), given its
//! options back and refilled (what was queued for one end is written into
//! the other), and each end is inherited by every process that had it
//! ([`InheritedSocket`]); the agent puts it at its number. Any other socket
//! stays a placeholder (`/dev/null`) with a warning.

use hiber_image::meta::FdKind;
use hiber_protocol::handoff::InheritedSocket;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct nlmsghdr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct unix_diag_req`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct UnixDiagReq {
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

/// `struct unix_diag_msg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct UnixDiagMsg {
    family: u8,
    kind: u8,
    state: u8,
    pad: u8,
    ino: u32,
    cookie: [u32; 2],
}

/// `struct nlattr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct NlAttr {
    len: u16,
    kind: u16,
}

/// The request with its header, sent in one piece.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Request {
    hdr: NlMsgHdr,
    req: UnixDiagReq,
}

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
/// The socket state of a listening socket (`TCP_LISTEN`).
pub const STATE_LISTEN: u8 = 10;

/// What `sock_diag` says about one UNIX socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diag {
    pub sock_type: u8,
    pub state: u8,
    pub inode: u32,
    /// The connected peer's inode, if it has one.
    pub peer: Option<u32>,
    /// It had a peer, now closed (the kernel names it with inode 0).
    pub peer_closed: bool,
    /// `UNIX_DIAG_RQLEN`: for a listening socket, connections waiting and
    /// the backlog; otherwise bytes queued to read and to write.
    pub rqlen: Option<(u32, u32)>,
}

/// Parses the reply to an exact `SOCK_DIAG_BY_FAMILY` request for one UNIX
/// socket.
pub fn parse_diag_reply(buf: &[u8]) -> Result<Diag, String> {
    let (hdr, _) = NlMsgHdr::read_from_prefix(buf).map_err(|_| "short netlink reply")?;
    let len = (hdr.len as usize).min(buf.len());
    let size = std::mem::size_of::<NlMsgHdr>();
    if len < size {
        return Err(format!("netlink message of {} bytes", hdr.len));
    }
    let body = &buf[size..len];
    if hdr.kind == NLMSG_ERROR {
        let errno = i32::read_from_prefix(body).map_or(0, |(e, _)| -e);
        return Err(format!(
            "sock_diag: {}",
            std::io::Error::from_raw_os_error(errno)
        ));
    }
    if hdr.kind != SOCK_DIAG_BY_FAMILY {
        return Err(format!("unexpected netlink message type {}", hdr.kind));
    }
    let (msg, mut rest) = UnixDiagMsg::read_from_prefix(body).map_err(|_| "short unix_diag_msg")?;
    if i32::from(msg.family) != libc::AF_UNIX {
        return Err(format!("sock_diag answered for family {}", msg.family));
    }
    let mut peer = None;
    let mut peer_closed = false;
    let mut rqlen = None;
    while let Ok((attr, _)) = NlAttr::read_from_prefix(rest) {
        let alen = usize::from(attr.len);
        if alen < std::mem::size_of::<NlAttr>() || alen > rest.len() {
            break;
        }
        let payload = &rest[std::mem::size_of::<NlAttr>()..alen];
        if attr.kind == UNIX_DIAG_PEER
            && let Ok((p, _)) = u32::read_from_prefix(payload)
        {
            peer = (p != 0).then_some(p);
            peer_closed = p == 0;
        }
        if attr.kind == UNIX_DIAG_RQLEN
            && let Ok(([r, w], _)) = <[u32; 2]>::read_from_prefix(payload)
        {
            rqlen = Some((r, w));
        }
        // Attributes are 4-byte aligned.
        rest = &rest[alen.next_multiple_of(4).min(rest.len())..];
    }
    Ok(Diag {
        sock_type: msg.kind,
        state: msg.state,
        inode: msg.ino,
        peer,
        peer_closed,
        rqlen,
    })
}

/// Asks `sock_diag` about the UNIX socket with inode `inode`.
pub fn diag(inode: u32) -> Result<Diag, String> {
    // SAFETY: plain socket creation; the descriptor is closed below.
    let nl = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if nl < 0 {
        return Err(format!("netlink: {}", std::io::Error::last_os_error()));
    }
    // The kernel answers at once; a bound keeps a checkpoint from waiting
    // forever should it not.
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads one timeval from `timeout`.
    unsafe {
        libc::setsockopt(
            nl,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let req = Request {
        hdr: NlMsgHdr {
            len: std::mem::size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST,
            seq: inode,
            pid: 0,
        },
        req: UnixDiagReq {
            family: libc::AF_UNIX as u8,
            states: u32::MAX,
            ino: inode,
            show: UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN,
            // INET_DIAG_NOCOOKIE: look the socket up by inode alone.
            cookie: [u32::MAX; 2],
            ..UnixDiagReq::default()
        },
    };
    let bytes = req.as_bytes();
    let mut buf = vec![0u8; 8192];
    // Send from and receive into live buffers of the given lengths
    // on the netlink socket opened above (an unconnected netlink socket
    // sends to the kernel).
    // SAFETY: see just above.
    let r = unsafe {
        if libc::send(nl, bytes.as_ptr().cast(), bytes.len(), 0) != bytes.len() as isize {
            -1
        } else {
            libc::recv(nl, buf.as_mut_ptr().cast(), buf.len(), 0)
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the netlink socket opened above.
    unsafe { libc::close(nl) };
    if r < 0 {
        return Err(format!("sock_diag: {err}"));
    }
    buf.truncate(r as usize);
    parse_diag_reply(&buf)
}

/// An integer socket option, or `None`.
fn get_int(fd: i32, opt: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let (out, len_out) = ((&raw mut v).cast(), &raw mut len);
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, out, len_out) };
    (r == 0).then_some(v)
}

/// Sets an integer socket option (see [`hiber_sys::set_socket_int`]).
pub fn set_int(fd: i32, opt: i32, v: i32) -> bool {
    hiber_sys::set_socket_int(fd, opt, v)
}

/// Records a socket: a connected UNIX socket whose peer `sock_diag` names
/// becomes [`FdKind::UnixSocket`], a listening one
/// [`FdKind::UnixListener`]; any other socket a placeholder.
pub fn save(fd: i32, inode: u64, flags: i32) -> FdKind {
    let placeholder = FdKind::Socket { inode, flags };
    match get_int(fd, libc::SO_DOMAIN) {
        Some(libc::AF_UNIX) => {}
        Some(family @ (libc::AF_INET | libc::AF_INET6)) => {
            return super::inet::save(fd, inode, flags, family);
        }
        _ => return placeholder,
    }
    let Ok(ino32) = u32::try_from(inode) else {
        return placeholder;
    };
    let dgram = get_int(fd, libc::SO_TYPE) == Some(libc::SOCK_DGRAM);
    let peer = match diag(ino32) {
        // A datagram socket connected to a named one that is not connected
        // back (a client of a server), or not connected at all.
        Ok(Diag { peer: Some(p), .. }) if dgram && !connected_back(p, ino32) => {
            return datagram(fd, inode, flags);
        }
        Ok(Diag {
            peer: None,
            peer_closed: false,
            state,
            ..
        }) if dgram && state != STATE_LISTEN => return datagram(fd, inode, flags),
        Ok(Diag { peer: Some(p), .. }) => u64::from(p),
        Ok(Diag {
            peer_closed: true, ..
        }) => 0,
        Ok(d) if d.state == STATE_LISTEN => return listener(fd, inode, flags, &d),
        _ => return placeholder,
    };
    let sock_type = get_int(fd, libc::SO_TYPE).unwrap_or(libc::SOCK_STREAM);
    FdKind::UnixSocket {
        inode,
        peer,
        sock_type,
        flags,
        sndbuf: get_int(fd, libc::SO_SNDBUF).unwrap_or(0),
        rcvbuf: get_int(fd, libc::SO_RCVBUF).unwrap_or(0),
        passcred: get_int(fd, libc::SO_PASSCRED).unwrap_or(0) != 0,
        peek_off: get_int(fd, libc::SO_PEEK_OFF).unwrap_or(-1),
        queue: peek_queue(fd, sock_type),
        peer_gone: peer == 0,
    }
}

/// `peer`'s own peer is `me` (the two ends of a pair).
fn connected_back(peer: u32, me: u32) -> bool {
    diag(peer).is_ok_and(|d| d.peer == Some(me))
}

fn datagram(fd: i32, inode: u64, flags: i32) -> FdKind {
    FdKind::UnixDgram {
        inode,
        flags,
        name: sock_name(fd, false),
        peer_name: sock_name(fd, true),
        cwd: std::fs::read_link("/proc/self/cwd")
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        queue: peek_queue(fd, libc::SOCK_DGRAM),
        sndbuf: get_int(fd, libc::SO_SNDBUF).unwrap_or(0),
        rcvbuf: get_int(fd, libc::SO_RCVBUF).unwrap_or(0),
        passcred: get_int(fd, libc::SO_PASSCRED).unwrap_or(0) != 0,
    }
}

fn listener(fd: i32, inode: u64, flags: i32, d: &Diag) -> FdKind {
    let (pending, backlog) = d.rqlen.unwrap_or((0, libc::SOMAXCONN as u32));
    let cwd = std::fs::read_link("/proc/self/cwd")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    FdKind::UnixListener {
        inode,
        sock_type: get_int(fd, libc::SO_TYPE).unwrap_or(libc::SOCK_STREAM),
        flags,
        name: sock_name(fd, false),
        cwd,
        backlog,
        pending,
        sndbuf: get_int(fd, libc::SO_SNDBUF).unwrap_or(0),
        rcvbuf: get_int(fd, libc::SO_RCVBUF).unwrap_or(0),
        passcred: get_int(fd, libc::SO_PASSCRED).unwrap_or(0) != 0,
    }
}

/// `sun_path` of the socket's own address (`peer`: of its peer's): a
/// path without its trailing NUL, or an abstract name (leading NUL, exact
/// length); empty if unbound.
fn sock_name(fd: i32, peer: bool) -> Vec<u8> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let (a, l) = ((&raw mut addr).cast(), &raw mut len);
    // SAFETY: the call writes at most `len` bytes into `addr`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, a, l)
        } else {
            libc::getsockname(fd, a, l)
        }
    };
    if r != 0 {
        return Vec::new();
    }
    let n = (len as usize)
        .saturating_sub(std::mem::size_of::<libc::sa_family_t>())
        .min(addr.sun_path.len());
    let mut name: Vec<u8> = addr.sun_path[..n].iter().map(|&c| c as u8).collect();
    if name.first() != Some(&0) {
        while name.last() == Some(&0) {
            name.pop();
        }
    }
    name
}

/// Most a receive queue is read for (a guard against a queue that keeps
/// answering).
const QUEUE_LIMIT: usize = 256 << 20;

/// The receive queue of `fd`, left in place: one element per message
/// (datagram, seqpacket), or the bytes in pieces (stream).
fn peek_queue(fd: i32, sock_type: i32) -> Vec<Vec<u8>> {
    let old = get_int(fd, libc::SO_PEEK_OFF).unwrap_or(-1);
    if !set_int(fd, libc::SO_PEEK_OFF, 0) {
        return Vec::new();
    }
    let stream = sock_type == libc::SOCK_STREAM;
    let mut buf = vec![0u8; 1 << 16];
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut msg = Vec::new();
    let mut total = 0usize;
    // MSG_TRUNC on a datagram peek returns the message's real length, so a
    // message longer than `buf` is read in several peeks.
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | if stream { 0 } else { libc::MSG_TRUNC };
    while total < QUEUE_LIMIT && out.len() < QUEUE_LIMIT / 16 {
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if r < 0 || (r == 0 && sock_type != libc::SOCK_DGRAM) {
            // Queue empty (EAGAIN), or end of file: a stream or seqpacket
            // socket whose peer shut down reads 0.
            break;
        }
        let r = r as usize;
        let got = r.min(buf.len());
        msg.extend_from_slice(&buf[..got]);
        total += got;
        if stream || r <= buf.len() {
            out.push(std::mem::take(&mut msg));
        }
    }
    if !msg.is_empty() {
        out.push(msg);
    }
    set_int(fd, libc::SO_PEEK_OFF, if old < 0 { -1 } else { old });
    if stream {
        // One piece is enough for a byte stream.
        return vec![out.concat()]
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
    }
    out
}

/// The inherited end that stands for a saved socket, if `hiber restart`
/// recreated its pair.
pub fn inherited(inode: u64, sockets: &[InheritedSocket]) -> Option<&InheritedSocket> {
    sockets.iter().find(|s| s.inode == inode)
}

/// A new descriptor for the saved end: a duplicate of the inherited end
/// (one open file description per end, shared as after a fork), with the
/// saved status flags (O_NONBLOCK). Socket options came back with the pair.
pub fn restore(s: &InheritedSocket, flags: i32) -> Result<i32, String> {
    // SAFETY: duplicating an inherited descriptor.
    let fd = unsafe { libc::fcntl(s.fd, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!(
            "socket:[{}]: {}",
            s.inode,
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: flag change on our own descriptor.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            flags & (libc::O_NONBLOCK | libc::O_ASYNC),
        )
    };
    Ok(fd)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn reply(attrs: &[(u16, &[u8])], kind: u16) -> Vec<u8> {
        let msg = UnixDiagMsg {
            family: libc::AF_UNIX as u8,
            kind: libc::SOCK_SEQPACKET as u8,
            state: 1,
            ino: 4242,
            ..UnixDiagMsg::default()
        };
        let mut body = msg.as_bytes().to_vec();
        for (k, p) in attrs {
            let a = NlAttr {
                len: (4 + p.len()) as u16,
                kind: *k,
            };
            body.extend_from_slice(a.as_bytes());
            body.extend_from_slice(p);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let hdr = NlMsgHdr {
            len: (16 + body.len()) as u32,
            kind,
            ..NlMsgHdr::default()
        };
        let mut out = hdr.as_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn peer_is_found_among_attributes() {
        let name: &[u8] = b"\0abstract";
        let r = reply(&[(0, name), (UNIX_DIAG_PEER, &4243u32.to_ne_bytes())], 20);
        let d = parse_diag_reply(&r).unwrap();
        assert_eq!(
            d,
            Diag {
                sock_type: libc::SOCK_SEQPACKET as u8,
                state: 1,
                inode: 4242,
                peer: Some(4243),
                peer_closed: false,
                rqlen: None,
            }
        );
    }

    #[test]
    fn peer_inode_zero_means_closed() {
        let d = parse_diag_reply(&reply(&[(UNIX_DIAG_PEER, &0u32.to_ne_bytes())], 20)).unwrap();
        assert_eq!(d.peer, None);
        assert!(d.peer_closed);
    }

    #[test]
    fn listener_queue_lengths() {
        let mut rq = 2u32.to_ne_bytes().to_vec();
        rq.extend_from_slice(&128u32.to_ne_bytes());
        let d = parse_diag_reply(&reply(&[(UNIX_DIAG_RQLEN, &rq)], 20)).unwrap();
        assert_eq!(d.rqlen, Some((2, 128)));
        assert_eq!(d.peer, None);
    }

    #[test]
    fn no_peer_attribute_means_no_peer() {
        let d = parse_diag_reply(&reply(&[], 20)).unwrap();
        assert_eq!(d.peer, None);
    }

    #[test]
    fn netlink_error_is_reported() {
        let mut r = NlMsgHdr {
            len: 36,
            kind: NLMSG_ERROR,
            ..NlMsgHdr::default()
        }
        .as_bytes()
        .to_vec();
        r.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        r.resize(36, 0);
        assert!(parse_diag_reply(&r).is_err());
        assert!(parse_diag_reply(&r[..8]).is_err());
    }

    #[test]
    fn truncated_attribute_is_ignored() {
        let mut r = reply(&[(UNIX_DIAG_PEER, &7u32.to_ne_bytes())], 20);
        r.truncate(r.len() - 2);
        let hdr_len = r.len() as u32;
        r[..4].copy_from_slice(&hdr_len.to_ne_bytes());
        assert_eq!(parse_diag_reply(&r).unwrap().peer, None);
    }

    /// The real thing: a socketpair's ends name each other, and a
    /// seqpacket or datagram queue comes back message by message without
    /// being consumed.
    #[test]
    fn socketpair_peer_and_queue() {
        socketpair_peer_and_queue_of(libc::SOCK_SEQPACKET);
        socketpair_peer_and_queue_of(libc::SOCK_DGRAM);
    }

    /// A message longer than the peek buffer is read in several peeks.
    #[test]
    fn long_datagram_is_one_message() {
        let mut sv = [0i32; 2];
        // SAFETY: socketpair writes two descriptors into `sv`.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, sv.as_mut_ptr()) };
        assert_eq!(r, 0);
        let big: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        set_int(sv[1], libc::SO_SNDBUF, 1 << 20);
        set_int(sv[0], libc::SO_RCVBUF, 1 << 20);
        for m in [&big[..], b"after"] {
            // SAFETY: sending from a live buffer.
            let n = unsafe { libc::send(sv[1], m.as_ptr().cast(), m.len(), 0) };
            assert_eq!(n, m.len() as isize, "{}", std::io::Error::last_os_error());
        }
        let q = peek_queue(sv[0], libc::SOCK_DGRAM);
        assert_eq!(q, vec![big, b"after".to_vec()]);
        // SAFETY: closing our descriptors.
        unsafe {
            libc::close(sv[0]);
            libc::close(sv[1]);
        }
    }

    fn socketpair_peer_and_queue_of(ty: i32) {
        use std::os::unix::fs::MetadataExt;
        let mut sv = [0i32; 2];
        // SAFETY: socketpair writes two descriptors into `sv`.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, sv.as_mut_ptr()) };
        assert_eq!(r, 0);
        let ino = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        for m in [&b"first"[..], b"second!", b"third message"] {
            // SAFETY: sending from a live buffer.
            let n = unsafe { libc::send(sv[1], m.as_ptr().cast(), m.len(), 0) };
            assert_eq!(n, m.len() as isize);
        }
        let kind = save(sv[0], ino(sv[0]), 2);
        let FdKind::UnixSocket {
            peer,
            sock_type,
            queue,
            peek_off,
            peer_gone,
            ..
        } = kind
        else {
            panic!("not a unix socket: {kind:?}");
        };
        assert_eq!(peer, ino(sv[1]));
        assert_eq!(sock_type, ty);
        assert_eq!(peek_off, -1);
        assert!(!peer_gone);
        assert_eq!(
            queue,
            vec![
                b"first".to_vec(),
                b"second!".to_vec(),
                b"third message".to_vec()
            ]
        );
        let mut buf = [0u8; 64];
        // SAFETY: receiving into a live buffer.
        let n = unsafe { libc::recv(sv[0], buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(&buf[..n as usize], b"first", "nothing was consumed");
        // SAFETY: closing our descriptor.
        unsafe { libc::close(sv[1]) };
        let FdKind::UnixSocket {
            peer_gone, queue, ..
        } = save(sv[0], ino(sv[0]), 2)
        else {
            panic!("a socket whose peer closed is still recorded");
        };
        assert!(peer_gone);
        assert_eq!(queue.len(), 2, "what the peer sent before it closed");
        // SAFETY: closing our descriptor.
        unsafe { libc::close(sv[0]) };
    }
}

#[cfg(test)]
mod dgram_tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    /// A bound server with messages from a connected and an unconnected
    /// client: saved with its name and queue, nothing consumed.
    #[test]
    fn a_datagram_server_and_its_clients() {
        let dir = std::env::temp_dir().join(format!("hiber-dg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let c1 = UnixDatagram::unbound().unwrap();
        c1.connect(&path).unwrap();
        let c2 = UnixDatagram::unbound().unwrap();
        for i in 0..4u8 {
            c1.send(&[1, i]).unwrap();
            c2.send_to(&[2, i, i], &path).unwrap();
        }
        let ino = |fd: i32| {
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        let k = save(server.as_raw_fd(), ino(server.as_raw_fd()), 2);
        let FdKind::UnixDgram {
            name,
            peer_name,
            queue,
            ..
        } = k
        else {
            panic!("{k:?}");
        };
        assert_eq!(name, path.as_os_str().as_encoded_bytes());
        assert!(peer_name.is_empty());
        assert_eq!(queue.len(), 8);
        let k = save(c1.as_raw_fd(), ino(c1.as_raw_fd()), 2);
        let FdKind::UnixDgram { peer_name, .. } = k else {
            panic!("{k:?}");
        };
        assert_eq!(peer_name, path.as_os_str().as_encoded_bytes());
        let mut buf = [0u8; 8];
        for i in 0..4u8 {
            assert_eq!(server.recv(&mut buf).unwrap(), 2);
            assert_eq!(&buf[..2], &[1, i]);
            assert_eq!(server.recv(&mut buf).unwrap(), 3);
            assert_eq!(&buf[..3], &[2, i, i]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
