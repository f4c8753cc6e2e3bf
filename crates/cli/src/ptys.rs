//! Pseudo-terminal pairs between the processes of a restart.
//!
//! Every image lists the pty masters it held (pts number, modes, window
//! size, packet mode, the bytes buffered both ways) and the slaves (pts
//! number, whether it was the controlling terminal). A pair whose master
//! is among the images (on one host) is opened here once from
//! `/dev/ptmx` — it gets a new pts number, so the slave's path changes and
//! `ptsname` tells the new one; names are not virtualized — given its
//! modes, window size and bytes back, and both sides are inherited by
//! every process that had either (through `fork`, several may); the agent
//! puts them at their numbers. A slave whose master is not among the
//! images is the terminal the program was started on: the agent
//! re-attaches it to `hiber restart`'s.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, bail};
use hiber_image::Image;
use hiber_image::meta::{FdKind, TtyState};
use hiber_protocol::handoff::InheritedPty;
use hiber_sys::tty::{self, Termios2};

struct Pair {
    index: u32,
    master: OwnedFd,
    slave: OwnedFd,
    /// Images that had the master, the slave.
    master_users: Vec<usize>,
    slave_users: Vec<usize>,
}

pub struct Ptys {
    pairs: Vec<Pair>,
}

struct Seen {
    state: TtyState,
    packet: bool,
    locked: bool,
    from_slave: Vec<u8>,
    to_slave: Vec<u8>,
    users: Vec<usize>,
}

impl Ptys {
    pub fn create(images: &[&Image]) -> anyhow::Result<Ptys> {
        let mut masters: HashMap<(String, u32), Seen> = HashMap::new();
        let mut slaves: HashMap<(String, u32), Vec<usize>> = HashMap::new();
        for (i, img) in images.iter().enumerate() {
            let host = img.identity().hostname.clone();
            for m in img.fds()? {
                match m.kind {
                    FdKind::PtyMaster {
                        index,
                        state,
                        packet,
                        locked,
                        from_slave,
                        to_slave,
                        ..
                    } => {
                        let s = masters
                            .entry((host.clone(), index))
                            .or_insert_with(|| Seen {
                                state,
                                packet,
                                locked,
                                from_slave: Vec::new(),
                                to_slave: Vec::new(),
                                users: Vec::new(),
                            });
                        // Every holder drained and refilled the pair in
                        // turn: the longest record is the whole of it.
                        if from_slave.len() > s.from_slave.len() {
                            s.from_slave = from_slave;
                        }
                        if to_slave.len() > s.to_slave.len() {
                            s.to_slave = to_slave;
                        }
                        if !s.users.contains(&i) {
                            s.users.push(i);
                        }
                    }
                    FdKind::PtySlave { index, .. } => {
                        let u = slaves.entry((host.clone(), index)).or_default();
                        if !u.contains(&i) {
                            u.push(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut keys: Vec<(String, u32)> = masters.keys().cloned().collect();
        keys.sort();
        let mut pairs = Vec::new();
        for key in keys {
            let Some(seen) = masters.remove(&key) else {
                continue;
            };
            let (master, slave) =
                open_pair(&seen).with_context(|| format!("recreating pty /dev/pts/{}", key.1))?;
            pairs.push(Pair {
                index: key.1,
                master,
                slave,
                master_users: seen.users,
                slave_users: slaves.remove(&key).unwrap_or_default(),
            });
        }
        Ok(Ptys { pairs })
    }

    /// Descriptors image `i` inherits.
    pub fn fds_of(&self, i: usize) -> Vec<RawFd> {
        self.inherited_by(i)
            .iter()
            .flat_map(|p| [p.master, p.slave])
            .filter(|&fd| fd >= 0)
            .collect()
    }

    /// What the agent of image `i` is told about its ptys.
    pub fn inherited_by(&self, i: usize) -> Vec<InheritedPty> {
        self.pairs
            .iter()
            .filter(|p| p.master_users.contains(&i) || p.slave_users.contains(&i))
            .map(|p| InheritedPty {
                index: p.index,
                master: if p.master_users.contains(&i) {
                    p.master.as_raw_fd()
                } else {
                    -1
                },
                slave: if p.slave_users.contains(&i) {
                    p.slave.as_raw_fd()
                } else {
                    -1
                },
            })
            .collect()
    }
}

/// A new pair from `/dev/ptmx`, unlocked, with the saved modes, window
/// size and bytes, then packet mode and the lock as they were.
fn open_pair(seen: &Seen) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: NUL-terminated path; a new descriptor or -1.
    let m = unsafe { libc::open(c"/dev/ptmx".as_ptr(), flags) };
    if m < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /dev/ptmx");
    }
    // SAFETY: a fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    tty::set_locked(m, false).map_err(|e| anyhow::anyhow!("unlocking: {e}"))?;
    let s = tty::open_peer(m, (flags | libc::O_NONBLOCK) as u32)
        .map_err(|e| anyhow::anyhow!("opening the slave: {e}"))?;
    // SAFETY: a fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    let Some(modes) = termios(&seen.state) else {
        bail!("malformed terminal modes in the image");
    };
    tty::set_winsize(m, &seen.state.winsize).map_err(|e| anyhow::anyhow!("window size: {e}"))?;
    tty::refill(m, s, &modes, &seen.from_slave, &seen.to_slave).map_err(|e| {
        anyhow::anyhow!(
            "putting back {} + {} buffered bytes: {e}",
            seen.from_slave.len(),
            seen.to_slave.len()
        )
    })?;
    // The inherited slave is blocking; a process that had it
    // non-blocking gets its flags from the agent.
    // SAFETY: flag change on our own descriptor.
    unsafe { libc::fcntl(s, libc::F_SETFL, 0) };
    if seen.packet {
        tty::set_packet_mode(m, true).map_err(|e| anyhow::anyhow!("packet mode: {e}"))?;
    }
    if seen.locked {
        let _ = tty::set_locked(m, true);
    }
    Ok((master, slave))
}

fn termios(s: &TtyState) -> Option<Termios2> {
    Some(Termios2 {
        iflag: s.iflag,
        oflag: s.oflag,
        cflag: s.cflag,
        lflag: s.lflag,
        line: s.line,
        cc: s.cc.as_slice().try_into().ok()?,
        ispeed: s.ispeed,
        ospeed: s.ospeed,
    })
}
