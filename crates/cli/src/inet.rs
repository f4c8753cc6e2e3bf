//! TCP and UDP sockets (IPv4, IPv6) of a restart.
//!
//! Every TCP connection between two processes of the images is made again
//! here, once: a temporary listener bound to one end's old address, a
//! socket bound to the other end's old address connects to it, and the
//! accepted socket stands for the first end — so on the same host both ends
//! keep their addresses and ports (`getsockname`/`getpeername` tell what
//! they told), and elsewhere they get the closest (the same port on the
//! loopback address, or any). The bytes each end had not read are written
//! by the other end, in order, before the program runs; an end that had
//! shut down writing does so again after. A connection whose peer is
//! outside the computation (or not among the images) comes back *closed*:
//! the program reads what it had not read yet, then end of file — as after
//! the peer closed — and a warning names the peer.
//!
//! Then listening sockets are bound to their address and port again and
//! listen (an error names the address when that is taken), unconnected TCP
//! sockets are bound again, and UDP sockets bound and connected again
//! (datagrams that were waiting are not kept, with a warning). Options come
//! back last, once every address is bound, since `SO_REUSEADDR` decides
//! whether the next bind to a port in use succeeds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, bail};
use hiber_image::Image;
use hiber_image::meta::{FdKind, SockOpt};
use hiber_protocol::TcpEnd;

use crate::sockets::{add, collect};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// One connected TCP socket of the images.
struct End {
    local: String,
    remote: String,
    internal: bool,
    queue: Option<Vec<u8>>,
    shut_wr: bool,
    options: Vec<SockOpt>,
}

/// One unconnected TCP socket or UDP socket of the images.
struct Unconnected {
    family: i32,
    sock_type: i32,
    protocol: i32,
    local: String,
    remote: String,
    listen: Option<u32>,
    queued: bool,
    options: Vec<SockOpt>,
}

/// Creates the images' TCP and UDP sockets; each becomes an element of
/// `ends` (inode, descriptor), and `users[i]` lists the ends image `i` has.
pub fn create(
    images: &[&Image],
    ends: &mut Vec<(u64, OwnedFd)>,
    users: &mut [Vec<usize>],
) -> anyhow::Result<()> {
    let tcp = collect(
        images,
        |k| match k {
            FdKind::TcpSocket {
                inode,
                local,
                remote,
                internal,
                queue,
                shut_wr,
                options,
                ..
            } => Some((
                inode,
                End {
                    local,
                    remote,
                    internal,
                    queue,
                    shut_wr,
                    options,
                },
            )),
            _ => None,
        },
        // The process that saved the socket's bytes may come later.
        |e, later| {
            if e.queue.is_none() {
                e.queue = later.queue;
            }
        },
    )?;
    let other = collect(
        images,
        |k| match k {
            FdKind::InetSocket {
                inode,
                family,
                sock_type,
                protocol,
                local,
                remote,
                listen,
                queued,
                options,
                ..
            } => Some((
                inode,
                Unconnected {
                    family,
                    sock_type,
                    protocol,
                    local,
                    remote,
                    listen,
                    queued,
                    options,
                },
            )),
            _ => None,
        },
        |_, _| {},
    )?;

    // Connections first: their temporary listeners take the ports the
    // program's listeners get back after.
    let key = |host: &str, local: &str, remote: &str| {
        let (h, l, r) = TcpEnd::key(host, local, remote);
        (h.to_string(), l.to_string(), r.to_string())
    };
    let by_key: HashMap<(String, String, String), usize> = tcp
        .iter()
        .enumerate()
        .map(|(j, f)| (key(&f.host, &f.what.local, &f.what.remote), j))
        .collect();
    let mut made: Vec<Option<Socket>> = (0..tcp.len()).map(|_| None).collect();
    for j in 0..tcp.len() {
        if made[j].is_some() {
            continue;
        }
        let e = &tcp[j].what;
        let peer = if e.internal {
            by_key
                .get(&key(&tcp[j].host, &e.remote, &e.local))
                .copied()
                .filter(|&k| k != j && made[k].is_none())
        } else {
            None
        };
        match peer {
            Some(k) => {
                let (a, b) = connection(e, &tcp[k].what)
                    .with_context(|| format!("reconnecting tcp {} <-> {}", e.local, e.remote))?;
                made[j] = Some(a);
                made[k] = Some(b);
            }
            None => {
                let why = if e.internal {
                    "its peer is not among the images restarted"
                } else {
                    "it leads outside the computation"
                };
                let unread = e.queue.as_ref().map_or(0, Vec::len);
                tracing::warn!(local = %e.local, remote = %e.remote, "{why}: restored closed");
                eprintln!(
                    "hiber: warning: tcp connection {} -> {}: {why}; it comes back closed \
                     (the program reads the {unread} bytes it had not read, then end of file)",
                    e.local, e.remote
                );
                made[j] = Some(closed(e).with_context(|| {
                    format!("tcp {} -> {} (restored closed)", e.local, e.remote)
                })?);
            }
        }
    }
    let mut later = Vec::new();
    for u in &other {
        let what = &u.what;
        let s = unconnected(what)
            .with_context(|| format!("{} socket:[{}] {}", kind_name(what), u.inode, what.local))?;
        later.push(s);
    }
    // Options last (see the module docs), then every socket is an end.
    let conns = tcp.iter().map(|f| (f.inode, &f.users, &f.what.options));
    let rest = other.iter().map(|f| (f.inode, &f.users, &f.what.options));
    // Every connection was made above, as itself or as a peer.
    let made: Vec<Socket> = made
        .into_iter()
        .map(|m| m.context("a tcp connection was not made"))
        .collect::<anyhow::Result<_>>()?;
    let made = made.into_iter().chain(later);
    for ((inode, who, options), s) in conns.chain(rest).zip(made) {
        set_options(&s, options, false);
        add(ends, users, inode, OwnedFd::from(s), who);
    }
    Ok(())
}

