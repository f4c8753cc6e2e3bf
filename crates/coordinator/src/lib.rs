//! The hiber coordinator: one per computation.
//!
//! It knows every process of the computation (each keeps one connection
//! open), drives checkpoints through their barriers, synchronizes restarts,
//! runs the key-value name service, the user barriers of plugins
//! (`user_barrier.rs`) and the interval timer, and writes the restart
//! script. Everything runs on one thread around one `epoll` (mio):
//! the work per message is tiny, and a single thread makes every barrier
//! transition trivially atomic, even with thousands of processes.
//!
//! `docs/protocol.md` describes the conversation.

mod checkpoint;
mod conn;
mod script;
mod tcp;
mod user_barrier;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hiber_protocol::cookie::{self, COOKIE_LEN, CookieError};
use hiber_protocol::frame;
use hiber_protocol::{
    FromCoord, Hello, HelloReply, PROTOCOL_VERSION, ProcessEntry, ProcessHello, Role, State,
    Status, ToCoord, Welcome,
};
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use tracing::{debug, info, warn};

use crate::checkpoint::{Checkpoint, Restart};
use crate::conn::{Conn, Input, Kind, Proc, Settings, Spare, Stream};
use crate::user_barrier::UserBarriers;

/// A freshly started coordinator with `exit_on_last` gives up when no
/// process joined within this time (the launch that started it failed).
const FIRST_JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// With `exit_on_last`, how long the process count may stay at zero before
/// the coordinator exits: covers a process that `exec`s and reconnects.
const LAST_PROCESS_GRACE: Duration = Duration::from_secs(1);
/// A connection must send its hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping coordinator keeps trying to deliver its last replies.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

const LISTENER: Token = Token(0);
const LOCAL_LISTENER: Token = Token(1);

