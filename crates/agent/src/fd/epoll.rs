//! epoll instances.
//!
//! fdinfo lists the interest list, one `tfd:` line per registration, with
//! the events (`EPOLLET`, `EPOLLONESHOT`, ... included) and the user data
//! as given to `epoll_ctl`. The ready list is not saved: registering a
//! descriptor that is ready puts it on the ready list again, so level-
//! triggered waits see the same thing, and an edge-triggered registration
//! of a ready descriptor reports it once more.
//!
//! At restart the instance is created with the other descriptors, and the
//! registrations are added only after every descriptor is back (a target
//! may have a higher number, or be another epoll instance).

use hiber_image::meta::{EpollTarget, FdKind};

/// The `tfd:` lines of an epoll fdinfo:
/// `tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x`.
pub fn parse(fdinfo: &str) -> Vec<EpollTarget> {
    fdinfo
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "tfd:" {
                return None;
            }
            let fd = words.next()?.parse().ok()?;
            if words.next()? != "events:" {
                return None;
            }
            let events = u32::from_str_radix(words.next()?, 16).ok()?;
            if words.next()? != "data:" {
                return None;
            }
            let data = u64::from_str_radix(words.next()?, 16).ok()?;
            Some(EpollTarget { fd, events, data })
        })
        .collect()
}

pub fn save(fd: i32, flags: i32) -> Option<FdKind> {
    let targets = parse(&super::fdinfo(fd)?);
    Some(FdKind::Epoll { flags, targets })
}

pub fn create() -> Result<i32, String> {
    // SAFETY: creates a descriptor; no memory involved.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(fd)
}

/// Registers the saved targets with the restored instance `epfd`;
/// `restored` tells whether a descriptor number came back as what it was.
pub fn add_targets(
    epfd: i32,
    targets: &[EpollTarget],
    restored: impl Fn(i32) -> bool,
    warnings: &mut Vec<String>,
) {
    for t in targets {
        if !restored(t.fd) {
            warnings.push(format!(
                "epoll fd {epfd}: registered fd {} did not come back; it is left out",
                t.fd
            ));
            continue;
        }
        let mut ev = libc::epoll_event {
            events: t.events,
            u64: t.data,
        };
        // SAFETY: `ev` is a valid epoll_event the kernel only reads.
        let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, t.fd, &mut ev) };
        if r != 0 {
            warnings.push(format!(
                "epoll fd {epfd}: registering fd {} (events {:#x}): {}",
                t.fd,
                t.events,
                std::io::Error::last_os_error()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_interest_list() {
        let s = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n\
                 tfd:        3 events: 80000019 data:             1234  pos:0 ino:40e sdev:10\n\
                 tfd:       12 events:       1 data: ffffffffffffffff  pos:0 ino:40e sdev:10\n";
        assert_eq!(
            parse(s),
            vec![
                EpollTarget {
                    fd: 3,
                    events: 0x8000_0019,
                    data: 0x1234
                },
                EpollTarget {
                    fd: 12,
                    events: 1,
                    data: u64::MAX
                },
            ]
        );
    }

    #[test]
    fn empty_interest_list() {
        assert!(parse("pos:\t0\nflags:\t02\nmnt_id:\t17\n").is_empty());
    }
}