fn kind_name(u: &Unconnected) -> &'static str {
    match (u.sock_type, u.listen) {
        (libc::SOCK_STREAM, Some(_)) => "listening tcp",
        (libc::SOCK_STREAM, None) => "tcp",
        (libc::SOCK_DGRAM, _) => "udp",
        _ => "inet",
    }
}

fn parse(a: &str) -> anyhow::Result<SocketAddr> {
    a.parse()
        .with_context(|| format!("bad socket address {a:?} in the image"))
}

fn new_socket(
    addr: &SocketAddr,
    ty: Type,
    proto: Protocol,
    opts: &[SockOpt],
) -> anyhow::Result<Socket> {
    let s = Socket::new(Domain::for_address(*addr), ty.cloexec(), Some(proto)).context("socket")?;
    // IPV6_V6ONLY only counts before bind.
    set_options(&s, opts, true);
    Ok(s)
}

/// The loopback address of `a`'s family, port 0.
fn loopback_like(a: &SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
    }
}

/// Binds `s` to `want` if that is possible here, else to the loopback
/// address of its family (`any_port`: any port; else no bind at all).
fn bind_near(s: &Socket, want: &SocketAddr, any_port: bool) -> anyhow::Result<()> {
    s.set_reuse_address(true)?;
    if s.bind(&SockAddr::from(*want)).is_ok() {
        return Ok(());
    }
    if any_port {
        s.bind(&SockAddr::from(loopback_like(want)))
            .context("bind to the loopback address")?;
    }
    Ok(())
}

/// `target` in the form a socket of `family_of`'s family connects to.
fn reachable(target: SocketAddr, family_of: &SocketAddr) -> SocketAddr {
    match (target, family_of) {
        (SocketAddr::V6(t), SocketAddr::V4(_)) => t
            .ip()
            .to_ipv4_mapped()
            .map_or(target, |v4| SocketAddr::from((v4, t.port()))),
        (SocketAddr::V4(t), SocketAddr::V6(_)) => {
            SocketAddr::from((t.ip().to_ipv6_mapped(), t.port()))
        }
        _ => target,
    }
}

