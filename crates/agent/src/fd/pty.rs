//! Pseudo-terminals and the terminal the program runs on.
//!
//! A master (`/dev/ptmx`) is known by its pts number (fdinfo `tty-index`),
//! a slave by its device number (major 136–143). At the checkpoint every
//! master holder drains the pair — what the slave wrote and the master
//! did not read, what the master wrote and the slave did not read, through
//! a slave of its own opened with `TIOCGPTPEER` — and puts the bytes back
//! right away, while every program thread of the computation is still
//! stopped (a tty cannot be peeked); the image keeps them. At restart
//! `hiber restart` opens a new pair once per pts number (its number
//! changes: `ptsname` tells the new name) with the saved modes, window
//! size, packet mode and bytes, and every process that had either side
//! inherits it; the agent puts it at its numbers, makes the slave the
//! controlling terminal again of a session leader that had it, and gives
//! the terminal its foreground process group back.
//!
//! A slave whose master is not in the computation is the terminal the
//! program was started on: it is re-attached to `hiber restart`'s (kept
//! inherited at fds 0–2, reopened by path above), gets the saved modes
//! back when the process is in its foreground (`tcsetattr` from the
//! background would stop it with `SIGTTOU`), and the process gets a
//! `SIGWINCH` once its handlers are back, so a full-screen program redraws
//! for the new window.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use hiber_image::meta::{FdKind, TtyState};
use hiber_protocol::handoff::InheritedPty;
use hiber_sys::tty::{self, Termios2};

/// `/dev/ptmx`, or the one of a devpts instance.
pub fn is_master(link: &str) -> bool {
    link == "/dev/ptmx" || link.ends_with("/pts/ptmx")
}

/// The pts number of a slave device, from its `st_rdev`.
pub fn slave_index(rdev: u64) -> Option<u32> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (136..=143)
        .contains(&major)
        .then(|| (major - 136) * 256 + minor)
}

fn state_of(t: &Termios2, winsize: [u16; 4]) -> TtyState {
    TtyState {
        iflag: t.iflag,
        oflag: t.oflag,
        cflag: t.cflag,
        lflag: t.lflag,
        line: t.line,
        cc: t.cc.to_vec(),
        ispeed: t.ispeed,
        ospeed: t.ospeed,
        winsize,
    }
}

