//! timerfd timers.
//!
//! `timerfd_gettime` gives the time left and the interval; fdinfo gives
//! what it does not: the clock, the `settime` flags and `ticks`, the
//! expirations not read yet. `timerfd_gettime` is called first because it
//! brings `ticks` up to date: a periodic timer whose expirations went
//! unread stops at the first one, and only a read or a gettime counts the
//! ones missed since.
//!
//! At restart the timer is armed again with the time it had left, so, as
//! for POSIX timers, the time the program was not running does not count
//! (an absolute timer is re-armed at "now + time left" on its clock, which
//! keeps `TFD_TIMER_CANCEL_ON_SET` possible). Unread expirations come back
//! exactly with `TFD_IOC_SET_TICKS` (the ioctl the kernel has for
//! checkpoint/restore, `CONFIG_CHECKPOINT_RESTORE`); without it the timer
//! is made to fire at once instead, so a reader sees at least one, and the
//! later expirations shift by the time that was left.

use hiber_image::meta::FdKind;

/// What fdinfo tells about a timerfd.
#[derive(Debug, PartialEq, Eq)]
pub struct Info {
    pub clock: i32,
    pub ticks: u64,
    pub settime_flags: i32,
}

pub fn parse(fdinfo: &str) -> Option<Info> {
    let clock = super::field(fdinfo, "clockid:")?.parse().ok()?;
    let ticks = super::field(fdinfo, "ticks:")?.parse().ok()?;
    // Printed as `0%o`.
    let settime_flags = i32::from_str_radix(super::field(fdinfo, "settime flags:")?, 8).ok()?;
    Some(Info {
        clock,
        ticks,
        settime_flags,
    })
}

fn ns(t: &libc::timespec) -> u64 {
    (t.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec.max(0) as u64)
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

pub fn save(fd: i32, flags: i32) -> Option<FdKind> {
    let mut cur = libc::itimerspec {
        it_interval: timespec(0),
        it_value: timespec(0),
    };
    // SAFETY: writes one itimerspec into `cur`.
    if unsafe { libc::timerfd_gettime(fd, &mut cur) } != 0 {
        return None;
    }
    let info = parse(&super::fdinfo(fd)?)?;
    Some(FdKind::TimerFd {
        flags,
        clock: info.clock,
        settime_flags: info.settime_flags,
        value_ns: ns(&cur.it_value),
        interval_ns: ns(&cur.it_interval),
        ticks: info.ticks,
    })
}

/// `TFD_IOC_SET_TICKS`: `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

pub struct Saved {
    pub flags: i32,
    pub clock: i32,
    pub settime_flags: i32,
    pub value_ns: u64,
    pub interval_ns: u64,
    pub ticks: u64,
}

pub fn restore(s: &Saved, warnings: &mut Vec<String>, fd_number: i32) -> Result<i32, String> {
    let mut create = libc::TFD_CLOEXEC;
    if s.flags & libc::O_NONBLOCK != 0 {
        create |= libc::TFD_NONBLOCK;
    }
    // SAFETY: creates a descriptor; no memory involved.
    let fd = unsafe { libc::timerfd_create(s.clock, create) };
    if fd < 0 {
        return Err(format!(
            "timerfd_create(clock {}): {}",
            s.clock,
            std::io::Error::last_os_error()
        ));
    }
    let fail = |what: String| {
        // SAFETY: our own descriptor, created above.
        unsafe { libc::close(fd) };
        Err(what)
    };
    if s.value_ns > 0 && arm(fd, s, s.value_ns).is_err() {
        return fail(format!(
            "timerfd_settime: {}",
            std::io::Error::last_os_error()
        ));
    }
    if s.ticks > 0 {
        let ticks = s.ticks;
        // SAFETY: the ioctl reads one u64 from `ticks`.
        let r = unsafe { libc::ioctl(fd, TFD_IOC_SET_TICKS, &raw const ticks) };
        if r != 0 {
            // No way to set the count: fire once now (1 ns), the interval
            // unchanged.
            if arm(fd, s, 1).is_err() {
                return fail(format!(
                    "timerfd_settime: {}",
                    std::io::Error::last_os_error()
                ));
            }
            warnings.push(format!(
                "fd {fd_number} (timerfd): {ticks} unread expiration(s) come back as one \
                 (TFD_IOC_SET_TICKS: {})",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(fd)
}

/// Arms `fd` to expire in `left_ns`, with the saved interval and flags.
fn arm(fd: i32, s: &Saved, left_ns: u64) -> Result<(), ()> {
    let mut value = timespec(left_ns);
    let abstime = s.settime_flags & libc::TFD_TIMER_ABSTIME != 0;
    if abstime {
        let mut now = timespec(0);
        // SAFETY: writes one timespec into `now`.
        if unsafe { libc::clock_gettime(s.clock, &mut now) } != 0 {
            return Err(());
        }
        value = timespec(ns(&now).saturating_add(left_ns));
    }
    let spec = libc::itimerspec {
        it_interval: timespec(s.interval_ns),
        it_value: value,
    };
    let flags = if abstime { s.settime_flags } else { 0 };
    // SAFETY: reads one itimerspec; no old value asked for.
    let r = unsafe { libc::timerfd_settime(fd, flags, &spec, std::ptr::null_mut()) };
    if r == 0 { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clock_ticks_and_octal_flags() {
        let s = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 3\n\
                 settime flags: 03\nit_value: (0, 937052511)\nit_interval: (0, 20000000)\n";
        assert_eq!(
            parse(s),
            Some(Info {
                clock: 1,
                ticks: 3,
                settime_flags: 3
            })
        );
    }

    #[test]
    fn not_a_timerfd() {
        assert_eq!(parse("pos:\t0\nflags:\t02\neventfd-count: 0\n"), None);
    }

    #[test]
    fn timespec_round_trip() {
        let t = timespec(3_000_000_007);
        assert_eq!((t.tv_sec, t.tv_nsec), (3, 7));
        assert_eq!(ns(&t), 3_000_000_007);
    }
}
