//! Variable-length metadata sections, encoded with postcard.
//!
//! These records hold strings and lists whose sizes vary per process, so
//! they are serde types rather than fixed records. postcard is compact and
//! schema-less: adding a field changes the encoding, so any change here
//! must come with a new section kind or a new format version (readers skip
//! unknown section kinds, which is how old readers survive new metadata).

use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Serialize};

/// One resource limit (`getrlimit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number.
    pub resource: u32,
    pub cur: u64,
    pub max: u64,
}

/// The fields of `prctl(PR_SET_MM_MAP)` that a restart re-applies, so that
/// `/proc/self/stat`, `brk` and `/proc/self/cmdline` look as before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// One signal disposition, in the kernel's `struct sigaction` terms (not
/// glibc's), because the restorer re-installs it with raw `rt_sigaction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub signo: u32,
    /// Handler address, or `SIG_DFL` (0) / `SIG_IGN` (1).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer` (glibc's `__restore_rt`).
    pub restorer: u64,
    /// Blocked-signal mask while the handler runs (64 signals).
    pub mask: u64,
}

/// Process-wide state that memory doesn't hold (PROCESS section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMeta {
    pub program: String,
    pub argv: Vec<String>,
    /// `/proc/self/exe` target.
    pub exe: String,
    pub cwd: String,
    pub umask: u32,
    pub rlimits: Vec<Rlimit>,
    pub mm: MmLayout,
    pub sigactions: Vec<SigAction>,
    /// Process-directed pending signals.
    pub pending_signals: u64,
    /// Address of the agent's restart entry in the restored memory.
    pub restart_entry: u64,
    pub agent_version: String,
    /// Checkpointed without a coordinator (`hiber_init_standalone`): a
    /// restart needs none either.
    pub standalone: bool,
    /// Armed `setitimer` timers (`alarm` is `ITIMER_REAL`).
    #[serde(default)]
    pub itimers: Vec<Itimer>,
    /// POSIX timers (`timer_create`), in id order.
    #[serde(default)]
    pub posix_timers: Vec<PosixTimer>,
    /// Parent, process group and session (pids the program saw). A restart
    /// rebuilds the tree from these: a process whose parent is in the same
    /// restart becomes its child again.
    #[serde(default)]
    pub ppid: u32,
    #[serde(default)]
    pub pgid: u32,
    #[serde(default)]
    pub sid: u32,
    /// Children that had exited and were not reaped yet (pid, wait status):
    /// recreated as zombies, so the program still reaps them.
    #[serde(default)]
    pub zombies: Vec<(u32, i32)>,
    /// System V IPC objects the process created, looked up or attached
    /// (every process of the computation that used one saves it; a restart
    /// recreates each id once).
    #[serde(default)]
    pub sysv: Vec<SysvObject>,
}

/// One System V IPC object (`shmctl`/`semctl`/`msgctl` `IPC_STAT`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvObject {
    /// The id the program holds.
    pub id: i32,
    /// `IPC_PRIVATE` (0) for a private object or a segment marked for
    /// removal.
    pub key: i32,
    /// Permission bits (`ipc_perm.mode & 0o777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: SysvKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SysvKind {
    Shm {
        /// `shm_segsz` as created.
        size: u64,
        /// `IPC_RMID` was called while still attached (`SHM_DEST`).
        removed: bool,
        /// The contents, when this process did not have the segment
        /// attached (an attaching process's memory image has them).
        contents: Option<Vec<u8>>,
    },
    Sem {
        /// `GETALL`.
        values: Vec<u16>,
    },
    Msg {
        /// `msg_qbytes`.
        qbytes: u64,
        /// The queue's messages in order (type, text), read with
        /// `MSG_COPY` (nothing consumed).
        messages: Vec<(i64, Vec<u8>)>,
    },
}

/// One armed interval timer (`getitimer`); times in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Itimer {
    /// `ITIMER_REAL` (0), `ITIMER_VIRTUAL` (1) or `ITIMER_PROF` (2).
    pub which: u32,
    /// Time left to the next expiry when the checkpoint was taken (0 with
    /// an interval: the expiry signal was pending, not yet re-armed).
    pub value_us: u64,
    pub interval_us: u64,
}

