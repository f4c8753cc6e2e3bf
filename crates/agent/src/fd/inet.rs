//! IPv4 and IPv6 sockets: addresses, options, and the sockets that are not
//! connected TCP streams (listening or unconnected TCP, UDP); connected TCP
//! is `tcp.rs`.
//!
//! A socket's options are read back with `getsockopt` at the checkpoint,
//! except the buffer sizes: a TCP socket's `SO_SNDBUF`/`SO_RCVBUF` grow by
//! themselves until the program sets one, and setting one stops that, so
//! they are restored only if the program set them. The `setsockopt`
//! wrapper notes those two in a small table of atomics (no lock: a fork
//! child must never find it held).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use hiber_image::meta::{FdKind, SockOpt};

/// Options read at the checkpoint and set again at restart: (level, name,
/// value size). `IPV6_V6ONLY` must be set before `bind`; `hiber restart`
/// knows.
const OPTIONS: &[(i32, i32, usize)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR, 4),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT, 4),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 4),
    (libc::SOL_SOCKET, libc::SO_BROADCAST, 4),
    (libc::SOL_SOCKET, libc::SO_OOBINLINE, 4),
    (libc::SOL_SOCKET, libc::SO_RCVLOWAT, 4),
    (libc::SOL_SOCKET, libc::SO_LINGER, 8),
    (libc::SOL_SOCKET, libc::SO_RCVTIMEO, 16),
    (libc::SOL_SOCKET, libc::SO_SNDTIMEO, 16),
];
const TCP_OPTIONS: &[(i32, i32, usize)] = &[
    (libc::IPPROTO_TCP, libc::TCP_NODELAY, 4),
    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 4),
    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 4),
    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 4),
    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 4),
    (libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, 4),
    (libc::IPPROTO_TCP, libc::TCP_CORK, 4),
];
const V4_OPTIONS: &[(i32, i32, usize)] = &[(libc::IPPROTO_IP, libc::IP_TOS, 4)];
const V6_OPTIONS: &[(i32, i32, usize)] = &[
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 4),
    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS, 4),
];

/// Sockets whose buffer sizes the program set: (inode, value). Slots are
/// claimed with a compare-and-swap on the inode; a full table forgets the
/// oldest use (the size then grows by itself after a restart).
const SLOTS: usize = 64;
static SET_INODE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// `SO_SNDBUF` in the low 32 bits, `SO_RCVBUF` in the high ones (0: not set).
static SET_SIZES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn inode_of_fd(fd: i32) -> u64 {
    // SAFETY: all-zero is a valid `stat`; fstat writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see just above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return 0;
    }
    st.st_ino
}

/// Called by the `setsockopt` wrapper after a successful call.
pub fn note_setsockopt(fd: i32, level: i32, name: i32, value: i32) {
    if level != libc::SOL_SOCKET || (name != libc::SO_SNDBUF && name != libc::SO_RCVBUF) {
        return;
    }
    let inode = inode_of_fd(fd);
    if inode == 0 {
        return;
    }
    let v = u64::from(value.max(1) as u32);
    let slot = (0..SLOTS)
        .find(|&i| SET_INODE[i].load(Relaxed) == inode)
        .or_else(|| {
            (0..SLOTS).find(|&i| {
                SET_INODE[i]
                    .compare_exchange(0, inode, Relaxed, Relaxed)
                    .is_ok()
            })
        })
        .unwrap_or_else(|| {
            let i = (inode as usize) % SLOTS;
            SET_INODE[i].store(inode, Relaxed);
            SET_SIZES[i].store(0, Relaxed);
            i
        });
    let shift = if name == libc::SO_SNDBUF { 0 } else { 32 };
    let mask = 0xffff_ffffu64 << shift;
    let _ =
        SET_SIZES[slot].fetch_update(Relaxed, Relaxed, |old| Some((old & !mask) | (v << shift)));
}

/// Notes the buffer sizes among `options` (a restored socket's) as set by
/// the program.
pub fn note_options(fd: i32, options: &[SockOpt]) {
    for o in options {
        if let Ok(v) = <[u8; 4]>::try_from(&o.value[..]) {
            note_setsockopt(fd, o.level, o.name, i32::from_ne_bytes(v));
        }
    }
}

/// The buffer sizes the program set on socket `inode` (0: not set).
fn set_sizes(inode: u64) -> (i32, i32) {
    (0..SLOTS)
        .find(|&i| SET_INODE[i].load(Relaxed) == inode)
        .map_or((0, 0), |i| {
            let v = SET_SIZES[i].load(Relaxed);
            (v as u32 as i32, (v >> 32) as u32 as i32)
        })
}

/// Forgets sockets that are gone (called at a checkpoint, with the list of
/// the process's socket inodes).
pub fn forget_closed(alive: &[u64]) {
    for i in 0..SLOTS {
        let ino = SET_INODE[i].load(Relaxed);
        if ino != 0 && !alive.contains(&ino) {
            SET_SIZES[i].store(0, Relaxed);
            SET_INODE[i].store(0, Relaxed);
        }
    }
}

pub fn get_int(fd: i32, level: i32, name: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let (out, len_out) = ((&raw mut v).cast(), &raw mut len);
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe { libc::getsockopt(fd, level, name, out, len_out) };
    (r == 0).then_some(v)
}

