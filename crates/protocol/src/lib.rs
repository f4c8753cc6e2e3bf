//! The coordinator protocol.
//!
//! Every connection starts with a [`Hello`] frame that carries the protocol
//! version and the per-user cookie; the coordinator answers [`Welcome`] or
//! [`Refused`]. After that both sides exchange [`ToCoord`] / [`FromCoord`]
//! frames. A frame is a little-endian `u32` length followed by that many
//! bytes of postcard-encoded message; lengths above [`MAX_FRAME`] are refused
//! before anything is allocated.
//!
//! Processes of a computation keep one connection open for their lifetime;
//! control clients (`hiber checkpoint`, `status`, ...) open one per command.

pub mod client;
pub mod cookie;
pub mod frame;
pub mod handoff;

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of the messages below.
pub const PROTOCOL_VERSION: u32 = 3;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 16 << 20;
/// Default coordinator address.
pub const DEFAULT_COORD: &str = "127.0.0.1:7779";

/// Barrier names used by a checkpoint, in order.
pub mod barrier {
    /// Every process has stopped its threads and drained what it must.
    pub const SUSPENDED: &str = "suspended";
    /// Every process has written (and synced) its temporary image.
    pub const WRITTEN: &str = "written";
    /// Every restarted process has restored its kernel state.
    pub const RESTORED: &str = "restored";

    /// The names the checkpoint and restart protocol uses itself. Every
    /// other name is a *user* barrier (`hiber_barrier()` from a plugin or a
    /// callback): it waits for every process of the computation and is
    /// released with `Release { generation: 0, name }`.
    pub const RESERVED: [&str; 3] = [SUSPENDED, WRITTEN, RESTORED];