/// One POSIX timer (`/proc/self/timers` and `timer_gettime`); times in
/// nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    /// The kernel's timer id: the program's `timer_t`.
    pub id: i32,
    /// `CLOCK_*` id, or a CPU-time clock (negative; glibc passes -6 for
    /// `CLOCK_PROCESS_CPUTIME_ID` and -2 for `CLOCK_THREAD_CPUTIME_ID`).
    pub clock: i32,
    /// `sigev_notify`: `SIGEV_SIGNAL` (0), `SIGEV_NONE` (1),
    /// `SIGEV_THREAD` (2), `SIGEV_SIGNAL | SIGEV_THREAD_ID` (4).
    pub notify: i32,
    pub signo: i32,
    /// `sigev_value`, handed back in `si_value`.
    pub sigev_value: u64,
    /// Target thread (virtual tid) of a `SIGEV_THREAD_ID` timer, else 0.
    pub tid: u32,
    /// Time left to the next expiry (0: disarmed).
    pub value_ns: u64,
    pub interval_ns: u64,
}

/// Per-thread state the thread itself recorded in its checkpoint handler
/// (one element of the THREADS section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMeta {
    /// Virtual tid.
    pub tid: u32,
    pub is_main: bool,
    /// hiber's own checkpoint thread.
    pub is_agent: bool,
    /// `/proc/self/task/N/comm`.
    pub name: String,
    pub fs_base: u64,
    /// `set_tid_address` target (`PR_GET_TID_ADDRESS`).
    pub tid_address: u64,
    pub robust_list: u64,
    pub robust_len: u64,
    /// rseq area registered by glibc ≥ 2.35 (0 if none).
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub altstack_sp: u64,
    pub altstack_size: u64,
    pub altstack_flags: u32,
    pub sigmask: u64,
    /// Thread-directed pending signals.
    pub pending: u64,
    /// Where the thread was interrupted (for display; the full context is
    /// in its saved stack).
    pub rip: u64,
    pub rsp: u64,
}