/// The options of socket `fd` worth setting again (see [`OPTIONS`]), and
/// the buffer sizes the program set itself.
pub fn options(fd: i32, inode: u64, family: i32, tcp: bool) -> Vec<SockOpt> {
    let fam = if family == libc::AF_INET6 {
        V6_OPTIONS
    } else {
        V4_OPTIONS
    };
    let proto = if tcp { TCP_OPTIONS } else { &[] };
    let mut out = Vec::new();
    for &(level, name, size) in OPTIONS.iter().chain(proto).chain(fam) {
        let mut buf = [0u8; 16];
        let mut len = size as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` (≤ 16) bytes into `buf`.
        let r = unsafe { libc::getsockopt(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
        if r == 0 {
            out.push(SockOpt {
                level,
                name,
                value: buf[..(len as usize).min(16)].to_vec(),
            });
        }
    }
    let (snd, rcv) = set_sizes(inode);
    for (name, v) in [(libc::SO_SNDBUF, snd), (libc::SO_RCVBUF, rcv)] {
        if v > 0 {
            out.push(SockOpt {
                level: libc::SOL_SOCKET,
                name,
                value: v.to_ne_bytes().to_vec(),
            });
        }
    }
    out
}

/// `getsockname` (`peer == false`) or `getpeername` as a `SocketAddr`.
pub fn address(fd: i32, peer: bool) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let (p, l) = ((&raw mut ss).cast(), &raw mut len);
    // SAFETY: the call writes at most `len` bytes into `ss`.
    let r = unsafe {
        if peer {
            libc::getpeername(fd, p, l)
        } else {
            libc::getsockname(fd, p, l)
        }
    };
    if r != 0 {
        return None;
    }
    from_storage(&ss)
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            // SAFETY: see just above.
            let a = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in>()) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in6>()) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A bound address worth binding again: anything but the wildcard address
/// with port 0.
fn bound(a: Option<SocketAddr>) -> String {
    match a {
        Some(a) if a.port() != 0 || !a.ip().is_unspecified() => a.to_string(),
        _ => String::new(),
    }
}

/// `TCP_INFO`'s state and, for a listening socket, its backlog
/// (`tcpi_sacked` is `sk_max_ack_backlog` then).
pub fn tcp_state(fd: i32) -> Option<(u8, u32)> {
    // SAFETY: tcp_info is plain data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let (p, l) = ((&raw mut info).cast(), &raw mut len);
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, p, l) };
    (r == 0).then_some((info.tcpi_state, info.tcpi_sacked))
}

pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;

/// Records an IPv4/IPv6 socket.
pub fn save(fd: i32, inode: u64, flags: i32, family: i32) -> FdKind {
    let sock_type = get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).unwrap_or(0);
    let protocol = get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(0);
    let tcp = sock_type == libc::SOCK_STREAM && protocol == libc::IPPROTO_TCP;
    if tcp && let Some((state, backlog)) = tcp_state(fd) {
        let unconnected = matches!(state, TCP_CLOSE | TCP_LISTEN | TCP_SYN_SENT);
        if !unconnected {
            return super::tcp::save(fd, inode, flags);
        }
        return FdKind::InetSocket {
            inode,
            flags,
            family,
            sock_type,
            protocol,
            local: bound(address(fd, false)),
            // A connection still being made is made again.
            remote: if state == TCP_SYN_SENT {
                address(fd, true).map(|a| a.to_string()).unwrap_or_default()
            } else {
                String::new()
            },
            listen: (state == TCP_LISTEN).then_some(backlog),
            queued: false,
            options: options(fd, inode, family, true),
        };
    }
    if sock_type != libc::SOCK_DGRAM {
        // Raw, SCTP, ...: not recreated.
        return FdKind::Socket { inode, flags };
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
    FdKind::InetSocket {
        inode,
        flags,
        family,
        sock_type,
        protocol,
        local: bound(address(fd, false)),
        remote: address(fd, true).map(|a| a.to_string()).unwrap_or_default(),
        listen: None,
        queued: queued > 0,
        options: options(fd, inode, family, false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bound_udp_socket_and_a_listener() {
        use std::os::fd::AsRawFd;
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.connect(peer.local_addr().unwrap()).unwrap();
        peer.send_to(b"x", u.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let k = save(u.as_raw_fd(), 1, 2, libc::AF_INET);
        let FdKind::InetSocket {
            local,
            remote,
            queued,
            listen,
            ..
        } = k
        else {
            panic!("{k:?}");
        };
        assert_eq!(local, u.local_addr().unwrap().to_string());
        assert_eq!(remote, peer.local_addr().unwrap().to_string());
        assert!(queued);
        assert_eq!(listen, None);

        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        let k = save(l.as_raw_fd(), 2, 2, libc::AF_INET6);
        let FdKind::InetSocket {
            local,
            listen,
            options,
            ..
        } = k
        else {
            panic!("{k:?}");
        };
        assert_eq!(local, l.local_addr().unwrap().to_string());
        assert_eq!(listen, Some(128), "std listens with a backlog of 128");
        assert!(options.iter().any(|o| o.name == libc::IPV6_V6ONLY));
    }

    #[test]
    fn buffer_sizes_are_noted_per_socket() {
        use std::os::fd::AsRawFd;
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = u.as_raw_fd();
        let ino = inode_of_fd(fd);
        assert_eq!(set_sizes(ino), (0, 0));
        note_setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 65536);
        note_setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4096);
        note_setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        assert_eq!(set_sizes(ino), (4096, 65536));
        forget_closed(&[]);
        assert_eq!(set_sizes(ino), (0, 0));
    }
}
