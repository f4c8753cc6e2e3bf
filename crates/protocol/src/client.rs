//! Blocking client side of the protocol, for control commands and for the
//! agent inside checkpointed processes.
//!
//! Because the agent runs inside arbitrary programs this module starts no
//! threads, keeps no global state and prints nothing; numeric addresses are
//! parsed directly and only other strings go through the resolver.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::cookie::{self, COOKIE_LEN, CookieError};
use crate::frame::{self, FrameBuf, FrameError};
use crate::{FromCoord, Hello, HelloReply, PROTOCOL_VERSION, Role, ToCoord, Welcome};

/// How long a connect or the handshake may take before we give up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad coordinator address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error("cannot connect to coordinator at {addr}: {error}")]
    Connect { addr: String, error: io::Error },
    #[error(transparent)]
    Cookie(#[from] CookieError),
    #[error("coordinator at {addr} refused us: {reason}")]
    Refused { addr: String, reason: String },
    #[error("coordinator at {addr}: {error}")]
    Frame { addr: String, error: FrameError },
}

impl ClientError {
    /// True when nothing accepted the connection (no coordinator there).
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClientError::Connect { error, .. } => matches!(
                error.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::AddrNotAvailable
            ),
            _ => false,
        }
    }
}

/// Prefix of a coordinator address that names its local socket (see
/// [`local_addr`]).
const LOCAL_PREFIX: &str = "local:";

/// The address of a coordinator's abstract local socket named `name`
/// (`Welcome::local`), for [`Connection::connect`] and friends.
pub fn local_addr(name: &str) -> String {
    format!("{LOCAL_PREFIX}{name}")
}

/// A connected socket: TCP, or a Unix socket to the local socket. Both
/// read, write and time out with the same system calls.
#[derive(Debug)]
struct Stream(OwnedFd);

