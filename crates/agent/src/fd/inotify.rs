//! inotify instances.
//!
//! fdinfo lists each watch (`inotify wd:%x ino:%lx sdev:%x mask:%x ...`,
//! all hex) but not its path: the file handle it also shows needs
//! `CAP_DAC_READ_SEARCH` to open. So the agent wraps `inotify_add_watch`
//! and keeps the path (made absolute) of every watch it sees created; at a
//! checkpoint a watch is matched with the table by descriptor, watch
//! descriptor and inode, so entries of closed instances or removed watches
//! are simply not found.
//!
//! At restart the watches are added again in watch-descriptor order: the
//! kernel gives a new instance increasing numbers from 1, so the numbers
//! come back equal when no watch had been removed before; otherwise they
//! differ and a warning says so. Events queued at the checkpoint are lost.

use std::sync::Mutex;

use hiber_image::meta::{FdKind, InotifyWatch};

/// A watch seen created: (fd, wd, path, device, inode).
#[derive(Clone, Debug)]
pub struct Recorded {
    fd: i32,
    wd: i32,
    path: String,
    dev: u64,
    ino: u64,
}

/// Every watch the program created through the wrapper. Held only inside
/// the wrapper lock (`gate.rs`), so no thread is stopped holding it, and
/// across `fork` (`checkpoint::ForkLocks`).
pub static WATCHES: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// One watch as fdinfo shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Info {
    pub wd: i32,
    pub ino: u64,
    /// The kernel's internal `dev_t` of the watched file's filesystem.
    pub sdev: u32,
    pub mask: u32,
}

pub fn parse(fdinfo: &str) -> Vec<Info> {
    fdinfo
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("inotify ")?;
            let mut wd = None;
            let mut ino = None;
            let mut sdev = None;
            let mut mask = None;
            for word in rest.split_whitespace() {
                let Some((k, v)) = word.split_once(':') else {
                    continue;
                };
                match k {
                    "wd" => wd = i32::from_str_radix(v, 16).ok(),
                    "ino" => ino = u64::from_str_radix(v, 16).ok(),
                    "sdev" => sdev = u32::from_str_radix(v, 16).ok(),
                    "mask" => mask = u32::from_str_radix(v, 16).ok(),
                    _ => {}
                }
            }
            Some(Info {
                wd: wd?,
                ino: ino?,
                sdev: sdev?,
                mask: mask?,
            })
        })
        .collect()
}

/// The kernel's internal `dev_t` (`MKDEV`: major << 20 | minor), the form
/// fdinfo prints `sdev` in.
fn encode_dev(dev: u64) -> u32 {
    (libc::major(dev) << 20) | libc::minor(dev)
}

/// Called by the `inotify_add_watch` wrapper after a successful call.
pub fn record(fd: i32, path: &std::ffi::CStr, mask: u32, wd: i32) {
    let path = path.to_string_lossy();
    let path = if path.starts_with('/') {
        path.into_owned()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(&*path).display().to_string(),
            Err(_) => path.into_owned(),
        }
    };
    let c = match std::ffi::CString::new(path.as_str()) {
        Ok(c) => c,
        Err(_) => return,
    };
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let follow = if mask & libc::IN_DONT_FOLLOW != 0 {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: NUL-terminated path; fstatat writes into `st`.
    if unsafe { libc::fstatat(libc::AT_FDCWD, c.as_ptr(), &mut st, follow) } != 0 {
        return;
    }
    let Ok(mut table) = WATCHES.lock() else {
        return;
    };
    // The same (fd, wd) again is the same watch (a mask change), or a new
    // instance at a reused number: either way the newest entry holds.
    table.retain(|r| !(r.fd == fd && r.wd == wd));
    table.push(Recorded {
        fd,
        wd,
        path,
        dev: st.st_dev,
        ino: st.st_ino,
    });
}

/// Called by the `inotify_rm_watch` wrapper after a successful call.
pub fn forget(fd: i32, wd: i32) {
    if let Ok(mut table) = WATCHES.lock() {
        table.retain(|r| !(r.fd == fd && r.wd == wd));
    }
}

