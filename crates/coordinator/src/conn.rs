//! One peer connection: non-blocking socket, input decoder, output queue.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use hiber_protocol::frame::{self, FrameBuf};
use hiber_protocol::{RestartedFrom, ToCoord};
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// A peer that has not authenticated may send one small frame (the hello).
pub(crate) const HELLO_LIMIT: usize = 4096;
/// Output we queue for one peer before we consider it stuck and drop it.
const MAX_QUEUED: usize = 64 << 20;

pub(crate) enum Kind {
    /// Connected, no hello yet.
    Pending,
    Control,
    Process(Proc),
    /// A process's connection for its next fork child (`Role::Spare`).
    Spare(Spare),
}

pub(crate) struct Spare {
    /// Process id of the process that opened it.
    pub owner: u64,
    /// The child's process id, already sent in the `Welcome`.
    pub id: u64,
    /// Messages the child sent before its parent's `Forked` arrived
    /// (they travel on two connections); replayed once it is a process.
    pub early: Vec<ToCoord>,
}

pub(crate) struct Proc {
    pub id: u64,
    pub virtual_pid: u32,
    pub real_pid: u32,
    pub host: String,
    pub program: String,
    pub restarted: Option<RestartedFrom>,
    /// Restarted and not yet released from the `restored` barrier.
    pub restoring: bool,
    /// Sent `Exiting`: its disconnect is expected.
    pub exiting: bool,
    /// Defaults from `ToCoord::Settings`.
    pub settings: Option<Settings>,
    /// Forked or exec'd, and not heard from since: its checkpoint thread
    /// may not be started yet, so a checkpoint asks it again and again.
    pub dormant: bool,
}

impl Proc {
    /// How a process is named in logs and errors: `program[pid]`.
    pub fn label(&self) -> String {
        format!("{}[{}]", self.program, self.real_pid)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub ckpt_dir: String,
    pub compress: bool,
    pub sync: bool,
}

/// A peer's socket: TCP (any host), or the coordinator's local socket (a
/// process on this host that learnt its name from a `Welcome`).
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

pub(crate) struct Conn {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// The peer runs on this host (so its pid is meaningful here).
    pub local: bool,
    pub opened: Instant,
    pub kind: Kind,
    /// Close as soon as the output queue is empty (after a refusal).
    pub close_after_flush: bool,
    /// Already scheduled for closing; ignore further input and output.
    pub dead: bool,
    rbuf: FrameBuf,
    wbuf: Vec<u8>,
    wpos: usize,
    want_writable: bool,
}

/// What a read pass produced.
pub(crate) enum Input {
    /// A complete frame body.
    Frame(Vec<u8>),
    /// Nothing more to read right now.
    Drained,
    /// The peer closed its side.
    Eof,
}

impl Conn {
    pub fn new(stream: Stream, peer: SocketAddr) -> Conn {
        let local = match &stream {
            Stream::Unix(_) => true,
            Stream::Tcp(s) => {
                peer.ip().is_loopback()
                    || s.local_addr().map(|l| l.ip() == peer.ip()).unwrap_or(false)
            }
        };
        Conn {
            stream,
            peer,
            local,
            opened: Instant::now(),
            kind: Kind::Pending,
            close_after_flush: false,
            dead: false,
            rbuf: FrameBuf::with_limit(HELLO_LIMIT),
            wbuf: Vec::new(),
            wpos: 0,
            want_writable: false,
        }
    }

    pub fn authenticated(&mut self, kind: Kind) {
        self.kind = kind;
        self.rbuf.set_limit(hiber_protocol::MAX_FRAME);
    }

    pub fn process(&self) -> Option<&Proc> {
        match &self.kind {
            Kind::Process(p) => Some(p),
            _ => None,
        }
    }

    pub fn process_mut(&mut self) -> Option<&mut Proc> {
        match &mut self.kind {
            Kind::Process(p) => Some(p),
            _ => None,
        }
    }

    /// Returns the next buffered frame, reading from the socket when none is
    /// complete. mio is edge-triggered, so callers loop until `Drained`/`Eof`.
    pub fn next_input(&mut self) -> io::Result<Input> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.rbuf.pop_frame() {
                Ok(Some(body)) => return Ok(Input::Frame(body)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => self.rbuf.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Input::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues one message and writes as much as the socket takes.
    pub fn send<T: serde::Serialize>(
        &mut self,
        registry: &Registry,
        token: Token,
        msg: &T,
    ) -> io::Result<()> {
        let bytes =
            frame::encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if self.wbuf.len() - self.wpos + bytes.len() > MAX_QUEUED {
            return Err(io::Error::other("peer does not read its messages"));
        }
        self.wbuf.extend_from_slice(&bytes);
        self.flush(registry, token)
    }

    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Writes queued output; asks for writability only while some is left.
    pub fn flush(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        while self.has_output() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let pending = self.has_output();
        if !pending {
            self.wbuf.clear();
            self.wpos = 0;
        }
        if pending != self.want_writable {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, token, interest)?;
            self.want_writable = pending;
        }
        Ok(())
    }
}

/// Short name of a message for logs.
pub(crate) fn msg_name(msg: &ToCoord) -> &'static str {
    match msg {
        ToCoord::Barrier { .. } => "Barrier",
        ToCoord::CheckpointDone { .. } => "CheckpointDone",
        ToCoord::CheckpointFailed { .. } => "CheckpointFailed",
        ToCoord::KvPut { .. } => "KvPut",
        ToCoord::KvGet { .. } => "KvGet",
        ToCoord::Exiting { .. } => "Exiting",
        ToCoord::Settings { .. } => "Settings",
        ToCoord::Forked { .. } => "Forked",
        ToCoord::Execd { .. } => "Execd",
        ToCoord::TcpEnds { .. } => "TcpEnds",
        ToCoord::Status => "Status",
        ToCoord::List => "List",
        ToCoord::Checkpoint(_) => "Checkpoint",
        ToCoord::RestartBegin { .. } => "RestartBegin",
        ToCoord::Kill => "Kill",
        ToCoord::Quit => "Quit",
        ToCoord::SetInterval { .. } => "SetInterval",
    }
}