/// A connected pair standing for `a` and `b`, refilled.
fn connection(a: &End, b: &End) -> anyhow::Result<(Socket, Socket)> {
    let (a_addr, b_addr) = (parse(&a.local)?, parse(&b.local)?);
    let l = new_socket(&a_addr, Type::STREAM, Protocol::TCP, &a.options)?;
    bind_near(&l, &a_addr, true)?;
    l.listen(1).context("listen")?;
    let target = l
        .local_addr()?
        .as_socket()
        .context("the temporary listener has no address")?;
    let target = reachable(target, &b_addr);
    let mut c = new_socket(&b_addr, Type::STREAM, Protocol::TCP, &b.options)?;
    bind_near(&c, &b_addr, false)?;
    if c.connect(&SockAddr::from(target)).is_err() {
        // Its old address cannot connect there again yet (a lingering
        // connection of the killed process): any address will do.
        c = new_socket(&b_addr, Type::STREAM, Protocol::TCP, &b.options)?;
        c.connect(&SockAddr::from(target))
            .with_context(|| format!("connect to {target}"))?;
    }
    let (s, _) = l.accept().context("accept")?;
    drop(l);
    // What was queued for A arrives at A: written by B's end.
    refill(&c, a.queue.as_deref().unwrap_or_default(), &a.local)?;
    refill(&s, b.queue.as_deref().unwrap_or_default(), &b.local)?;
    if a.shut_wr {
        s.shutdown(std::net::Shutdown::Write)?;
    }
    if b.shut_wr {
        c.shutdown(std::net::Shutdown::Write)?;
    }
    Ok((s, c))
}

/// A connection for `e` whose other end is closed once `e`'s unread bytes
/// are written.
fn closed(e: &End) -> anyhow::Result<Socket> {
    let local = parse(&e.local)?;
    let lo = loopback_like(&local);
    let l = Socket::new(
        Domain::for_address(lo),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    l.bind(&SockAddr::from(lo)).context("bind")?;
    l.listen(1).context("listen")?;
    let target = l.local_addr()?;
    let c = new_socket(&lo, Type::STREAM, Protocol::TCP, &e.options)?;
    c.connect(&target).context("connect")?;
    let (far, _) = l.accept().context("accept")?;
    refill(&far, e.queue.as_deref().unwrap_or_default(), &e.local)?;
    drop(far);
    Ok(c)
}

/// Writes `data` into `s` without blocking for long. Loopback moves it to
/// the peer's receive queue at once, up to its size; the rest waits in
/// our send queue, which grows if needed — the bytes sat in two buffers
/// the old connection had grown over time, while these are new.
fn refill(s: &Socket, data: &[u8], to: &str) -> anyhow::Result<()> {
    s.set_nonblocking(true)?;
    let mut rest = data;
    let mut waits = 0;
    while !rest.is_empty() {
        match s.send_with_flags(rest, libc::MSG_NOSIGNAL) {
            Ok(n) => {
                rest = &rest[n..];
                waits = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                waits += 1;
                let queued = s.send_buffer_size().unwrap_or(0);
                if waits == 2 {
                    let _ = s.set_send_buffer_size(queued + rest.len() * 2);
                } else if waits == 4 {
                    // Beyond net.core.wmem_max, for a privileged restart.
                    let want = i32::try_from(queued + rest.len() * 2).unwrap_or(i32::MAX);
                    let _ = hiber_sys::set_socket_int(s.as_raw_fd(), libc::SO_SNDBUFFORCE, want);
                } else if waits > 40 {
                    bail!(
                        "{} of the {} bytes unread by {to} do not fit in the new \
                         connection's buffers (raise net.core.wmem_max)",
                        rest.len(),
                        data.len()
                    );
                }
                let mut p = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: poll on one pollfd of our own.
                unsafe { libc::poll(&mut p, 1, 50) };
            }
            Err(e) => return Err(e).with_context(|| format!("refilling {to}")),
        }
    }
    s.set_nonblocking(false)?;
    Ok(())
}

/// A listening, bound or fresh TCP socket, or a UDP socket.
fn unconnected(u: &Unconnected) -> anyhow::Result<Socket> {
    let domain = Domain::from(u.family);
    let s = Socket::new(
        domain,
        Type::from(u.sock_type).cloexec(),
        Some(Protocol::from(u.protocol)),
    )
    .context("socket")?;
    set_options(&s, &u.options, true);
    if !u.local.is_empty() {
        let a = parse(&u.local)?;
        s.set_reuse_address(true)?;
        if let Err(e) = s.bind(&SockAddr::from(a)) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                bail!("{a} is taken (another program uses that port): cannot bind it again");
            }
            return Err(e).with_context(|| format!("bind to {a}"));
        }
    }
    if let Some(backlog) = u.listen {
        s.listen(i32::try_from(backlog).unwrap_or(libc::SOMAXCONN))
            .context("listen")?;
    }
    if !u.remote.is_empty() {
        let r = parse(&u.remote)?;
        if u.sock_type == libc::SOCK_STREAM {
            // A connection that was being made: made again, without
            // waiting (the program was waiting for it).
            s.set_nonblocking(true)?;
            let _ = s.connect(&SockAddr::from(r));
            s.set_nonblocking(false)?;
        } else {
            s.connect(&SockAddr::from(r))
                .with_context(|| format!("connect to {r}"))?;
        }
    }
    if u.queued {
        eprintln!(
            "hiber: warning: datagrams waiting on udp socket {} were not kept (dropped, \
             as the network may)",
            if u.local.is_empty() {
                "(unbound)"
            } else {
                &u.local
            }
        );
    }
    Ok(s)
}

