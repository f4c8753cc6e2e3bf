//! eventfd counters.
//!
//! The kernel shows the counter in fdinfo (`eventfd-count`, in hex), so
//! nothing is tracked while the program runs. `EFD_SEMAPHORE` is not an
//! open-file flag (`F_GETFL` does not have it); fdinfo says it as
//! `eventfd-semaphore` since Linux 6.6, and older kernels do not tell at
//! all: the counter then comes back in normal mode.

use hiber_image::meta::FdKind;

/// What fdinfo tells about an eventfd.
#[derive(Debug, PartialEq, Eq)]
pub struct Info {
    pub count: u64,
    pub semaphore: bool,
}

pub fn parse(fdinfo: &str) -> Option<Info> {
    let count = super::field(fdinfo, "eventfd-count:")?;
    let count = u64::from_str_radix(count, 16).ok()?;
    let semaphore = super::field(fdinfo, "eventfd-semaphore:").is_some_and(|v| v == "1");
    Some(Info { count, semaphore })
}

pub fn save(fd: i32, flags: i32) -> Option<FdKind> {
    let info = parse(&super::fdinfo(fd)?)?;
    Some(FdKind::EventFd {
        flags,
        count: info.count,
        semaphore: info.semaphore,
    })
}

pub fn restore(flags: i32, count: u64, semaphore: bool) -> Result<i32, String> {
    // eventfd(2) takes an unsigned int; a larger counter is set by writing
    // the rest.
    let first = u32::try_from(count).unwrap_or(u32::MAX);
    let mut efd_flags = libc::EFD_CLOEXEC;
    if semaphore {
        efd_flags |= libc::EFD_SEMAPHORE;
    }
    if flags & libc::O_NONBLOCK != 0 {
        efd_flags |= libc::EFD_NONBLOCK;
    }
    // SAFETY: creates a descriptor; no memory involved.
    let fd = unsafe { libc::eventfd(first, efd_flags) };
    if fd < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    let rest = count - u64::from(first);
    if rest > 0 {
        // SAFETY: writes the 8 bytes of `rest` to our new eventfd.
        let n = unsafe { libc::write(fd, (&raw const rest).cast(), 8) };
        if n != 8 {
            let e = std::io::Error::last_os_error();
            // SAFETY: our own descriptor, created above.
            unsafe { libc::close(fd) };
            return Err(format!("eventfd: setting the counter to {count}: {e}"));
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_count_in_hex_and_semaphore() {
        let s = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n\
                 eventfd-count:               1a\neventfd-id: 1\neventfd-semaphore: 1\n";
        assert_eq!(
            parse(s),
            Some(Info {
                count: 26,
                semaphore: true
            })
        );
    }

    #[test]
    fn older_kernels_without_semaphore_line() {
        let s = "pos:\t0\nflags:\t04002\neventfd-count:                0\n";
        assert_eq!(
            parse(s),
            Some(Info {
                count: 0,
                semaphore: false
            })
        );
    }

    #[test]
    fn not_an_eventfd() {
        assert_eq!(parse("pos:\t0\nflags:\t02\n"), None);
    }
}