#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (an IP address or a host name).
    pub bind: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Seconds between automatic checkpoints; 0: none.
    pub interval: u64,
    /// Exit when the last process has left (see the crate docs).
    pub exit_on_last: bool,
    /// Where the restart script goes when a checkpoint request names no directory.
    pub ckpt_dir: PathBuf,
    /// The `hiber` executable written into the restart script.
    pub hiber_exe: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve coordinator bind address {addr:?}: {error}")]
    Resolve { addr: String, error: io::Error },
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: String, error: io::Error },
    #[error(transparent)]
    Cookie(#[from] CookieError),
    #[error("coordinator event loop: {0}")]
    Poll(io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A bound coordinator, ready to [`run`](Coordinator::run).
pub struct Coordinator {
    config: Config,
    poll: Poll,
    listener: TcpListener,
    /// The local socket (abstract, so nothing to clean up) and its name:
    /// processes on this host use it for the connections they make often
    /// (a fork child's), much cheaper than TCP on loopback.
    local_listener: Option<(UnixListener, String)>,
    local_addr: SocketAddr,
    /// `HOST:PORT` a client on this host can connect to.
    addr_string: String,
    cookie: [u8; COOKIE_LEN],
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Tokens scheduled for closing, with the reason.
    dead: Vec<(Token, String)>,
    /// Connections in accept order, for the hello timeout.
    hello_queue: VecDeque<(Instant, Token)>,
    /// Connected processes by process id.
    ids: HashMap<u64, Token>,
    /// Spare connections (`Role::Spare`) by the process id they carry.
    spares: HashMap<u64, Token>,

    computation: u64,
    /// Last completed checkpoint generation.
    generation: u64,
    next_process_id: u64,
    ckpt: Option<Checkpoint>,
    restart: Option<Restart>,
    /// A restart whose process died: late `restored` barriers get an abort.
    failed_restart: Option<(u64, String)>,

    kv: HashMap<String, Vec<u8>>,
    kv_waiters: HashMap<String, Vec<Token>>,
    /// Open user barriers (`hiber_barrier`), by name.
    user_barriers: UserBarriers,

    interval: u64,
    next_tick: Option<Instant>,
    /// With `exit_on_last`: exit at this time if there is still no process.
    empty_deadline: Option<Instant>,
    /// Set once we stop: the time by which queued replies must be out.
    exiting: Option<Instant>,
}

/// Binds the coordinator's listening socket (so the caller can report bind
/// errors before daemonizing) and loads the user's cookie.
pub fn bind(config: Config) -> Result<Coordinator> {
    let addr = resolve_bind(&config.bind, config.port)?;
    let mut listener = TcpListener::bind(addr).map_err(|error| Error::Bind {
        addr: addr.to_string(),
        error,
    })?;
    let local_addr = listener.local_addr().map_err(Error::Poll)?;
    let cookie = cookie::load_or_create()?;
    let poll = Poll::new().map_err(Error::Poll)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(Error::Poll)?;

    let mut id = [0u8; 8];
    cookie::fill_random(&mut id).map_err(Error::Poll)?;
    let local_listener = bind_local(&poll, local_addr.port());
    let connect_ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let now = Instant::now();
    Ok(Coordinator {
        addr_string: SocketAddr::new(connect_ip, local_addr.port()).to_string(),
        interval: config.interval,
        next_tick: (config.interval > 0).then(|| now + Duration::from_secs(config.interval)),
        empty_deadline: config.exit_on_last.then(|| now + FIRST_JOIN_TIMEOUT),
        config,
        poll,
        listener,
        local_listener,
        local_addr,
        cookie,
        conns: HashMap::new(),
        next_token: 2,
        dead: Vec::new(),
        hello_queue: VecDeque::new(),
        ids: HashMap::new(),
        spares: HashMap::new(),
        computation: u64::from_le_bytes(id),
        generation: 0,
        next_process_id: 1,
        ckpt: None,
        restart: None,
        failed_restart: None,
        kv: HashMap::new(),
        kv_waiters: HashMap::new(),
        user_barriers: HashMap::new(),
        exiting: None,
    })
}

/// Listens on an abstract local socket named after our port and pid (one
/// per coordinator on the host's network namespace); `None` if that fails,
/// and processes then use TCP only.
fn bind_local(poll: &Poll, port: u16) -> Option<(UnixListener, String)> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("hiber-coordinator-{port}-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| warn!("no local socket, TCP only: {e}"))
        .ok()?;
    let mut listener = UnixListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LOCAL_LISTENER, Interest::READABLE)
        .ok()?;
    Some((listener, name))
}

fn resolve_bind(host: &str, port: u16) -> Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolve_err = |error| Error::Resolve {
        addr: host.to_string(),
        error,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(resolve_err)?
        .next()
        .ok_or_else(|| resolve_err(io::Error::other("no address")))
}

impl Coordinator {
    /// The address the coordinator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `Quit`, or (with `exit_on_last`) until the computation is gone.
    pub fn run(mut self) -> Result<()> {
        info!(
            addr = %self.local_addr,
            computation = format_args!("{:016x}", self.computation),
            "coordinator listening"
        );
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(deadline) = self.exiting
                && (Instant::now() >= deadline || !self.conns.values().any(Conn::has_output))
            {
                break;
            }
            match self.poll.poll(&mut events, self.poll_timeout()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Poll(e)),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    LOCAL_LISTENER => self.accept_local(),
                    token => {
                        if event.is_writable() {
                            self.on_writable(token);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(token);
                        }
                    }
                }
                self.reap();
            }
            self.on_timers(Instant::now());
            self.reap();
        }
        info!("coordinator stopped");
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let ask = self.ckpt.as_ref().and_then(|ck| ck.next_ask());
        let mut next = [self.next_tick, self.empty_deadline, self.exiting, ask]
            .into_iter()
            .flatten()
            .min();
        if let Some((opened, _)) = self.hello_queue.front() {
            let sweep = *opened + HELLO_TIMEOUT;
            next = Some(next.map_or(sweep, |n| n.min(sweep)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(&(opened, token)) = self.hello_queue.front() {
            if now < opened + HELLO_TIMEOUT {
                break;
            }
            self.hello_queue.pop_front();
            if self
                .conns
                .get(&token)
                .is_some_and(|c| matches!(c.kind, Kind::Pending))
            {
                self.close(token, "no hello within 10 s");
            }
        }
        self.checkpoint_ask_again_all(now);
        if self.next_tick.is_some_and(|t| now >= t) {
            self.next_tick = Some(now + Duration::from_secs(self.interval));
            self.interval_tick();
        }
        if self.empty_deadline.is_some_and(|t| now >= t) && self.exiting.is_none() {
            self.empty_deadline = None;
            if self.process_count() == 0 {
                info!("no process in the computation any more; exiting");
                self.stop();
            }
        }
    }

    fn stop(&mut self) {
        if self.exiting.is_none() {
            self.exiting = Some(Instant::now() + EXIT_FLUSH_TIMEOUT);
            self.next_tick = None;
            self.empty_deadline = None;
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, "set TCP_NODELAY: {e}");
                    }
                    self.add_conn(Stream::Tcp(stream), peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the pending connection stays queued
                    // and is retried on the next readiness event.
                    warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn accept_local(&mut self) {
        loop {
            let Some((listener, _)) = &self.local_listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    let peer = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0);
                    self.add_conn(Stream::Unix(stream), peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("accept (local socket): {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: Stream, peer: SocketAddr) {
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            warn!(%peer, "cannot watch new connection: {e}");
            return;
        }
        let conn = Conn::new(stream, peer);
        self.hello_queue.push_back((conn.opened, token));
        self.conns.insert(token, conn);
    }

    fn on_writable(&mut self, token: Token) {
        let registry = self.poll.registry();
        let Some(c) = self.conns.get_mut(&token).filter(|c| !c.dead) else {
            return;
        };
        if let Err(e) = c.flush(registry, token) {
            self.close(token, &format!("write: {e}"));
        } else if c.close_after_flush && !c.has_output() {
            self.close(token, "refused");
        }
    }

    fn on_readable(&mut self, token: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&token).filter(|c| !c.dead) else {
                return;
            };
            match c.next_input() {
                Ok(Input::Frame(body)) => self.dispatch(token, &body),
                Ok(Input::Drained) => return,
                Ok(Input::Eof) => return self.close(token, "connection closed"),
                Err(e) => return self.close(token, &format!("read: {e}")),
            }
        }
    }

    /// Queues `msg` for `token`; a peer we cannot write to is closed.
    fn send<T: serde::Serialize>(&mut self, token: Token, msg: &T) {
        let registry = self.poll.registry();
        let Some(c) = self.conns.get_mut(&token).filter(|c| !c.dead) else {
            return;
        };
        if let Err(e) = c.send(registry, token, msg) {
            self.close(token, &format!("write: {e}"));
        }
    }

    /// Schedules `token` for closing; [`reap`](Self::reap) does the work so
    /// that handlers never see a connection vanish under them.
    fn close(&mut self, token: Token, reason: &str) {
        if let Some(c) = self.conns.get_mut(&token).filter(|c| !c.dead) {
            c.dead = true;
            self.dead.push((token, reason.to_string()));
        }
    }

    fn reap(&mut self) {
        while let Some((token, reason)) = self.dead.pop() {
            let Some(mut c) = self.conns.remove(&token) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut c.stream);
            for waiters in self.kv_waiters.values_mut() {
                waiters.retain(|t| *t != token);
            }
            // A process may request a checkpoint too (the C API's
            // hiber_checkpoint()); whoever asked, nobody is left to answer.
            if let Some(ck) = self.ckpt.as_mut().filter(|ck| ck.requester == Some(token)) {
                ck.requester = None;
            }
            match c.kind {
                Kind::Process(p) => {
                    self.ids.remove(&p.id);
                    self.on_process_left(token, p, &reason);
                }
                Kind::Spare(sp) => {
                    self.spares.remove(&sp.id);
                    debug!(
                        owner = sp.owner,
                        id = sp.id,
                        "spare connection closed: {reason}"
                    );
                }
                _ => {}
            }
        }
    }

    fn process_count(&self) -> usize {
        self.ids.len()
    }

    fn state(&self) -> State {
        if self.ckpt.is_some() {
            State::Checkpointing
        } else if self.restart.is_some() {
            State::Restarting
        } else {
            State::Running
        }
    }

    // ---- handshake ----

    fn dispatch(&mut self, token: Token, body: &[u8]) {
        let Some(c) = self.conns.get(&token) else {
            return;
        };
        if matches!(c.kind, Kind::Pending) {
            return self.on_hello(token, body);
        }
        let is_process = c.process().is_some();
        match frame::decode::<ToCoord>(body) {
            Ok(msg) => {
                debug!(?token, msg = conn::msg_name(&msg), "received");
                if let Some(Kind::Spare(sp)) = self.conns.get_mut(&token).map(|c| &mut c.kind) {
                    sp.early.push(msg);
                    return;
                }
                self.on_message(token, is_process, msg);
            }
            Err(e) => self.close(token, &format!("malformed message: {e}")),
        }
    }

    fn refuse(&mut self, token: Token, reason: String) {
        if let Some(c) = self.conns.get(&token) {
            warn!(peer = %c.peer, "refused connection: {reason}");
        }
        self.send(token, &HelloReply::Refused(reason));
        if let Some(c) = self.conns.get_mut(&token) {
            c.close_after_flush = true;
            if !c.has_output() {
                self.close(token, "refused");
            }
        }
    }

    fn on_hello(&mut self, token: Token, body: &[u8]) {
        // The version comes first in every version of `Hello`, so a peer of
        // another version gets a clear answer even if the rest differs.
        let version = postcard::take_from_bytes::<u32>(body).map(|(v, _)| v);
        match version {
            Ok(PROTOCOL_VERSION) => {}
            Ok(v) => {
                return self.refuse(
                    token,
                    format!(
                        "protocol version mismatch: the client speaks version {v}, \
                         this coordinator speaks version {PROTOCOL_VERSION}"
                    ),
                );
            }
            Err(_) => return self.refuse(token, "malformed hello".into()),
        }
        let hello: Hello = match frame::decode(body) {
            Ok(h) => h,
            Err(e) => return self.refuse(token, format!("malformed hello: {e}")),
        };
        if !cookie::equal(&hello.cookie, &self.cookie) {
            return self.refuse(token, "bad cookie".into());
        }
        let (kind, process_id) = match hello.role {
            Role::Control => (Kind::Control, 0),
            Role::Spare { owner } => {
                let id = self.next_process_id;
                self.next_process_id += 1;
                self.spares.insert(id, token);
                let early = Vec::new();
                (Kind::Spare(Spare { owner, id, early }), id)
            }
            Role::Process(ph) => match self.admit(&ph) {
                Ok(id) => (Kind::Process(new_proc(id, ph)), id),
                Err(reason) => return self.refuse(token, reason),
            },
        };
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            computation: self.computation,
            process_id,
            generation: self.generation,
            coordinator: self.addr_string.clone(),
            local: self
                .local_listener
                .as_ref()
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
        };
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if let Kind::Process(p) = &kind {
            info!(
                process = %p.label(),
                id = p.id,
                host = %p.host,
                restarted = p.restarted.is_some(),
                peer = %c.peer,
                "process joined"
            );
        }
        if matches!(kind, Kind::Process(_)) {
            self.ids.insert(process_id, token);
            self.empty_deadline = None;
        }
        let joined = match &kind {
            Kind::Process(p) if p.restarted.is_none() => Some((p.label(), p.host.clone())),
            _ => None,
        };
        c.authenticated(kind);
        self.send(token, &HelloReply::Welcome(welcome));
        if let Some((label, host)) = joined {
            self.checkpoint_joined(token, label, host);
        }
    }

    /// Decides a joining process's id, adopting the computation of a
    /// restarted process when this coordinator has nothing else to run.
    fn admit(&mut self, ph: &ProcessHello) -> Result<u64, String> {
        let Some(r) = &ph.restarted else {
            let id = self.next_process_id;
            self.next_process_id += 1;
            return Ok(id);
        };
        if r.computation != self.computation {
            if self.process_count() > 0 || self.restart.is_some() {
                return Err(format!(
                    "process {}[{}] belongs to computation {:016x}, but this coordinator \
                     runs computation {:016x}",
                    ph.program, ph.real_pid, r.computation, self.computation
                ));
            }
            info!(
                computation = format_args!("{:016x}", r.computation),
                "adopting computation"
            );
            self.computation = r.computation;
            self.generation = r.generation;
        }
        let clash = self.ids.get(&r.process_id).and_then(|t| self.conns.get(t));
        if let Some(p) = clash.and_then(Conn::process) {
            return Err(format!(
                "process id {} is already taken by {} on {}",
                r.process_id,
                p.label(),
                p.host
            ));
        }
        self.next_process_id = self.next_process_id.max(r.process_id + 1);
        Ok(r.process_id)
    }

    fn on_process_left(&mut self, token: Token, p: Proc, reason: &str) {
        if p.exiting {
            info!(process = %p.label(), id = p.id, "process exited");
        } else {
            info!(process = %p.label(), id = p.id, "process left: {reason}");
        }
        let why = if p.exiting {
            "exited"
        } else {
            "connection lost"
        };
        // User barriers first: their `Release` must reach the others
        // before the `Abort` that a failed checkpoint sends.
        self.user_barriers_drop(token);
        self.checkpoint_member_gone(token, &p, why);
        self.restart_member_gone(token, &p, why);
        if self.config.exit_on_last && self.process_count() == 0 && self.exiting.is_none() {
            let wait = if self.restart.is_some() {
                FIRST_JOIN_TIMEOUT
            } else {
                LAST_PROCESS_GRACE
            };
            self.empty_deadline = Some(Instant::now() + wait);
        }
    }

    // ---- messages ----

    fn on_message(&mut self, token: Token, is_process: bool, msg: ToCoord) {
        match msg {
            ToCoord::Barrier { .. }
            | ToCoord::CheckpointDone { .. }
            | ToCoord::CheckpointFailed { .. }
            | ToCoord::Exiting { .. }
            | ToCoord::Settings { .. }
            | ToCoord::Forked { .. }
            | ToCoord::Execd { .. }
            | ToCoord::TcpEnds { .. }
                if !is_process =>
            {
                let m = format!("{} is only accepted from a process", conn::msg_name(&msg));
                self.send(token, &FromCoord::Error(m));
            }
            ToCoord::Barrier { generation, name } => self.on_barrier(token, generation, &name),
            ToCoord::CheckpointDone {
                generation,
                image,
                bytes,
            } => {
                self.on_checkpoint_done(token, generation, image, bytes);
            }
            ToCoord::CheckpointFailed { generation, error } => {
                self.on_checkpoint_failed(token, generation, &error);
            }
            ToCoord::Exiting { status } => self.on_exiting(token, status),
            ToCoord::Forked {
                spare,
                real_pid,
                virtual_pid,
            } => self.on_forked(token, spare, real_pid, virtual_pid),
            ToCoord::Execd { program } => self.on_execd(token, program),
            ToCoord::TcpEnds { generation, ends } => self.on_tcp_ends(token, generation, ends),
            ToCoord::Settings {
                ckpt_dir,
                compress,
                sync,
            } => {
                if let Some(p) = self.conns.get_mut(&token).and_then(Conn::process_mut) {
                    p.settings = Some(Settings {
                        ckpt_dir,
                        compress,
                        sync,
                    });
                }
            }
            ToCoord::KvPut { key, value } => {
                for waiter in self.kv_waiters.remove(&key).unwrap_or_default() {
                    let reply = FromCoord::KvValue {
                        key: key.clone(),
                        value: value.clone(),
                    };
                    self.send(waiter, &reply);
                }
                self.kv.insert(key, value);
            }
            ToCoord::KvGet { key } => match self.kv.get(&key) {
                Some(value) => {
                    let reply = FromCoord::KvValue {
                        key,
                        value: value.clone(),
                    };
                    self.send(token, &reply);
                }
                None => self.kv_waiters.entry(key).or_default().push(token),
            },
            ToCoord::Status => {
                let status = Status {
                    coordinator: self.addr_string.clone(),
                    computation: self.computation,
                    processes: u32::try_from(self.process_count()).unwrap_or(u32::MAX),
                    state: self.state(),
                    generation: self.generation,
                    interval: self.interval,
                };
                self.send(token, &FromCoord::Status(status));
            }
            ToCoord::List => {
                let list = self.process_list();
                self.send(token, &FromCoord::List(list));
            }
            ToCoord::Checkpoint(options) => self.request_checkpoint(Some(token), options),
            ToCoord::RestartBegin {
                computation,
                generation,
                processes,
                ckpt_dir,
            } => {
                let reply = self.restart_begin(computation, generation, processes, ckpt_dir);
                self.send(token, &reply);
            }
            ToCoord::Kill => {
                self.kill_all();
                self.send(token, &FromCoord::Ok);
            }
            ToCoord::Quit => {
                info!("quit requested");
                self.send(token, &FromCoord::Ok);
                self.stop();
            }
            ToCoord::SetInterval { seconds } => {
                info!(seconds, "checkpoint interval set");
                self.interval = seconds;
                self.next_tick =
                    (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
                self.send(token, &FromCoord::Ok);
            }
        }
    }

    /// The parent's word that its child took over spare connection
    /// `spare`: from now on that connection is the child, a process of the
    /// computation like one that joined with a hello, named and set up like
    /// its parent.
    fn on_forked(&mut self, token: Token, spare: u64, real_pid: u32, virtual_pid: u32) {
        let Some(parent) = self.conns.get(&token).and_then(Conn::process) else {
            return;
        };
        let (parent_id, host, program, settings) = (
            parent.id,
            parent.host.clone(),
            parent.program.clone(),
            parent.settings.clone(),
        );
        let Some(&child) = self.spares.get(&spare) else {
            // The child already exited (its spare closed first).
            debug!(spare, "forked child already gone");
            return;
        };
        let Some(c) = self.conns.get_mut(&child) else {
            return;
        };
        let early = match &mut c.kind {
            Kind::Spare(sp) if sp.owner == parent_id => std::mem::take(&mut sp.early),
            _ => {
                warn!(
                    spare,
                    "process {parent_id} claims a spare connection it does not own"
                );
                return;
            }
        };
        self.spares.remove(&spare);
        let ph = ProcessHello {
            real_pid,
            virtual_pid,
            host,
            program,
            restarted: None,
            dormant: true,
        };
        let mut p = new_proc(spare, ph);
        p.settings = settings;
        p.dormant = true;
        let (label, host) = (p.label(), p.host.clone());
        info!(process = %label, id = spare, parent = parent_id, "process forked");
        c.kind = Kind::Process(p);
        self.ids.insert(spare, child);
        self.empty_deadline = None;
        self.checkpoint_joined(child, label, host);
        for msg in early {
            self.on_message(child, true, msg);
        }
    }

    /// A process exec'd; its new image kept the connection. A checkpoint
    /// request the old image had taken off the socket died with it, so a
    /// member that has not suspended yet is asked again (the agent ignores
    /// a repeat of the generation it is in).
    fn on_execd(&mut self, token: Token, program: String) {
        let Some(p) = self.conns.get_mut(&token).and_then(Conn::process_mut) else {
            return;
        };
        debug!(process = %p.label(), %program, "process exec'd");
        p.program = program;
        p.dormant = true;
        self.checkpoint_ask_again(token);
    }

    fn process_list(&self) -> Vec<ProcessEntry> {
        let mut list: Vec<ProcessEntry> = self
            .conns
            .iter()
            .filter_map(|(t, c)| c.process().map(|p| (t, p)))
            .map(|(t, p)| {
                let state = if p.exiting {
                    "exiting"
                } else if p.restoring {
                    "restarting"
                } else if self.ckpt.as_ref().is_some_and(|ck| ck.is_pending(*t)) {
                    "checkpointing"
                } else {
                    "running"
                };
                ProcessEntry {
                    process_id: p.id,
                    virtual_pid: p.virtual_pid,
                    real_pid: p.real_pid,
                    host: p.host.clone(),
                    program: p.program.clone(),
                    state: state.to_string(),
                }
            })
            .collect();
        list.sort_by_key(|e| e.process_id);
        list
    }

    fn on_exiting(&mut self, token: Token, status: i32) {
        let Some(p) = self.conns.get_mut(&token).and_then(Conn::process_mut) else {
            return;
        };
        p.exiting = true;
        debug!(process = %p.label(), status, "process is exiting");
        let label = p.label();
        self.user_barriers_drop(token);
        self.checkpoint_member_exiting(token, &label);
    }

    /// SIGKILLs every process on this host and drops every connection to a
    /// process (remote ones are expected to die with their connection).
    fn kill_all(&mut self) {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let mut killed = 0;
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            let Some(c) = self.conns.get(&token) else {
                continue;
            };
            if matches!(c.kind, Kind::Spare(_)) {
                self.close(token, "killed");
                continue;
            }
            let Some(p) = c.process() else { continue };
            // pid 0/1 or our own pid would hit a process group, init or us.
            let pid = libc::pid_t::try_from(p.real_pid).unwrap_or(0);
            if c.local && pid > 1 && pid != me {
                // Kill takes plain integers; `pid` is a positive pid of
                // a process whose connection is still open, so it is alive and
                // its pid has not been reused.
                // SAFETY: see just above.
                if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                    killed += 1;
                } else {
                    warn!(process = %p.label(), "kill: {}", io::Error::last_os_error());
                }
            }
            self.close(token, "killed");
        }
        info!(killed, "kill requested");
        self.restart = None;
        self.reap();
    }
}