/// Sets the saved options: only `IPV6_V6ONLY` (`before_bind`), or all the
/// others. A refusal keeps the default (a size above the system's
/// maximum, say).
fn set_options(s: &Socket, opts: &[SockOpt], before_bind: bool) {
    for o in opts {
        let v6only = o.level == libc::IPPROTO_IPV6 && o.name == libc::IPV6_V6ONLY;
        if v6only != before_bind {
            continue;
        }
        let (level, name) = (o.level, o.name);
        // SAFETY: setsockopt reads `o.value.len()` bytes of `o.value`.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                name,
                o.value.as_ptr().cast(),
                o.value.len() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!(
                level,
                name,
                "setsockopt: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read, Write};

    use super::*;

    fn end(local: &str, remote: &str, queue: &[u8]) -> End {
        End {
            local: local.into(),
            remote: remote.into(),
            internal: true,
            queue: Some(queue.to_vec()),
            shut_wr: false,
            options: Vec::new(),
        }
    }

    #[test]
    fn a_connection_keeps_its_addresses_and_bytes() {
        // Free ports: bound, then let go.
        let port = |a: &str| {
            std::net::TcpListener::bind(a)
                .unwrap()
                .local_addr()
                .unwrap()
        };
        let (pa, pb) = (port("127.0.0.1:0"), port("127.0.0.1:0"));
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let a = end(&pa.to_string(), &pb.to_string(), b"for a");
        let mut b = end(&pb.to_string(), &pa.to_string(), &big);
        b.shut_wr = true;
        let (sa, sb) = connection(&a, &b).unwrap();
        assert_eq!(sa.local_addr().unwrap().as_socket(), Some(pa));
        assert_eq!(sb.local_addr().unwrap().as_socket(), Some(pb));
        assert_eq!(sb.peer_addr().unwrap().as_socket(), Some(pa));
        let mut ta: std::net::TcpStream = sa.into();
        let mut tb: std::net::TcpStream = sb.into();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            tb.read_to_end(&mut got).unwrap();
            got
        });
        let mut got = [0u8; 5];
        ta.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"for a");
        ta.write_all(b"more").unwrap();
        drop(ta);
        let mut want = big;
        want.extend_from_slice(b"more");
        assert!(
            reader.join().unwrap() == want,
            "b's bytes, then the new ones"
        );
    }

    #[test]
    fn an_outside_connection_reads_its_bytes_then_ends() {
        let mut e = end("10.1.2.3:4000", "93.184.216.34:80", b"HTTP/1.1 200");
        e.internal = false;
        let s = closed(&e).unwrap();
        let mut t: std::net::TcpStream = s.into();
        let mut got = Vec::new();
        t.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"HTTP/1.1 200");
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let u = Unconnected {
            family: libc::AF_INET,
            sock_type: libc::SOCK_STREAM,
            protocol: libc::IPPROTO_TCP,
            local: taken.local_addr().unwrap().to_string(),
            remote: String::new(),
            listen: Some(16),
            queued: false,
            options: Vec::new(),
        };
        let e = unconnected(&u).err().unwrap();
        assert!(format!("{e:#}").contains("is taken"), "{e:#}");
        drop(taken);
        let s = unconnected(&u).unwrap();
        assert_eq!(
            s.local_addr().unwrap().as_socket().unwrap().to_string(),
            u.local
        );
    }
}
