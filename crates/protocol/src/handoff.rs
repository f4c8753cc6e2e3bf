//! Arguments `hiber restart` passes, through the restorer, to the agent in a
//! restarted process. They travel inside the restore plan as postcard bytes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RestartArgs {
    /// Coordinator to join.
    pub coord: String,
    /// New checkpoint directory (`None`: keep the one the process had).
    pub ckpt_dir: Option<String>,
    /// The image this process comes from.
    pub image: String,
    /// File descriptors the restorer used (plan, image, unpacked data) that
    /// the agent closes once memory is in place.
    pub temp_fds: Vec<i32>,
    /// A directory descriptor of the host's /proc when the process runs in
    /// a pid namespace of its own (`hiber restart --same-ids`), so the agent
    /// can tell the coordinator its pid as the host sees it; -1 otherwise.
    pub host_proc_fd: i32,
    /// Pipes between processes of the computation, created (and refilled)
    /// by `hiber restart` and inherited: the agent puts their ends at the
    /// numbers the process had.
    pub pipes: Vec<InheritedPipe>,
    /// Regular files whose open file description several processes shared:
    /// opened once by `hiber restart` and inherited.
    pub files: Vec<InheritedFile>,
    /// Connected UNIX sockets between processes of the computation (or
    /// within one): each pair created once by `hiber restart`, refilled,
    /// and each end inherited by every process that had it.
    pub sockets: Vec<InheritedSocket>,
    /// Pseudo-terminal pairs whose master was in the computation: each
    /// opened once by `hiber restart` (a new pts number), refilled, and
    /// both sides inherited by every process that had either.
    pub ptys: Vec<InheritedPty>,
}

/// A pty pair `hiber restart` recreated, as descriptors this process
/// inherits (-1 for a side it did not have).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct InheritedPty {
    /// The pts number at the checkpoint.
    pub index: u32,
    pub master: i32,
    pub slave: i32,
}

/// One end of a UNIX socket pair `hiber restart` recreated, as a
/// descriptor this process inherits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct InheritedSocket {
    /// The socket's inode at the checkpoint.
    pub inode: u64,
    /// The inherited descriptor.
    pub fd: i32,
}

/// One of this process's descriptors that stands for a file description
/// shared with other processes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct InheritedFile {
    /// The descriptor's number in the process.
    pub fd: i32,
    /// The inherited descriptor to duplicate there.
    pub inherited: i32,
}

/// One pipe (or FIFO) `hiber restart` recreated, as descriptors this
/// process inherits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct InheritedPipe {
    /// The pipe's inode at the checkpoint (anonymous pipes).
    pub inode: u64,
    /// The FIFO's path (empty for an anonymous pipe).
    pub path: String,
    pub read_fd: i32,
    pub write_fd: i32,
}