/// What kind of object a descriptor refers to, with what recreating it
/// needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    File {
        path: String,
        flags: i32,
        offset: u64,
        size: u64,
        mode: u32,
        /// The path ends in ` (deleted)`: the contents must come from
        /// elsewhere.
        deleted: bool,
        /// The file's contents at the checkpoint: always for a deleted
        /// file, for every file with `hiber launch --ckpt-open-files`.
        #[serde(default)]
        contents: Option<Vec<u8>>,
    },
    Directory {
        path: String,
        flags: i32,
        offset: u64,
    },
    Terminal {
        path: String,
        flags: i32,
    },
    /// An anonymous pipe end (`pipe:[inode]`) or a FIFO (`path` set).
    Pipe {
        inode: u64,
        flags: i32,
        /// The FIFO's path; empty for an anonymous pipe.
        path: String,
        /// `F_GETPIPE_SZ`.
        capacity: u32,
        /// Bytes in the pipe at the checkpoint, read without consuming them
        /// (`tee`) through a read end; empty for a write end.
        data: Vec<u8>,
        /// A read end whose pipe had no writer left anywhere (`POLLHUP`):
        /// it is recreated with its bytes and no write end.
        #[serde(default)]
        writers_gone: bool,
    },
    Socket {
        inode: u64,
        flags: i32,
    },
    /// A kind a restart cannot recreate (a kernel object without a path:
    /// `anon_inode:[io_uring]`, `anon_inode:[pidfd]`, ...; a netlink
    /// socket): it becomes a placeholder, with a warning naming `link`.
    Other {
        /// `readlink /proc/self/fd/N`, prefixed with what the link does not
        /// tell (`netlink socket:[1234]`).
        link: String,
        flags: i32,
    },
    // The kinds below were added after the first images were written:
    // postcard stores the variant's index, so new kinds go at the end and
    // older images keep decoding.
    /// `eventfd(2)`: the counter and whether it counts as a semaphore.
    EventFd {
        flags: i32,
        count: u64,
        /// `EFD_SEMAPHORE` (fdinfo `eventfd-semaphore`; kernels before 6.6
        /// do not say, and it is then recorded as false).
        semaphore: bool,
    },
    /// `timerfd_create(2)`: the clock, the time left and the interval as
    /// `timerfd_gettime` told them, and the expirations not yet read.
    TimerFd {
        flags: i32,
        clock: i32,
        /// `timerfd_settime` flags (`TFD_TIMER_ABSTIME`,
        /// `TFD_TIMER_CANCEL_ON_SET`).
        settime_flags: i32,
        /// Time left before the next expiration, ns (0: disarmed).
        value_ns: u64,
        interval_ns: u64,
        /// Expirations since the last `read`.
        ticks: u64,
    },
    /// `signalfd(2)`: the signals it accepts.
    SignalFd {
        flags: i32,
        mask: u64,
    },
    /// `epoll_create(2)`: the interest list.
    Epoll {
        flags: i32,
        targets: Vec<EpollTarget>,
    },
    /// `inotify_init(2)`: the watches, in watch-descriptor order.
    Inotify {
        flags: i32,
        watches: Vec<InotifyWatch>,
    },
    /// A connected UNIX-domain socket (`socketpair`, or `connect`/`accept`)
    /// whose peer `sock_diag` named.
    UnixSocket {
        inode: u64,
        /// The peer's inode (`UNIX_DIAG_PEER`).
        peer: u64,
        /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
        sock_type: i32,
        flags: i32,
        /// `SO_SNDBUF` / `SO_RCVBUF` as `getsockopt` reports them (doubled).
        sndbuf: i32,
        rcvbuf: i32,
        passcred: bool,
        /// `SO_PEEK_OFF` the program had set (-1: none).
        peek_off: i32,
        /// The receive queue, read without consuming it: one element per
        /// message for datagram and seqpacket sockets (boundaries kept),
        /// the byte stream in one or more pieces for a stream socket.
        queue: Vec<Vec<u8>>,
        /// The peer was closed (`sock_diag` names it with inode 0, and
        /// `peer` is 0): the pair is recreated for this end's queue, and
        /// its other end closed.
        peer_gone: bool,
    },
    /// A listening UNIX socket (`bind` + `listen`): bound again to its
    /// name and listening at restart. Connections still waiting to be
    /// accepted are not kept.
    UnixListener {
        inode: u64,
        /// `SOCK_STREAM` or `SOCK_SEQPACKET`.
        sock_type: i32,
        flags: i32,
        /// `sun_path` as `getsockname` returns it: a path (relative ones
        /// to `cwd`), or an abstract name starting with a NUL byte.
        name: Vec<u8>,
        /// The process's working directory at the checkpoint.
        cwd: String,
        /// `listen` backlog (`UNIX_DIAG_RQLEN`).
        backlog: u32,
        /// Connections waiting to be accepted at the checkpoint (lost).
        pending: u32,
        sndbuf: i32,
        rcvbuf: i32,
        passcred: bool,
    },
    /// A POSIX message queue (`mq_open`).
    Mqueue {
        /// The queue's name (`/name`), as `mq_open` takes it.
        name: String,
        flags: i32,
        /// Permission bits.
        mode: u32,
        /// `mq_maxmsg`, `mq_msgsize`.
        maxmsg: i64,
        msgsize: i64,
        /// The queue's messages in the order they come out (priority,
        /// text); every process that has it open saves the same list.
        messages: Vec<(u32, Vec<u8>)>,
        /// The name was unlinked.
        unlinked: bool,
    },
    /// A connected TCP socket (IPv4 or IPv6).
    TcpSocket {
        inode: u64,
        flags: i32,
        /// `getsockname` / `getpeername`, as `std::net::SocketAddr` prints
        /// them (an IPv6 socket's IPv4 peers are `[::ffff:a.b.c.d]:port`).
        local: String,
        remote: String,
        /// The peer is a socket of the computation (the coordinator paired
        /// the two at the checkpoint); otherwise it comes back closed.
        internal: bool,
        /// The bytes the program had not read yet (drained or peeked at the
        /// checkpoint), saved by one of the processes sharing the socket;
        /// `None` in the others.
        queue: Option<Vec<u8>>,
        /// This end had shut down writing (its FIN was sent).
        shut_wr: bool,
        options: Vec<SockOpt>,
    },
    /// A TCP socket that is not connected (listening, bound, or fresh), or
    /// a UDP socket.
    InetSocket {
        inode: u64,
        flags: i32,
        /// `AF_INET` or `AF_INET6`.
        family: i32,
        sock_type: i32,
        protocol: i32,
        /// The bound address (empty: not bound).
        local: String,
        /// The peer a UDP socket is connected to (empty: none).
        remote: String,
        /// The `listen` backlog of a listening socket.
        listen: Option<u32>,
        /// Datagrams were waiting to be read: they are not kept (dropped,
        /// as the network may drop them).
        queued: bool,
        options: Vec<SockOpt>,
    },
    /// A UNIX datagram socket that is not one end of a pair: bound to a
    /// name (a server), connected to a named socket (a client), or both.
    UnixDgram {
        inode: u64,
        flags: i32,
        /// Its own name (`getsockname`; empty: unbound), a path (relative
        /// ones to `cwd`) or an abstract name starting with a NUL byte.
        name: Vec<u8>,
        /// The name of the socket it is connected to (empty: none).
        peer_name: Vec<u8>,
        cwd: String,
        /// The messages waiting, one element each.
        queue: Vec<Vec<u8>>,
        sndbuf: i32,
        rcvbuf: i32,
        passcred: bool,
    },
    /// The master side of a pseudo-terminal (`/dev/ptmx`, `posix_openpt`,
    /// `openpty`, `forkpty`). `hiber restart` opens a new pair once per
    /// `index` (the pts number changes) and hands both sides to every
    /// process that had them.
    PtyMaster {
        /// The pts number at the checkpoint (fdinfo `tty-index`).
        index: u32,
        flags: i32,
        /// The pair's terminal state (the slave's `termios`, window size).
        state: TtyState,
        /// `TIOCPKT` was on.
        packet: bool,
        /// `TIOCSPTLCK`: the slave was still locked (no `unlockpt` yet).
        locked: bool,
        /// Bytes the slave side wrote that the master had not read (output
        /// processing already applied), drained and refilled in place at
        /// the checkpoint.
        from_slave: Vec<u8>,
        /// Bytes the master wrote that the slave had not read (input
        /// processing already applied).
        to_slave: Vec<u8>,
    },
    /// The slave side of a pseudo-terminal (`/dev/pts/N`). When the master
    /// of `index` is among the restarted images, the slave of the new pair
    /// comes back at this number; otherwise it is the terminal the program
    /// was started on, and is re-attached to `hiber restart`'s with its
    /// modes.
    PtySlave {
        index: u32,
        /// The path at the checkpoint (`/dev/pts/N`).
        path: String,
        flags: i32,
        state: TtyState,
        /// It is this process's controlling terminal.
        ctty: bool,
        /// The terminal's foreground process group (`TIOCGPGRP`), when it
        /// is the controlling terminal; 0 otherwise.
        fg_pgrp: i32,
    },
}