pub fn save(fd: i32, flags: i32) -> Option<FdKind> {
    let infos = parse(&super::fdinfo(fd)?);
    let table = WATCHES.lock().map(|t| t.clone()).unwrap_or_default();
    let mut watches: Vec<InotifyWatch> = infos
        .iter()
        .map(|i| {
            let same = |r: &&Recorded| r.ino == i.ino && encode_dev(r.dev) == i.sdev;
            // Ours first; else a duplicate's (dup/dup2 moved the instance).
            let path = table
                .iter()
                .filter(same)
                .find(|r| r.fd == fd && r.wd == i.wd)
                .or_else(|| table.iter().filter(same).find(|r| r.wd == i.wd))
                .map(|r| r.path.clone())
                .unwrap_or_default();
            InotifyWatch {
                wd: i.wd,
                mask: i.mask,
                path,
            }
        })
        .collect();
    watches.sort_by_key(|w| w.wd);
    Some(FdKind::Inotify { flags, watches })
}

pub fn restore(
    flags: i32,
    watches: &[InotifyWatch],
    fd_number: i32,
    warnings: &mut Vec<String>,
) -> Result<i32, String> {
    let mut init = libc::IN_CLOEXEC;
    if flags & libc::O_NONBLOCK != 0 {
        init |= libc::IN_NONBLOCK;
    }
    // SAFETY: creates a descriptor; no memory involved.
    let fd = unsafe { libc::inotify_init1(init) };
    if fd < 0 {
        return Err(format!(
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut restored = Vec::new();
    for w in watches {
        if w.path.is_empty() {
            warnings.push(format!(
                "fd {fd_number} (inotify): watch {} was not created through the agent \
                 (its path is unknown); it is lost",
                w.wd
            ));
            continue;
        }
        let Ok(c) = std::ffi::CString::new(w.path.as_str()) else {
            continue;
        };
        // The raw system call: `libc::inotify_add_watch` would bind to the
        // agent's own wrapper, whose wrapper lock is closed during a
        // restart.
        let wd = {
            // SAFETY: NUL-terminated path; the kernel only reads it.
            unsafe { libc::syscall(libc::SYS_inotify_add_watch, fd, c.as_ptr(), w.mask) }
        } as i32;
        if wd < 0 {
            warnings.push(format!(
                "fd {fd_number} (inotify): watch {} on {}: {}; it is lost",
                w.wd,
                w.path,
                std::io::Error::last_os_error()
            ));
            continue;
        }
        if wd != w.wd {
            warnings.push(format!(
                "fd {fd_number} (inotify): watch on {} is now number {wd}, was {}",
                w.path, w.wd
            ));
        }
        restored.push((wd, w.path.clone()));
    }
    // The table follows the restored instance (its entries for this
    // number are the checkpoint's, restored with the agent's memory).
    if let Ok(mut table) = WATCHES.lock() {
        table.retain(|r| r.fd != fd_number);
        for (wd, path) in restored {
            let c = std::ffi::CString::new(path.as_str()).unwrap_or_default();
            // SAFETY: an all-zero `stat` is a valid value to be overwritten.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: NUL-terminated path; stat writes into `st`.
            if unsafe { libc::stat(c.as_ptr(), &mut st) } == 0 {
                table.push(Recorded {
                    fd: fd_number,
                    wd,
                    path,
                    dev: st.st_dev,
                    ino: st.st_ino,
                });
            }
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watches_in_hex() {
        let s = "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n\
                 inotify wd:1 ino:3c4a7 sdev:fe00000 mask:100 ignored_mask:0 \
                 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n\
                 inotify wd:1a ino:2 sdev:10 mask:40000fff ignored_mask:0\n";
        assert_eq!(
            parse(s),
            vec![
                Info {
                    wd: 1,
                    ino: 0x3c4a7,
                    sdev: 0xfe0_0000,
                    mask: 0x100
                },
                Info {
                    wd: 26,
                    ino: 2,
                    sdev: 0x10,
                    mask: 0x4000_0fff
                },
            ]
        );
    }

    #[test]
    fn no_watches() {
        assert!(parse("pos:\t0\nflags:\t00\n").is_empty());
    }

    #[test]
    fn device_encoding_matches_the_kernel() {
        assert_eq!(encode_dev(libc::makedev(254, 0)), 0xfe0_0000);
        assert_eq!(encode_dev(libc::makedev(0, 0x10)), 0x10);
        assert_eq!(encode_dev(libc::makedev(8, 0x123)), 0x80_0123);
    }
}
