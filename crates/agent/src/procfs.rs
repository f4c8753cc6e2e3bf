//! Directory listings of `/proc` without glibc: `opendir` allocates with
//! glibc's malloc, whose locks a stopped program thread may hold (and hold
//! again, in the restored image, when the agent restores descriptors).

/// The numeric entries of a directory (`/proc/self/fd`, `/proc/self/task`),
/// read with raw `getdents64` into a stack buffer.
pub fn numeric_entries(path: &std::ffi::CStr) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(fd) = hiber_sys::open(
        path,
        libc::O_RDONLY as u32 | libc::O_DIRECTORY as u32 | libc::O_CLOEXEC as u32,
        0,
    ) else {
        return out;
    };
    let fd = fd as i32;
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name...
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n as usize {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            if let Some(v) = hiber_sys::fmt::parse_u64(name)
                && v <= u64::from(u32::MAX)
            {
                out.push(v as u32);
            }
            off += reclen;
        }
    }
    let _ = hiber_sys::close(fd);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn lists_own_fds_and_tasks() {
        let fds = super::numeric_entries(c"/proc/self/fd");
        assert!(fds.contains(&0) || fds.contains(&1) || fds.contains(&2));
        let tasks = super::numeric_entries(c"/proc/self/task");
        assert!(tasks.contains(&std::process::id()));
    }
}
