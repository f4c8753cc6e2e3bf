//! Regular files, directories and character devices opened by path.
//!
//! A file that changed size since the checkpoint: if it is open for
//! writing and grew, it is cut back to its checkpoint size, so the program
//! rewrites exactly what it wrote after the checkpoint (appending programs
//! would otherwise duplicate that part); if it shrank, the offset is kept
//! and a warning says so.

use std::ffi::CString;

use hiber_image::meta::{FdKind, FdMeta};

pub fn offset(fd: i32) -> u64 {
    // SAFETY: lseek query on a descriptor number.
    let off = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    off.max(0) as u64
}

/// Contents saved per file at most; a larger deleted file cannot come back.
const MAX_CONTENTS: u64 = 1 << 30;

pub fn save(fd: i32, link: &str, flags: i32, meta: &std::fs::Metadata) -> FdKind {
    use std::os::unix::fs::MetadataExt;
    let deleted = link.ends_with(" (deleted)");
    let want = deleted || crate::config::get().ckpt_open_files;
    // Read through /proc (the magic link opens even a deleted file, and
    // for reading whatever this fd's access mode).
    let contents = (want && meta.is_file() && meta.len() <= MAX_CONTENTS)
        .then(|| std::fs::read(format!("/proc/self/fd/{fd}")).ok())
        .flatten();
    FdKind::File {
        path: link.trim_end_matches(" (deleted)").to_string(),
        flags,
        offset: offset(fd),
        size: meta.len(),
        mode: meta.mode(),
        deleted,
        contents,
    }
}

/// Opens `path` with the saved flags minus the ones that only make sense
/// at creation.
pub fn reopen(path: &str, flags: i32) -> Result<i32, String> {
    let c = CString::new(path).map_err(|_| format!("{path}: path contains NUL"))?;
    let flags =
        flags & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOCTTY);
    // SAFETY: NUL-terminated path; plain open.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(format!(
            "cannot reopen {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(fd)
}

pub fn restore(m: &FdMeta, warnings: &mut Vec<String>) -> Result<i32, String> {
    match &m.kind {
        FdKind::File {
            path,
            flags,
            offset,
            size,
            deleted,
            mode,
            contents,
        } => {
            if *deleted && contents.is_none() {
                return Err(format!(
                    "{path} was deleted before the checkpoint and its contents were not saved"
                ));
            }
            let ready = hiber_image::ghost::prepare(path, *mode, *deleted, contents.as_deref())
                .map_err(|e| format!("recreating {path}: {e}"))?;
            let fd = reopen(&ready.path, *flags)?;
            if ready.unlink_after_open {
                let _ = std::fs::remove_file(&ready.path);
            }
            if flags & libc::O_PATH != 0 {
                // No offset and no I/O through an O_PATH descriptor: only
                // the inode matters, and it is there.
                return Ok(fd);
            }
            let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
            // SAFETY: `fd` was just opened above and stays open while borrowed.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            match hiber_image::ghost::settle(borrowed, writable, *size, *offset) {
                Ok(Some(now)) => warnings.push(format!(
                    "fd {}: {path} is shorter than at the checkpoint ({now} < {size} bytes)",
                    m.fd
                )),
                Ok(None) => {}
                Err(e) => warnings.push(format!("fd {}: {path}: {e}", m.fd)),
            }
            Ok(fd)
        }
        FdKind::Directory {
            path,
            flags,
            offset,
        } => {
            let fd = reopen(path, *flags)?;
            // Seeking our own descriptor (directory offsets are
            // opaque cookies; restoring them resumes a readdir).
            // SAFETY: see just above.
            unsafe { libc::lseek(fd, *offset as libc::off_t, libc::SEEK_SET) };
            Ok(fd)
        }
        _ => Err("not a file".into()),
    }
}

/// Whether `path` can be opened again with the access mode of `flags`
/// (without opening it: `access` with the real ids, which are the
/// process's own after a restart).
pub fn can_reopen(path: &str, flags: i32) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    let mode = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => libc::R_OK,
        libc::O_WRONLY => libc::W_OK,
        _ => libc::R_OK | libc::W_OK,
    };
    // SAFETY: a NUL-terminated path; no memory written.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}