    /// True for a name a plugin or callback may use with `hiber_barrier()`.
    pub fn is_user(name: &str) -> bool {
        !name.is_empty() && !RESERVED.contains(&name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    /// Contents of the cookie file, proving the peer is the same user.
    pub cookie: [u8; 32],
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Role {
    /// A process of the computation (the agent inside it).
    Process(ProcessHello),
    /// A one-shot command-line client.
    Control,
    /// A connection process `owner` opens ahead of its next `fork`: the
    /// child takes it over as its own (`ToCoord::Forked`), so a fork costs
    /// no connect and no round trip. Its `Welcome` already carries the
    /// child's process id; it is not a process until then.
    Spare { owner: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessHello {
    /// Real pid on its host.
    pub real_pid: u32,
    /// Virtual pid (the pid the program sees); equal to `real_pid` for a
    /// process that was not restarted.
    pub virtual_pid: u32,
    pub host: String,
    /// Short program name (`/proc/self/comm`-like), used in image names.
    pub program: String,
    /// `Some` when this process comes back from an image: the computation
    /// and generation it was checkpointed in.
    pub restarted: Option<RestartedFrom>,
    /// Its checkpoint thread is not started yet (the agent starts it when
    /// the first checkpoint comes): until it answers, a checkpoint asks it
    /// again every 20 ms.
    pub dormant: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestartedFrom {
    pub computation: u64,
    pub generation: u64,
    /// Stable id of the process inside its computation (from the image).
    pub process_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Welcome {
    pub version: u32,
    /// Id of the computation this coordinator runs.
    pub computation: u64,
    /// Stable id of this process inside the computation (kept across restarts).
    pub process_id: u64,
    /// Last generation completed (0 before the first checkpoint).
    pub generation: u64,
    pub coordinator: String,
    /// Name of the coordinator's abstract local socket (empty: none). A
    /// process on the coordinator's host may connect there instead
    /// (`client::local_addr`), at a fraction of TCP's cost.
    pub local: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum HelloReply {
    Welcome(Welcome),
    Refused(String),
}

/// How a checkpoint writes its images.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Absolute directory; empty means "the directory the process was launched with".
    pub dir: String,
    /// `None` keeps the process's own (launch) setting.
    pub compress: Option<bool>,
    pub sync: Option<bool>,
}

/// Messages a process or control client sends to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ToCoord {
    // ---- from processes ----
    /// The process reached the named barrier of `generation`.
    Barrier {
        generation: u64,
        name: String,
    },
    /// The process's image is on disk under its final name.
    CheckpointDone {
        generation: u64,
        image: String,
        bytes: u64,
    },
    /// The process could not take part in the checkpoint; it has resumed.
    CheckpointFailed {
        generation: u64,
        error: String,
    },
    /// Store a value in the name service (later `KvGet`s see it).
    KvPut {
        key: String,
        value: Vec<u8>,
    },
    /// Ask for a value; the reply waits until the key exists.
    KvGet {
        key: String,
    },
    /// The process is exiting normally with this status.
    Exiting {
        status: i32,
    },
    /// This process forked: the child (pids as the coordinator and the
    /// program see them) has taken over our spare connection `spare` (its
    /// `Welcome`'s process id). Sent before the parent's `fork` returns, on
    /// the parent's own connection, so it arrives before anything the
    /// parent sends later (a barrier).
    Forked {
        spare: u64,
        real_pid: u32,
        virtual_pid: u32,
    },
    /// The process exec'd `program` and its new image took over the
    /// connection (sent first thing by the new image's agent).
    Execd {
        program: String,
    },
    /// The process's connected TCP sockets, sent with threads stopped
    /// just before `Barrier(suspended)` (only by a process that has some):
    /// the coordinator pairs ends across the computation and answers with
    /// [`FromCoord::TcpPlan`] before the release.
    TcpEnds {
        generation: u64,
        ends: Vec<TcpEnd>,
    },
    /// Per-process default settings, sent once after `Welcome`.
    Settings {
        ckpt_dir: String,
        compress: bool,
        sync: bool,
    },

    // ---- from control clients ----
    Status,
    List,
    /// Run a checkpoint now and reply when it is complete or failed.
    Checkpoint(CheckpointOptions),
    /// A `hiber restart` is about to bring back `processes` processes of
    /// `computation` at `generation`; the `restored` barrier waits for all.
    RestartBegin {
        computation: u64,
        generation: u64,
        processes: u32,
        ckpt_dir: String,
    },
    /// Kill every process of the computation (SIGKILL) and forget them.
    Kill,
    /// Stop the coordinator (it kills nothing).
    Quit,
    /// Set the checkpoint interval in seconds (0: off).
    SetInterval {
        seconds: u64,
    },
}

/// Messages the coordinator sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum FromCoord {
    // ---- to processes ----
    /// Start checkpoint `generation`: suspend, then report `Barrier(SUSPENDED)`.
    Checkpoint {
        generation: u64,
        options: CheckpointOptions,
    },
    /// Everyone reached the named barrier; go on.
    Release {
        generation: u64,
        name: String,
    },
    /// Checkpoint `generation` is abandoned: discard the temporary image and resume.
    Abort {
        generation: u64,
        reason: String,
    },
    KvValue {
        key: String,
        value: Vec<u8>,
    },
    /// What to do with each TCP socket a process listed in `TcpEnds`, sent
    /// just before `Release(suspended)`.
    TcpPlan {
        generation: u64,
        /// The bytes that end each side's drained data this checkpoint
        /// (random, so no program's data contains them by chance).
        marker: Vec<u8>,
        ends: Vec<TcpRole>,
    },

    // ---- to control clients ----
    Status(Status),
    List(Vec<ProcessEntry>),
    CheckpointResult(CheckpointResult),
    Ok,
    Error(String),
}

/// One connected TCP socket, as a process reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct TcpEnd {
    pub inode: u64,
    /// `getsockname` / `getpeername`, as `std::net::SocketAddr` prints them.
    pub local: String,
    pub remote: String,
    /// Both directions open (`TCP_ESTABLISHED`); a half-closed connection
    /// is only peeked at.
    pub established: bool,
    /// Bytes written and not yet acknowledged by the peer (`SIOCOUTQ`).
    pub unsent: u32,
}

impl TcpEnd {
    /// The key that names this connection among a computation's: (host
    /// for loopback addresses, which only mean something on one host; our
    /// address; the peer's). The peer's end has the two addresses swapped.
    pub fn key<'a>(host: &'a str, local: &'a str, remote: &'a str) -> (&'a str, &'a str, &'a str) {
        let h = if is_loopback(local) || is_loopback(remote) {
            host
        } else {
            ""
        };
        (h, local, remote)
    }
}

/// A socket address (`SocketAddr` text) on the loopback network.
pub fn is_loopback(addr: &str) -> bool {
    use std::net::{IpAddr, SocketAddr};
    match addr.parse::<SocketAddr>().map(|a| a.ip()) {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// What one process does with one of its TCP sockets at a checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TcpRole {
    pub inode: u64,
    /// The peer is a socket of the computation.
    pub internal: bool,
    /// This process saves the socket's data (one process among those
    /// sharing the socket).
    pub leader: bool,
    /// Both ends read their data out of the kernel up to the peer's marker
    /// and have it echoed back (bytes still queued at a sender need room);
    /// otherwise every byte is already in a receive queue and is peeked.
    pub drain: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum State {
    Running,
    Checkpointing,
    Restarting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Checkpointing => "checkpointing",
            State::Restarting => "restarting",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub coordinator: String,
    pub computation: u64,
    pub processes: u32,
    pub state: State,
    pub generation: u64,
    /// Seconds; 0 when off.
    pub interval: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessEntry {
    pub process_id: u64,
    pub virtual_pid: u32,
    pub real_pid: u32,
    pub host: String,
    pub program: String,
    /// "running", "checkpointing", "restarting", ...
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointResult {
    pub generation: u64,
    pub images: Vec<String>,
    /// One entry per failed process: "program[pid]: what went wrong".
    pub errors: Vec<String>,
    /// Path of the restart script written for this generation.
    pub restart_script: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::barrier;

    #[test]
    fn user_barrier_names() {
        assert!(barrier::is_user("plugin-test"));
        assert!(barrier::is_user("Suspended"));
        for reserved in barrier::RESERVED {
            assert!(!barrier::is_user(reserved), "{reserved}");
        }
        assert!(!barrier::is_user(""));
    }
}
