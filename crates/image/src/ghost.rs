//! Putting a saved file's contents back before it is reopened at restart.
//!
//! A file that was open but deleted at the checkpoint has no path to
//! reopen: it is recreated from the contents the image holds, at its old
//! path (or beside it if something else took that name), opened, and
//! unlinked again (CRIU calls these ghost files). With
//! `--ckpt-open-files`, a file that still exists gets its checkpoint
//! contents written back, so the program finds what it left.
//!
//! [`settle`] then puts a reopened file where the checkpoint left it; both
//! the agent (a process's own files) and `hiber restart` (files several
//! processes share) use these two steps.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::string::String;

/// Where to reopen a saved file, and whether to unlink that path once it is
/// open (a deleted file's stand-in).
pub struct Prepared {
    pub path: String,
    pub unlink_after_open: bool,
}

/// Makes `path` hold `contents` as described in the module docs.
pub fn prepare(
    path: &str,
    mode: u32,
    deleted: bool,
    contents: Option<&[u8]>,
) -> std::io::Result<Prepared> {
    let Some(contents) = contents else {
        return Ok(Prepared {
            path: path.into(),
            unlink_after_open: false,
        });
    };
    if !deleted {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .mode(mode & 0o7777)
            .open(path)?;
        f.write_all(contents)?;
        return Ok(Prepared {
            path: path.into(),
            unlink_after_open: false,
        });
    }
    let mut n = 0u32;
    loop {
        let candidate = if n == 0 {
            path.into()
        } else {
            std::format!("{path}.hiber-ghost-{}-{n}", std::process::id())
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(&candidate)
        {
            Ok(mut f) => {
                f.write_all(contents)?;
                return Ok(Prepared {
                    path: candidate,
                    unlink_after_open: true,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Puts a reopened regular file where the checkpoint left it: a file open
/// for writing that grew since is cut back to its checkpoint `size` (an
/// appending program then rewrites exactly what it wrote after the
/// checkpoint instead of duplicating it), and the offset goes back to
/// `offset`. Returns the file's size when it is shorter than at the
/// checkpoint (kept as is: the caller may warn). Other kinds of file are
/// left alone.
pub fn settle(
    fd: std::os::fd::BorrowedFd<'_>,
    writable: bool,
    size: u64,
    offset: u64,
) -> std::io::Result<Option<u64>> {
    use std::io::{Seek, SeekFrom};
    // A duplicate shares the open file description, so its offset too.
    let mut f = std::fs::File::from(fd.try_clone_to_owned()?);
    let md = f.metadata()?;
    if !md.is_file() {
        return Ok(None);
    }
    let now = md.len();
    if writable && now > size {
        f.set_len(size)?;
    }
    f.seek(SeekFrom::Start(offset))?;
    Ok((now < size).then_some(now))
}
