//! The per-user cookie: 32 random bytes in a file only its owner can read.
//!
//! Every connection to a coordinator presents it, so the coordinator's TCP
//! port (reachable by every local user, and by other hosts when bound
//! publicly) cannot be used by anyone but the user who owns the computation.
//! Multi-host runs share it through the (usually shared) home directory, or
//! by pointing `$HIBER_COOKIE` at a copy.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const COOKIE_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    #[error("no place for the cookie file: set HIBER_COOKIE, XDG_RUNTIME_DIR or HOME")]
    NoPath,
    #[error("cookie file {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "cookie file {path} is accessible by group or others (mode {mode:03o}); \
         it must be mode 600 (chmod 600 {path})"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cookie file {path} is owned by uid {owner}, not by you (uid {uid})")]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    #[error("cookie file {path} is {len} bytes long, expected {COOKIE_LEN}")]
    BadLength { path: PathBuf, len: u64 },
    #[error("cookie file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot get random bytes: {0}")]
    Random(io::Error),
}

/// Where the cookie lives: `$HIBER_COOKIE`, else
/// `$XDG_RUNTIME_DIR/hiber/cookie` when that directory exists, else
/// `$HOME/.hiber/cookie`.
pub fn path() -> Result<PathBuf, CookieError> {
    path_from(
        std::env::var_os("HIBER_COOKIE"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("HOME"),
    )
}

fn path_from(
    explicit: Option<OsString>,
    runtime: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, CookieError> {
    let nonempty = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(p) = nonempty(explicit) {
        return Ok(p);
    }
    if let Some(dir) = nonempty(runtime).filter(|d| d.is_dir()) {
        return Ok(dir.join("hiber").join("cookie"));
    }
    nonempty(home)
        .map(|h| h.join(".hiber").join("cookie"))
        .ok_or(CookieError::NoPath)
}

/// Reads the user's cookie, creating it on first use.
pub fn load_or_create() -> Result<[u8; COOKIE_LEN], CookieError> {
    load_or_create_at(&path()?)
}

/// Reads the cookie at `path`, creating it (and its directory, mode 0700)
/// if it does not exist. Creation is atomic and never replaces a cookie
/// another process created meanwhile: the new file is written under a
/// temporary name and hard-linked to `path`, which fails if `path` exists.
pub fn load_or_create_at(path: &Path) -> Result<[u8; COOKIE_LEN], CookieError> {
    let io_err = |error| CookieError::Io {
        path: path.to_path_buf(),
        error,
    };
    match read(path) {
        Err(CookieError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
    }
    let mut cookie = [0u8; COOKIE_LEN];
    fill_random(&mut cookie).map_err(CookieError::Random)?;

    // Unique even between threads of one process (tests, several clients).
    let mut nonce = [0u8; 8];
    fill_random(&mut nonce).map_err(CookieError::Random)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp.{}.{:x}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let tmp = PathBuf::from(tmp);
    let write_tmp = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&cookie)?;
        f.sync_all()
    };
    let linked = write_tmp().and_then(|()| match fs::hard_link(&tmp, path) {
        // Filesystems without hard links: rename (may replace a racing creator's file).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
            fs::rename(&tmp, path)
        }
        r => r,
    });
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(cookie),
        // Someone else created it first: theirs wins.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io_err(e)),
    }
}

/// Reads an existing cookie file, refusing one that other users could read
/// or that belongs to someone else.
pub fn read(path: &Path) -> Result<[u8; COOKIE_LEN], CookieError> {
    let io_err = |error| CookieError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    let meta = f.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(CookieError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        return Err(CookieError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(CookieError::Permissions {
            path: path.to_path_buf(),
            mode: meta.mode() & 0o777,
        });
    }
    if meta.len() != COOKIE_LEN as u64 {
        return Err(CookieError::BadLength {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut cookie = [0u8; COOKIE_LEN];
    f.read_exact(&mut cookie).map_err(io_err)?;
    Ok(cookie)
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // `rest` is a valid, writable buffer of `rest.len()` bytes for
        // the duration of the call.
        // SAFETY: see just above.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Compares two cookies in time independent of where they differ.
pub fn equal(a: &[u8; COOKIE_LEN], b: &[u8; COOKIE_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hiber-cookie-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn creates_then_reads_same_cookie() {
        let d = temp_dir("create");
        let p = d.join("sub").join("cookie");
        let a = load_or_create_at(&p).unwrap();
        let b = load_or_create_at(&p).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, [0u8; COOKIE_LEN]);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(d.join("sub")).unwrap().mode() & 0o777, 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(d.join("sub")).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn concurrent_creators_agree() {
        let d = temp_dir("race");
        let p = d.join("cookie");
        let cookies: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| load_or_create_at(&p))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(cookies.iter().all(|c| *c == cookies[0]));
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_group_or_other_access() {
        let d = temp_dir("mode");
        let p = d.join("cookie");
        load_or_create_at(&p).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create_at(&p).unwrap_err();
            assert!(matches!(err, CookieError::Permissions { .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_wrong_length_and_symlink() {
        let d = temp_dir("len");
        let p = d.join("cookie");
        fs::write(&p, b"short").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create_at(&p),
            Err(CookieError::BadLength { len: 5, .. })
        ));
        let link = d.join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(read(&link), Err(CookieError::Io { .. })));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn path_precedence() {
        let d = temp_dir("path");
        let s = |p: &Path| Some(p.as_os_str().to_owned());
        let explicit = d.join("explicit");
        assert_eq!(path_from(s(&explicit), s(&d), s(&d)).unwrap(), explicit);
        assert_eq!(
            path_from(None, s(&d), s(&d)).unwrap(),
            d.join("hiber/cookie")
        );
        let missing = d.join("missing");
        assert_eq!(
            path_from(None, s(&missing), s(&d)).unwrap(),
            d.join(".hiber/cookie")
        );
        assert!(matches!(
            path_from(None, None, None),
            Err(CookieError::NoPath)
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn constant_time_equal() {
        let a = [1u8; COOKIE_LEN];
        let mut b = a;
        assert!(equal(&a, &b));
        b[31] = 0;
        assert!(!equal(&a, &b));
    }
}