/// The kernel's termios for a saved state (`None` for a malformed one).
pub fn termios_of(s: &TtyState) -> Option<Termios2> {
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

fn state(fd: i32) -> Option<TtyState> {
    let t = tty::get_termios(fd).ok()?;
    Some(state_of(&t, tty::get_winsize(fd).unwrap_or_default()))
}

pub fn save_master(fd: i32, flags: i32) -> Option<FdKind> {
    let index = super::fdinfo(fd)
        .and_then(|i| super::field(&i, "tty-index:").and_then(|v| v.parse().ok()))
        .or_else(|| tty::pts_number(fd).ok())?;
    let state = state(fd)?;
    let packet = tty::packet_mode(fd).unwrap_or(false);
    let locked = tty::locked(fd).unwrap_or(false);
    let (from_slave, to_slave) = if locked {
        (Vec::new(), Vec::new())
    } else {
        drain_and_refill(fd, &state, packet)
    };
    Some(FdKind::PtyMaster {
        index,
        flags,
        state,
        packet,
        locked,
        from_slave,
        to_slave,
    })
}

/// Reads both directions of the pair out and writes them back (see the
/// module docs); returns (from the slave, to the slave). Runs while the
/// program's threads are stopped, in the checkpoint thread.
fn drain_and_refill(master: i32, state: &TtyState, packet: bool) -> (Vec<u8>, Vec<u8>) {
    let Some(modes) = termios_of(state) else {
        return (Vec::new(), Vec::new());
    };
    let flags = (libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u32;
    let Ok(slave) = tty::open_peer(master, flags) else {
        return (Vec::new(), Vec::new());
    };
    if packet {
        let _ = tty::set_packet_mode(master, false);
    }
    let from_slave = read_ready(master);
    let to_slave = if tty::set_termios(slave, &modes.raw()).is_ok() {
        read_ready(slave)
    } else {
        Vec::new()
    };
    if let Err(e) = tty::refill(master, slave, &modes, &from_slave, &to_slave) {
        crate::log::warn(&format!(
            "pty: putting {} + {} buffered bytes back: {e}",
            from_slave.len(),
            to_slave.len()
        ));
    }
    if packet {
        let _ = tty::set_packet_mode(master, true);
    }
    let _ = hiber_sys::close(slave);
    (from_slave, to_slave)
}

/// Everything readable from `fd` now, without blocking (the master may be
/// a blocking descriptor: `poll` says when a read would not block).
fn read_ready(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on our stack, zero timeout.
        let ready = unsafe { libc::poll(&mut p, 1, 0) };
        if ready != 1 || p.revents & libc::POLLIN == 0 {
            break;
        }
        match hiber_sys::read(fd, &mut buf) {
            Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}

pub fn save_slave(fd: i32, path: &str, flags: i32, index: u32) -> FdKind {
    let (ctty, fg_pgrp) = match controlling_rdev() {
        Some(rdev) if slave_index(rdev) == Some(index) => {
            (true, tty::foreground_group(fd).unwrap_or(0))
        }
        _ => (false, 0),
    };
    FdKind::PtySlave {
        index,
        path: path.to_owned(),
        flags,
        state: state(fd).unwrap_or_default(),
        ctty,
        fg_pgrp,
    }
}

/// The controlling terminal's device number (`/proc/self/stat` field 7,
/// 0: none), in `st_rdev` form.
fn controlling_rdev() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let tty_nr: u64 = rest.split_whitespace().nth(4)?.parse().ok()?;
    if tty_nr == 0 {
        return None;
    }
    // The kernel's old encoding: minor bits 0–7 and 20–31, major 8–19.
    let major = ((tty_nr >> 8) & 0xfff) as u32;
    let minor = ((tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00)) as u32;
    Some(libc::makedev(major, minor))
}

pub fn inherited(index: u32, ptys: &[InheritedPty]) -> Option<&InheritedPty> {
    ptys.iter().find(|p| p.index == index)
}

/// A descriptor for one side of an inherited pair, with the saved status
/// flags.
pub fn restore(src: i32, flags: i32) -> Result<i32, String> {
    if src < 0 {
        return Err("pty side not recreated".into());
    }
    // SAFETY: duplicating an inherited descriptor.
    let fd = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("pty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: flag change on our own descriptor.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            flags & (libc::O_NONBLOCK | libc::O_ASYNC | libc::O_APPEND),
        )
    };
    Ok(fd)
}

/// After the slave of a recreated pair is at its number: a session leader
/// whose controlling terminal it was takes it again, and the terminal's
/// foreground group comes back.
pub fn reattach_controlling(fd: i32, fg_pgrp: i32, warnings: &mut Vec<String>) {
    // SAFETY: getsid/getpid take no pointers.
    let leader = unsafe { libc::getsid(0) == libc::getpid() };
    if !leader {
        return;
    }
    if let Err(e) = tty::set_controlling(fd) {
        warnings.push(format!(
            "fd {fd}: cannot be the controlling terminal again: {e}"
        ));
        return;
    }
    if fg_pgrp > 0 {
        with_sigttou_blocked(|| {
            if let Err(e) = tty::set_foreground_group(fd, fg_pgrp) {
                warnings.push(format!(
                    "fd {fd}: foreground process group {fg_pgrp} not restored: {e}"
                ));
            }
        });
    }
}

fn with_sigttou_blocked(f: impl FnOnce()) {
    let bit = 1u64 << (libc::SIGTTOU - 1);
    let old = hiber_sys::sigprocmask(libc::SIG_BLOCK as u32, bit);
    f();
    if old & bit == 0 {
        hiber_sys::sigprocmask(libc::SIG_UNBLOCK as u32, bit);
    }
}

/// The program's own terminal at `fd`, now `hiber restart`'s: its saved
/// modes come back if the process is in its foreground, and a `SIGWINCH`
/// follows once the handlers are back.
pub fn reattach_own(fd: i32, state: &TtyState) {
    let Ok(fg) = tty::foreground_group(fd) else {
        return; // not a terminal now (restarted with other stdio)
    };
    // SAFETY: getpgrp takes no arguments.
    if fg != unsafe { libc::getpgrp() } {
        return;
    }
    if let Some(t) = termios_of(state) {
        let _ = tty::set_termios(fd, &t);
    }
    WINCH.store(true, Relaxed);
}

static WINCH: AtomicBool = AtomicBool::new(false);

/// Sends the `SIGWINCH` promised by [`reattach_own`], after the signal
/// handlers are restored (a mechanism of its own, listed last).
pub struct Winch;

impl crate::mechanisms::Mechanism for Winch {
    fn name(&self) -> &'static str {
        "terminal window size"
    }

    fn restore(&self, _ctx: &mut crate::mechanisms::Restore<'_>) {
        if WINCH.swap(false, Relaxed) {
            let pid = hiber_sys::getpid();
            // a signal to ourselves; it stays pending until a
            // thread that does not block it runs.
            // SAFETY: see just above.
            unsafe { libc::kill(pid as i32, libc::SIGWINCH) };
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_keeps_its_bytes_and_modes_through_a_save() {
        // SAFETY: plain libc calls on descriptors the test owns.
        let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(m >= 0);
        // SAFETY: as above.
        unsafe {
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
        }
        let flags = (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as u32;
        let s = tty::open_peer(m, flags).unwrap();
        let raw = tty::get_termios(s).unwrap().raw();
        tty::set_termios(s, &raw).unwrap();
        tty::set_winsize(m, &[33, 101, 0, 0]).unwrap();
        hiber_sys::write_all(m, b"to slave").unwrap();
        hiber_sys::write_all(s, b"from slave").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let FdKind::PtyMaster {
            index,
            state,
            from_slave,
            to_slave,
            ..
        } = save_master(m, libc::O_RDWR).unwrap()
        else {
            panic!("not a master");
        };
        assert_eq!(Some(index), tty::pts_number(m).ok());
        assert_eq!(from_slave, b"from slave");
        assert_eq!(to_slave, b"to slave");
        assert_eq!(state.winsize[..2], [33, 101]);
        assert_eq!(termios_of(&state), Some(raw));
        // Still there after the save.
        assert_eq!(tty::readable(m).unwrap(), 10);
        assert_eq!(tty::readable(s).unwrap(), 8);
        hiber_sys::close(s).unwrap();
        hiber_sys::close(m).unwrap();
    }
}