/// One socket option, as `getsockopt` returned it, for `setsockopt` at
/// restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

/// A terminal's modes and window size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyState {
    /// `struct termios` as `TCGETS` fills it (`c_iflag`, `c_oflag`,
    /// `c_cflag`, `c_lflag`).
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    /// `c_cc` (32 bytes on x86-64 glibc).
    pub cc: Vec<u8>,
    pub ispeed: u32,
    pub ospeed: u32,
    /// `TIOCGWINSZ`: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
}

/// One registration of an epoll instance's interest list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    /// The descriptor number given to `EPOLL_CTL_ADD`.
    pub fd: i32,
    /// `epoll_event.events`, with `EPOLLET`, `EPOLLONESHOT`, ... (a
    /// one-shot registration that fired has no event bits left).
    pub events: u32,
    /// `epoll_event.data`, returned as is by `epoll_wait`.
    pub data: u64,
}

/// One inotify watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    pub wd: i32,
    /// The kernel's mask for it (`IN_*` events and `IN_ONESHOT`,
    /// `IN_EXCL_UNLINK`, ...).
    pub mask: u32,
    /// The path given to `inotify_add_watch`, made absolute; empty when
    /// the agent did not see the call (the watch cannot come back).
    pub path: String,
}

/// One file descriptor (one element of the FDS section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdMeta {
    pub fd: i32,
    pub cloexec: bool,
    pub kind: FdKind,
    /// A lower fd of this process that shares the same open file
    /// description (`dup`, `2>&1`): restored as a duplicate of it, so the
    /// two keep one offset and one set of status flags.
    pub dup_of: Option<i32>,
    /// Descriptors of this process's children (pid, fd) that share this
    /// open file description (inherited through `fork`): a restart gives
    /// them one description again, so they keep one offset.
    #[serde(default)]
    pub shared_with: Vec<(u32, i32)>,
    /// `F_GETOWN_EX`: who gets `SIGIO`/`SIGURG` for it (type, pid), if set.
    #[serde(default)]
    pub owner: Option<(i32, i32)>,
}

impl FdKind {
    /// Short name of the kind, for listings.
    pub fn name(&self) -> &'static str {
        match self {
            FdKind::File { .. } => "file",
            FdKind::Directory { .. } => "dir",
            FdKind::Terminal { .. } => "tty",
            FdKind::Pipe { .. } => "pipe",
            FdKind::Socket { .. } => "socket",
            FdKind::Other { .. } => "other",
            FdKind::EventFd { .. } => "eventfd",
            FdKind::TimerFd { .. } => "timerfd",
            FdKind::SignalFd { .. } => "signalfd",
            FdKind::Epoll { .. } => "epoll",
            FdKind::Inotify { .. } => "inotify",
            FdKind::UnixSocket { .. } => "unix",
            FdKind::UnixListener { .. } => "listen",
            FdKind::TcpSocket { .. } => "tcp",
            FdKind::InetSocket { .. } => "inet",
            FdKind::UnixDgram { .. } => "unix-dgram",
            FdKind::Mqueue { .. } => "mqueue",
            FdKind::PtyMaster { .. } => "ptmx",
            FdKind::PtySlave { .. } => "pts",
        }
    }
}

/// Encodes a metadata value the way sections store it.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a metadata section; trailing bytes are an error, so a section
/// that doesn't match the expected type is not half-read silently.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}
