//! signalfd descriptors.
//!
//! A signalfd holds no signals itself: it reads the process's and the
//! thread's pending ones, which the signal state restores. Only its mask
//! (fdinfo `sigmask`, in hex like `SigBlk` in `/proc/PID/status`) and its
//! flags need to come back.

use hiber_image::meta::FdKind;

pub fn parse(fdinfo: &str) -> Option<u64> {
    u64::from_str_radix(super::field(fdinfo, "sigmask:")?, 16).ok()
}

pub fn save(fd: i32, flags: i32) -> Option<FdKind> {
    let mask = parse(&super::fdinfo(fd)?)?;
    Some(FdKind::SignalFd { flags, mask })
}

pub fn restore(flags: i32, mask: u64) -> Result<i32, String> {
    // SAFETY: an all-zero sigset_t is a valid empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    for sig in 1..=64 {
        if mask & (1u64 << (sig - 1)) != 0 {
            // SAFETY: adds a signal number in 1..=64 to our local set.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    let mut sfd_flags = libc::SFD_CLOEXEC;
    if flags & libc::O_NONBLOCK != 0 {
        sfd_flags |= libc::SFD_NONBLOCK;
    }
    // SAFETY: `set` is an initialised sigset_t; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, sfd_flags) };
    if fd < 0 {
        return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_mask() {
        let s = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000000000200\n";
        assert_eq!(parse(s), Some(1 << (libc::SIGUSR1 - 1)));
    }

    #[test]
    fn not_a_signalfd() {
        assert_eq!(parse("pos:\t0\nflags:\t02\n"), None);
    }
}
