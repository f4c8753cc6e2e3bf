//! Pipes between the processes of a restart.
//!
//! Every image lists its pipe ends with their inode (or a FIFO's path),
//! and a read end carries the bytes that were in the pipe. A pipe with a
//! reader and a writer among the images (on one host) is created here once,
//! given its capacity back and refilled, and both its ends are inherited by
//! the processes that had one; the agent puts them at their numbers. A pipe
//! whose writers all exited still holds their bytes: recreated with them
//! and no write end. Any other pipe with only one end in the computation
//! leads outside it: not recreated (fds 0-2 of that kind are bound to
//! `hiber restart`'s own stdio).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::Context;
use hiber_image::Image;
use hiber_image::meta::FdKind;
use hiber_protocol::handoff::InheritedPipe;

struct Created {
    inode: u64,
    path: String,
    read: OwnedFd,
    /// `None`: no process of the computation writes to it any more.
    write: Option<OwnedFd>,
}

pub struct Pipes {
    created: Vec<Created>,
    /// For each image, the indices of the created pipes it has an end of.
    users: Vec<Vec<usize>>,
}

#[derive(Default)]
struct Seen {
    reader: bool,
    /// A read end at a number above 2 (fds 0-2 may lead to `hiber
    /// restart`'s own stdio instead).
    reader_above_stdio: bool,
    /// A reader saw no writer left anywhere.
    writers_gone: bool,
    writer: bool,
    capacity: u32,
    data: Vec<u8>,
    users: Vec<usize>,
}

impl Pipes {
    pub fn create(images: &[&Image]) -> anyhow::Result<Pipes> {
        let mut seen: HashMap<(String, u64, String), Seen> = HashMap::new();
        for (i, img) in images.iter().enumerate() {
            let host = img.identity().hostname.clone();
            for m in img.fds()? {
                let FdKind::Pipe {
                    inode,
                    flags,
                    path,
                    capacity,
                    data,
                    writers_gone,
                } = m.kind
                else {
                    continue;
                };
                let key = if path.is_empty() {
                    (host.clone(), inode, String::new())
                } else {
                    (host.clone(), 0, path)
                };
                let s = seen.entry(key).or_default();
                let mode = flags & libc::O_ACCMODE;
                s.reader |= mode != libc::O_WRONLY;
                s.reader_above_stdio |= mode != libc::O_WRONLY && m.fd > 2;
                s.writers_gone |= writers_gone;
                s.writer |= mode != libc::O_RDONLY;
                s.capacity = s.capacity.max(capacity);
                if data.len() > s.data.len() {
                    s.data = data;
                }
                if !s.users.contains(&i) {
                    s.users.push(i);
                }
            }
        }
        let mut created = Vec::new();
        let mut users = vec![Vec::new(); images.len()];
        let mut keys: Vec<_> = seen
            .into_iter()
            .filter(|(_, s)| (s.reader && s.writer) || s.reader_above_stdio || s.writers_gone)
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for ((_, inode, path), s) in keys {
            let (read, write) = if path.is_empty() {
                anonymous()?
            } else {
                fifo(&path)?
            };
            refill(&write, s.capacity, &s.data)
                .with_context(|| format!("refilling pipe:[{inode}]{path}"))?;
            let write = s.writer.then_some(write);
            for &u in &s.users {
                users[u].push(created.len());
            }
            created.push(Created {
                inode,
                path,
                read,
                write,
            });
        }
        Ok(Pipes { created, users })
    }

    /// Descriptors image `i` inherits.
    pub fn fds_of(&self, i: usize) -> Vec<RawFd> {
        self.users[i]
            .iter()
            .flat_map(|&c| {
                let p = &self.created[c];
                std::iter::once(p.read.as_raw_fd()).chain(p.write.as_ref().map(|w| w.as_raw_fd()))
            })
            .collect()
    }

    /// What the agent of image `i` is told about its pipes.
    pub fn inherited_by(&self, i: usize) -> Vec<InheritedPipe> {
        self.users[i]
            .iter()
            .map(|&c| {
                let p = &self.created[c];
                InheritedPipe {
                    inode: p.inode,
                    path: p.path.clone(),
                    read_fd: p.read.as_raw_fd(),
                    write_fd: p.write.as_ref().map_or(-1, |w| w.as_raw_fd()),
                }
            })
            .collect()
    }
}

fn anonymous() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Both ends of a FIFO, opened read-write (which never blocks), created
/// again if it was removed.
fn fifo(path: &str) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let c = CString::new(path)?;
    // SAFETY: NUL-terminated path; plain open/mkfifo.
    let mut fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
        // SAFETY: as above.
        unsafe {
            libc::mkfifo(c.as_ptr(), 0o600);
            fd = libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        }
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("opening FIFO {path}"));
    }
    // SAFETY: a fresh descriptor we own.
    let read = unsafe { OwnedFd::from_raw_fd(fd) };
    let write = read.try_clone().context("dup")?;
    Ok((read, write))
}

/// Gives the pipe its capacity back and writes what was in flight.
fn refill(write: &OwnedFd, capacity: u32, data: &[u8]) -> anyhow::Result<()> {
    let fd = write.as_raw_fd();
    // Fcntl on our own descriptor (a capacity above the user's
    // limit is refused, and the default is kept).
    // SAFETY: see just above.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, capacity as libc::c_int) };
    // SAFETY: flag changes on our own descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    let mut rest = data;
    let mut result = Ok(());
    while !rest.is_empty() {
        // Writing from a live buffer of the given length (never
        // blocks: the descriptor is non-blocking).
        // SAFETY: see just above.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            result = Err(anyhow::anyhow!(
                "{} of {} bytes do not fit ({e}; pipe capacity above /proc/sys/fs/pipe-max-size?)",
                rest.len(),
                data.len()
            ));
            break;
        }
        rest = &rest[n as usize..];
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    result
}