fn new_proc(id: u64, ph: ProcessHello) -> Proc {
    Proc {
        id,
        virtual_pid: ph.virtual_pid,
        real_pid: ph.real_pid,
        host: ph.host,
        program: ph.program,
        restoring: ph.restarted.is_some(),
        restarted: ph.restarted,
        exiting: false,
        settings: None,
        dormant: ph.dormant,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bind_address_forms() {
        assert_eq!(
            resolve_bind("127.0.0.1", 7).unwrap(),
            "127.0.0.1:7".parse().unwrap()
        );
        assert_eq!(resolve_bind("::1", 7).unwrap(), "[::1]:7".parse().unwrap());
        assert!(resolve_bind("localhost", 7).unwrap().ip().is_loopback());
        let err = resolve_bind("no such host.invalid", 7).unwrap_err();
        assert!(err.to_string().contains("no such host.invalid"), "{err}");
    }

    #[test]
    fn port_in_use_is_reported_before_anything_else() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let config = Config {
            bind: "127.0.0.1".into(),
            port,
            interval: 0,
            exit_on_last: false,
            ckpt_dir: PathBuf::from("/tmp"),
            hiber_exe: PathBuf::from("/bin/hiber"),
        };
        let Err(err) = bind(config) else {
            panic!("bound a taken port")
        };
        assert!(
            matches!(&err, Error::Bind { error, .. } if error.kind() == io::ErrorKind::AddrInUse)
        );
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port}: "))
        );
    }
}
