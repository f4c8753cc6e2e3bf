//! Putting a saved file's contents back before it is reopened at restart.
//!
//! A file that was open but deleted at the checkpoint has no path to
//! reopen: it is recreated from the contents the image holds, at its old
//! path (or beside it if something else took that name), opened, and
//! unlinked again (CRIU calls these ghost files). With
//! `--ckpt-open-files`, a file that still exists gets its checkpoint
//! contents written back, so the program finds what it left.

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
