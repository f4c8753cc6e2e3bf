//! Terminals and pseudo-terminals: the ioctls the agent (at a checkpoint)
//! and `hiber restart` (for a new pair) both need, and the refill of a
//! pty pair's buffered bytes, shared so the two do it the same way.
//!
//! Termios ioctls on a pty master act on its slave (the kernel's
//! `tty_mode_ioctl` and `TIOCGWINSZ` use the linked tty), so the master
//! alone tells the pair's modes and window size.

use crate::{Errno, SysResult, Sysno};

const TCGETS2: usize = 0x802C_542A;
const TCSETS2: usize = 0x402C_542B;
const TIOCGWINSZ: usize = 0x5413;
const TIOCSWINSZ: usize = 0x5414;
const FIONREAD: usize = 0x541B;
const TIOCPKT: usize = 0x5420;
const TIOCGPKT: usize = 0x8004_5438;
const TIOCGPTLCK: usize = 0x8004_5439;
const TIOCSPTLCK: usize = 0x4004_5431;
const TIOCGPTN: usize = 0x8004_5430;
const TIOCGPTPEER: usize = 0x5441;
const TIOCSCTTY: usize = 0x540E;
const TIOCGPGRP: usize = 0x540F;
const TIOCSPGRP: usize = 0x5410;

/// The kernel's `struct termios2` (`TCGETS2`: modes and both speeds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Termios2 {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; 19],
    pub ispeed: u32,
    pub ospeed: u32,
}

impl Termios2 {
    /// `cfmakeraw`'s changes, with `VMIN` 0: no input or output
    /// processing, no echo, no signals, no line editing, reads return what
    /// is there.
    pub fn raw(&self) -> Termios2 {
        let mut t = *self;
        // IGNBRK BRKINT PARMRK ISTRIP INLCR IGNCR ICRNL IXON
        t.iflag &= !(0o1 | 0o2 | 0o10 | 0o40 | 0o100 | 0o200 | 0o400 | 0o2000);
        t.oflag &= !0o1; // OPOST
        // ECHO ECHONL ICANON ISIG IEXTEN
        t.lflag &= !(0o10 | 0o100 | 0o2 | 0o1 | 0o100000);
        t.cc[6] = 0; // VMIN
        t.cc[5] = 0; // VTIME
        t
    }
}

macro_rules! ioctl {
    ($fd:expr, $req:expr, $arg:expr) => {
        // The request's argument is what the kernel expects for it: a
        // pointer to a value of the right type that lives across the call,
        // or an integer.
        // SAFETY: see just above.
        unsafe { syscalls::syscall!(Sysno::ioctl, $fd, $req, $arg) }
    };
}

pub fn get_termios(fd: i32) -> Result<Termios2, Errno> {
    let mut t = Termios2::default();
    ioctl!(fd, TCGETS2, &raw mut t).map(|_| t)
}

pub fn set_termios(fd: i32, t: &Termios2) -> SysResult {
    ioctl!(fd, TCSETS2, t as *const Termios2)
}

/// `TIOCGWINSZ`: rows, columns, x pixels, y pixels.
pub fn get_winsize(fd: i32) -> Result<[u16; 4], Errno> {
    let mut w = [0u16; 4];
    ioctl!(fd, TIOCGWINSZ, w.as_mut_ptr()).map(|_| w)
}

/// `TIOCSWINSZ` (the foreground process group gets `SIGWINCH` if it
/// changed).
pub fn set_winsize(fd: i32, w: &[u16; 4]) -> SysResult {
    ioctl!(fd, TIOCSWINSZ, w.as_ptr())
}

/// Bytes ready to read (`FIONREAD`).
pub fn readable(fd: i32) -> Result<usize, Errno> {
    let mut n: i32 = 0;
    ioctl!(fd, FIONREAD, &raw mut n).map(|_| n.max(0) as usize)
}

/// Packet mode of a master (`TIOCGPKT`).
pub fn packet_mode(master: i32) -> Result<bool, Errno> {
    let mut v: i32 = 0;
    ioctl!(master, TIOCGPKT, &raw mut v).map(|_| v != 0)
}

pub fn set_packet_mode(master: i32, on: bool) -> SysResult {
    let v: i32 = on.into();
    ioctl!(master, TIOCPKT, &raw const v)
}

/// Whether the slave is still locked (`TIOCGPTLCK`; `unlockpt` not called).
pub fn locked(master: i32) -> Result<bool, Errno> {
    let mut v: i32 = 0;
    ioctl!(master, TIOCGPTLCK, &raw mut v).map(|_| v != 0)
}

pub fn set_locked(master: i32, on: bool) -> SysResult {
    let v: i32 = on.into();
    ioctl!(master, TIOCSPTLCK, &raw const v)
}

/// The pts number of a master (`TIOCGPTN`, what `ptsname` uses).
pub fn pts_number(master: i32) -> Result<u32, Errno> {
    let mut v: u32 = 0;
    ioctl!(master, TIOCGPTN, &raw mut v).map(|_| v)
}

/// Opens the master's slave (`TIOCGPTPEER`, no path needed) with `flags`
/// (callers pass `O_NOCTTY`, so no session gains it as its terminal).
pub fn open_peer(master: i32, flags: u32) -> Result<i32, Errno> {
    ioctl!(master, TIOCGPTPEER, flags as usize).map(|fd| fd as i32)
}

/// Makes `fd` the controlling terminal of our session (we lead it).
pub fn set_controlling(fd: i32) -> SysResult {
    ioctl!(fd, TIOCSCTTY, 0usize)
}

pub fn foreground_group(fd: i32) -> Result<i32, Errno> {
    let mut v: i32 = 0;
    ioctl!(fd, TIOCGPGRP, &raw mut v).map(|_| v)
}

/// `tcsetpgrp`. A caller outside the foreground group gets `SIGTTOU`
/// unless it blocks it: callers block it around this.
pub fn set_foreground_group(fd: i32, pgrp: i32) -> SysResult {
    ioctl!(fd, TIOCSPGRP, &raw const pgrp)
}

/// Puts a pty pair's buffered bytes back: `to_slave` (what the master had
/// written and the slave not read) is written into the master, and
/// `from_slave` (what the slave had written and the master not read) into
/// the slave, both while the pair is in raw mode so that neither echo,
/// line editing, signals nor `\n` → `\r\n` touches them again (they were
/// processed once already), then `modes` is set back. The kernel moves
/// written bytes to the other side from a work queue: this waits (up to
/// about a second) until they arrived before changing the modes back.
///
/// A slave in canonical mode gets its pending input back as one line
/// (switching `ICANON` on with bytes queued ends the line there).
pub fn refill(
    master: i32,
    slave: i32,
    modes: &Termios2,
    from_slave: &[u8],
    to_slave: &[u8],
) -> Result<(), Errno> {
    set_termios(slave, &modes.raw())?;
    let r = (|| {
        let slave_had = readable(slave)?;
        let master_had = readable(master)?;
        crate::write_all(master, to_slave)?;
        crate::write_all(slave, from_slave)?;
        for _ in 0..1000 {
            if readable(slave)? >= slave_had + to_slave.len()
                && readable(master)? >= master_had + from_slave.len()
            {
                return Ok(());
            }
            crate::nanosleep_ns(1_000_000);
        }
        Err(Errno::ETIMEDOUT)
    })();
    set_termios(slave, modes)?;
    r
}
