//! Regular files several processes of a restart share one open file
//! description of (a log inherited through `fork`, a shell's redirected
//! stdout): one offset, one set of status flags. Each image says which of
//! its children's descriptors share its own (`FdMeta::shared_with`); here
//! the groups are opened once, at their checkpoint offset (cut back to the
//! checkpoint size if the file grew and was open for writing, as the agent
//! does for its own files), and inherited by every member.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::Context;
use hiber_image::Image;
use hiber_image::meta::{FdKind, FdMeta};
use hiber_protocol::handoff::InheritedFile;

pub struct SharedFiles {
    opened: Vec<OwnedFd>,
    /// Per image: (its fd number, index into `opened`).
    users: Vec<Vec<(i32, usize)>>,
}

struct Union(Vec<usize>);

impl Union {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        self.0[x] = r;
        r
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[b] = a;
        }
    }
}

impl SharedFiles {
    pub fn create(images: &[&Image]) -> anyhow::Result<SharedFiles> {
        let fds: Vec<Vec<FdMeta>> = images.iter().map(|i| i.fds()).collect::<Result<_, _>>()?;
        let by_pid: HashMap<(&str, u32), usize> = images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                (
                    (img.identity().hostname.as_str(), img.identity().virtual_pid),
                    i,
                )
            })
            .collect();
        // Nodes: every (image, primary fd) that is a file.
        let mut nodes: Vec<(usize, i32)> = Vec::new();
        let mut index: HashMap<(usize, i32), usize> = HashMap::new();
        for (i, list) in fds.iter().enumerate() {
            for m in list {
                if m.dup_of.is_none() && matches!(m.kind, FdKind::File { .. }) {
                    index.insert((i, m.fd), nodes.len());
                    nodes.push((i, m.fd));
                }
            }
        }
        let primary = |i: usize, fd: i32| -> i32 {
            fds[i]
                .iter()
                .find(|m| m.fd == fd)
                .and_then(|m| m.dup_of)
                .unwrap_or(fd)
        };
        let mut u = Union((0..nodes.len()).collect());
        let mut shared = vec![false; nodes.len()];
        for (i, list) in fds.iter().enumerate() {
            let host = images[i].identity().hostname.as_str();
            for m in list.iter().filter(|m| !m.shared_with.is_empty()) {
                let Some(&a) = index.get(&(i, m.fd)) else {
                    continue;
                };
                for &(pid, cfd) in &m.shared_with {
                    let Some(&j) = by_pid.get(&(host, pid)) else {
                        continue;
                    };
                    if let Some(&b) = index.get(&(j, primary(j, cfd))) {
                        u.join(a, b);
                        shared[a] = true;
                        shared[b] = true;
                    }
                }
            }
        }
        // A group used only as standard input, output or error (a log the
        // launch was redirected to) that cannot be reopened here, e.g. a
        // file of another user: each process keeps `hiber restart`'s own
        // stdio instead, as for terminals and pipes (the agent says so).
        let mut stdio_only: HashMap<usize, bool> = HashMap::new();
        for (n, &(_, fd)) in nodes.iter().enumerate() {
            if shared[n] {
                *stdio_only.entry(u.find(n)).or_insert(true) &= fd <= 2;
            }
        }
        let mut opened = Vec::new();
        let mut group_file: HashMap<usize, Option<usize>> = HashMap::new();
        let mut users = vec![Vec::new(); images.len()];
        for (n, &(i, fd)) in nodes.iter().enumerate() {
            if !shared[n] {
                continue;
            }
            let root = u.find(n);
            let k = match group_file.get(&root) {
                Some(&k) => k,
                None => {
                    let (ri, rfd) = nodes[root];
                    let m = fds[ri]
                        .iter()
                        .find(|m| m.fd == rfd)
                        .context("shared file")?;
                    let k = match open(m) {
                        Ok(f) => {
                            opened.push(f);
                            Some(opened.len() - 1)
                        }
                        Err(e) if stdio_only.get(&root) == Some(&true) => {
                            eprintln!(
                                "hiber: warning: {e:#}; standard streams stay hiber restart's"
                            );
                            None
                        }
                        Err(e) => return Err(e),
                    };
                    group_file.insert(root, k);
                    k
                }
            };
            if let Some(k) = k {
                users[i].push((fd, k));
            }
        }
        Ok(SharedFiles { opened, users })
    }

    pub fn fds_of(&self, i: usize) -> Vec<RawFd> {
        self.users[i]
            .iter()
            .map(|&(_, k)| self.opened[k].as_raw_fd())
            .collect()
    }

    pub fn inherited_by(&self, i: usize) -> Vec<InheritedFile> {
        self.users[i]
            .iter()
            .map(|&(fd, k)| InheritedFile {
                fd,
                inherited: self.opened[k].as_raw_fd(),
            })
            .collect()
    }
}

/// Opens a shared file as it was: flags, size (cut back if it grew and
/// was written), offset.
fn open(m: &FdMeta) -> anyhow::Result<OwnedFd> {
    let FdKind::File {
        path,
        flags,
        offset,
        size,
        deleted,
        mode,
        contents,
    } = &m.kind
    else {
        anyhow::bail!("not a file");
    };
    if *deleted && contents.is_none() {
        anyhow::bail!("{path} was deleted before the checkpoint and its contents were not saved");
    }
    let ready = hiber_image::ghost::prepare(path, *mode, *deleted, contents.as_deref())
        .with_context(|| format!("recreating {path}"))?;
    let c = CString::new(ready.path.as_str())?;
    let flags = flags & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_NOCTTY);
    // SAFETY: NUL-terminated path; plain open.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("reopening {path}"));
    }
    // SAFETY: a fresh descriptor we own.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    if ready.unlink_after_open {
        let _ = std::fs::remove_file(&ready.path);
    }
    if flags & libc::O_PATH != 0 {
        // Shared or not, an O_PATH descriptor has no offset and no I/O.
        return Ok(f);
    }
    let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
    if let Some(now) = hiber_image::ghost::settle(f.as_fd(), writable, *size, *offset)
        .with_context(|| format!("restoring {path}"))?
    {
        eprintln!(
            "hiber: warning: {path} is shorter than at the checkpoint ({now} < {size} bytes)"
        );
    }
    Ok(f)
}