impl Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        // A borrowed view: SO_RCVTIMEO is the same option for both kinds.
        // The descriptor stays owned by `self`; ManuallyDrop keeps the
        // temporary from closing it.
        // SAFETY: see just above.
        let stream = unsafe { UnixStream::from_raw_fd(self.as_raw_fd()) };
        let view = std::mem::ManuallyDrop::new(stream);
        view.set_read_timeout(t)
    }

    fn try_clone(&self) -> io::Result<Stream> {
        self.0.try_clone().map(Stream)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: reading into `buf` from our descriptor.
            let n = unsafe { libc::read(self.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // Sending `buf` on our socket; MSG_NOSIGNAL: a closed
            // peer is an error, not a SIGPIPE for the program.
            // SAFETY: see just above.
            let n = unsafe {
                libc::send(
                    self.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One authenticated connection to a coordinator.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    addr: String,
    rbuf: FrameBuf,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), presents the user's cookie with
    /// `role`, and returns the coordinator's `Welcome`.
    pub fn connect(addr: &str, role: Role) -> Result<(Connection, Welcome), ClientError> {
        Self::connect_with_cookie(addr, role, &cookie::load_or_create()?)
    }

    /// Like [`connect`](Self::connect) with an explicit cookie.
    pub fn connect_with_cookie(
        addr: &str,
        role: Role,
        cookie: &[u8; COOKIE_LEN],
    ) -> Result<(Connection, Welcome), ClientError> {
        let stream = open(addr)?;
        let mut conn = Connection {
            stream,
            addr: addr.to_string(),
            rbuf: FrameBuf::new(),
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            cookie: *cookie,
            role,
        };
        conn.write(&hello)?;
        let reply: HelloReply = match conn.read(Some(HANDSHAKE_TIMEOUT))? {
            Some(r) => r,
            None => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "no answer to our hello");
                return Err(conn.frame_err(e.into()));
            }
        };
        match reply {
            HelloReply::Welcome(w) => Ok((conn, w)),
            HelloReply::Refused(reason) => Err(ClientError::Refused {
                addr: conn.addr,
                reason,
            }),
        }
    }

    /// Opens a spare connection for process `owner`'s next fork child
    /// (`Role::Spare`): connects and sends the hello, but does not wait for
    /// the answer, which [`welcome`](Self::welcome) reads later (by then it
    /// has long arrived).
    pub fn open_spare(
        addr: &str,
        owner: u64,
        cookie: &[u8; COOKIE_LEN],
    ) -> Result<Connection, ClientError> {
        let stream = open(addr)?;
        let mut conn = Connection {
            stream,
            addr: addr.to_string(),
            rbuf: FrameBuf::new(),
        };
        conn.write(&Hello {
            version: PROTOCOL_VERSION,
            cookie: *cookie,
            role: Role::Spare { owner },
        })?;
        Ok(conn)
    }

    /// Reads the coordinator's answer to the hello of a connection made by
    /// [`open_spare`](Self::open_spare).
    pub fn welcome(&mut self) -> Result<Welcome, ClientError> {
        match self.read(Some(HANDSHAKE_TIMEOUT))? {
            Some(HelloReply::Welcome(w)) => Ok(w),
            Some(HelloReply::Refused(reason)) => Err(ClientError::Refused {
                addr: self.addr.clone(),
                reason,
            }),
            None => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "no answer to our hello");
                Err(self.frame_err(e.into()))
            }
        }
    }

    /// Takes over an authenticated connection this process inherited as
    /// descriptor `fd` (across `exec`, from the image before).
    ///
    /// # Safety
    /// `fd` must be an open TCP socket that nothing else in this process
    /// owns; the connection closes it when dropped.
    pub unsafe fn from_raw_fd(fd: RawFd, addr: &str) -> Connection {
        Connection {
            // SAFETY: caller's contract.
            stream: Stream(unsafe { OwnedFd::from_raw_fd(fd) }),
            addr: addr.to_string(),
            rbuf: FrameBuf::new(),
        }
    }

    /// Waits for the next message and takes it off the socket with a single
    /// `recv` once it is complete there. A thread killed at any point (by
    /// another thread's `exec`) thus consumed whole messages or nothing,
    /// and whoever inherits the socket finds it at a message boundary.
    pub fn recv_whole(&mut self) -> Result<FromCoord, ClientError> {
        if self.rbuf.buffered() > 0 {
            return self.recv();
        }
        let fd = self.stream.as_raw_fd();
        let mut buf: Vec<u8> = vec![0u8; 4096];
        loop {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd on the stack.
            let r = unsafe { libc::poll(&mut pfd, 1, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.frame_err(e.into()));
            }
            // SAFETY: peeking into our own buffer.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.frame_err(e.into()));
            }
            let n = n as usize;
            if n == 0 {
                return Err(self.frame_err(FrameError::Closed));
            }
            if n < 4 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > crate::MAX_FRAME {
                // Let the ordinary path report it.
                return self.recv();
            }
            if buf.len() < 4 + len {
                buf.resize(4 + len, 0);
                continue;
            }
            if n < 4 + len {
                // The rest is on its way (a frame split by the sender).
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let dst = buf.as_mut_ptr().cast();
            // SAFETY: reading exactly one frame into our own buffer.
            let got = unsafe { libc::recv(fd, dst, 4 + len, libc::MSG_WAITALL) };
            if got != (4 + len) as isize {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "short read of a frame");
                return Err(self.frame_err(e.into()));
            }
            return frame::decode(&buf[4..4 + len]).map_err(|e| self.frame_err(e));
        }
    }

    pub fn send(&mut self, msg: &ToCoord) -> Result<(), ClientError> {
        self.write(msg)
    }

    /// Waits for the next message.
    pub fn recv(&mut self) -> Result<FromCoord, ClientError> {
        match self.read(None)? {
            Some(m) => Ok(m),
            None => Err(self.frame_err(FrameError::Closed)),
        }
    }

    /// Waits at most `timeout` for the next message; `Ok(None)` on timeout.
    /// A message cut by the timeout is kept and completed by the next call.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<FromCoord>, ClientError> {
        self.read(Some(timeout))
    }

    /// Sends one request and waits for its answer (control clients).
    pub fn request(&mut self, msg: &ToCoord) -> Result<FromCoord, ClientError> {
        self.send(msg)?;
        self.recv()
    }

    /// The socket's descriptor, which the caller now owns (e.g. to hand it
    /// to a fork child without touching the heap after the fork).
    pub fn into_raw_fd(self) -> RawFd {
        use std::os::fd::IntoRawFd;
        self.stream.0.into_raw_fd()
    }

    /// A second handle on the same socket, e.g. to send from one thread while
    /// another receives. Each handle reads whole frames only, so handles may
    /// take turns receiving, but must not receive concurrently.
    pub fn try_clone(&self) -> Result<Connection, ClientError> {
        let stream = self
            .stream
            .try_clone()
            .map_err(|e| self.frame_err(e.into()))?;
        Ok(Connection {
            stream,
            addr: self.addr.clone(),
            rbuf: FrameBuf::new(),
        })
    }

    /// Moves the socket to the lowest free descriptor number >= `min`
    /// (close-on-exec), so that an agent inside a program keeps its socket
    /// out of the numbers the program would otherwise get.
    pub fn relocate_fd(&mut self, min: RawFd) -> io::Result<()> {
        // SAFETY: F_DUPFD_CLOEXEC duplicates our own socket; no memory involved.
        let high = unsafe { libc::fcntl(self.stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
        if high < 0 {
            return Err(io::Error::last_os_error());
        }
        // `high` is a fresh descriptor we exclusively own; the old
        // stream (and its descriptor) is dropped by the assignment.
        // SAFETY: see just above.
        self.stream = Stream(unsafe { OwnedFd::from_raw_fd(high) });
        Ok(())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The address this connection was opened with.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn frame_err(&self, error: FrameError) -> ClientError {
        ClientError::Frame {
            addr: self.addr.clone(),
            error,
        }
    }

    fn write<T: serde::Serialize>(&mut self, msg: &T) -> Result<(), ClientError> {
        frame::write_msg(&mut self.stream, msg).map_err(|e| self.frame_err(e))
    }

    /// Reads one message; `Ok(None)` only when `timeout` expired.
    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let result = self.read_until(deadline);
        if deadline.is_some() {
            // Best effort: the next blocking call must not inherit our timeout.
            let _ = self.stream.set_read_timeout(None);
        }
        result.map_err(|e| self.frame_err(e))
    }

    fn read_until<T: serde::de::DeserializeOwned>(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<T>, FrameError> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(msg) = self.rbuf.pop()? {
                return Ok(Some(msg));
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                self.stream.set_read_timeout(Some(left))?;
            }
            let want = self.rbuf.wanted().min(chunk.len());
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) if self.rbuf.buffered() == 0 => return Err(FrameError::Closed),
                Ok(0) => {
                    let e =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a frame");
                    return Err(e.into());
                }
                Ok(n) => self.rbuf.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if deadline.is_some()
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Parses `addr` as a numeric socket address, falling back to the resolver
/// for host names, and connects with a timeout.
fn open(addr: &str) -> Result<Stream, ClientError> {
    if let Some(name) = addr.strip_prefix(LOCAL_PREFIX) {
        use std::os::linux::net::SocketAddrExt;
        let connect_err = |error| ClientError::Connect {
            addr: addr.to_string(),
            error,
        };
        let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(connect_err)?;
        let s = UnixStream::connect_addr(&sa).map_err(connect_err)?;
        return Ok(Stream(s.into()));
    }
    let targets: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => addr
            .to_socket_addrs()
            .map_err(|e| ClientError::Address {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    let mut last = None;
    for target in &targets {
        match TcpStream::connect_timeout(target, HANDSHAKE_TIMEOUT) {
            Ok(s) => {
                let nodelay = s.set_nodelay(true);
                return nodelay
                    .map(|()| Stream(s.into()))
                    .map_err(|error| ClientError::Connect {
                        addr: addr.to_string(),
                        error,
                    });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(error) => ClientError::Connect {
            addr: addr.to_string(),
            error,
        },
        None => ClientError::Address {
            addr: addr.to_string(),
            reason: "resolves to no address".into(),
        },
    })
}
