//! System V IPC objects across a restart.
//!
//! Every process saved the objects it used (`agent/src/state/sysvipc.rs`);
//! each id is recreated here once, before any process runs: a segment with
//! its size and contents (from the memory image of a process that had it
//! attached, else from the saved copy), a semaphore set with its values, a
//! queue with its messages, each with its key, mode and owner. The ids the
//! program holds stay valid: the kernel takes the id of the next object
//! from `/proc/sys/kernel/{shm,sem,msg}_next_id`. So that those ids and
//! keys are free (the objects of the checkpointed run outlive its
//! processes), the restart gets an IPC namespace of its own — an
//! unprivileged user first makes a user namespace, in which it may create
//! one and set its `*_next_id` (`CAP_CHECKPOINT_RESTORE` over it). Where
//! even that fails the objects are made in the current one, and an id or
//! key that cannot be kept is named in a warning.
//!
//! Each process re-attaches its segments in the restorer (`shmat` at the
//! saved address, `AREA_SYSV`). A segment whose `IPC_RMID` was pending is
//! removed again right away; we stay attached (so it lives until the
//! restorers have attached it) until the restart ends.

use std::collections::HashMap;

use anyhow::Context;
use hiber_image::format::area_flags;
use hiber_image::meta::{SysvKind, SysvObject};
use hiber_image::{Image, ProcessMeta};

pub struct SysvIpc {
    /// Our own attachments (address), detached when the restart ends.
    attached: Vec<usize>,
    /// Per image: area start → shmid to attach there.
    areas: Vec<HashMap<u64, i32>>,
}

impl Drop for SysvIpc {
    fn drop(&mut self) {
        for &p in &self.attached {
            // SAFETY: an address we attached with shmat.
            unsafe { libc::shmdt(p as *const libc::c_void) };
        }
    }
}

fn warn(msg: &str) {
    tracing::warn!("{msg}");
    eprintln!("hiber: warning: {msg}");
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Asks the kernel to give the next object of `kind` the id `id`.
fn set_next_id(kind: &str, id: i32) -> bool {
    std::fs::write(format!("/proc/sys/kernel/{kind}_next_id"), id.to_string()).is_ok()
}

fn page_up(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

/// A SysV segment's area: `/SYSV<key> (deleted)` with the shmid as inode.
fn sysv_area(img: &Image, a: &hiber_image::AreaRecord) -> bool {
    a.flags & area_flags::SHARED != 0 && img.area_path(a).starts_with("/SYSV")
}

impl SysvIpc {
    pub fn create(images: &[(&Image, &ProcessMeta)]) -> anyhow::Result<SysvIpc> {
        let mut me = SysvIpc {
            attached: Vec::new(),
            areas: vec![HashMap::new(); images.len()],
        };
        // One record per (kind, id); a saved copy of a segment's contents
        // from any process.
        let mut objects: Vec<SysvObject> = Vec::new();
        for (_, m) in images {
            for o in &m.sysv {
                let same = |p: &SysvObject| {
                    p.id == o.id
                        && std::mem::discriminant(&p.kind) == std::mem::discriminant(&o.kind)
                };
                match objects.iter_mut().find(|p| same(p)) {
                    None => objects.push(o.clone()),
                    Some(p) => {
                        if let (
                            SysvKind::Shm {
                                contents: c @ None, ..
                            },
                            SysvKind::Shm {
                                contents: Some(x), ..
                            },
                        ) = (&mut p.kind, &o.kind)
                        {
                            *c = Some(x.clone());
                        }
                    }
                }
            }
        }
        if objects.is_empty() {
            return Ok(me);
        }
        // Unprivileged, an IPC namespace needs a user namespace of our own
        // first (the restorers run in one anyway: `namespace.rs`).
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0
            && let Err(e) = crate::namespace::enter_user_namespace()
        {
            tracing::debug!("no user namespace for the IPC namespace: {e:#}");
        }
        // SAFETY: affects only this process (and what it starts later).
        if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
            warn(&format!(
                "cannot create an IPC namespace ({}): System V objects are recreated among \
                 this host's, and may not keep their ids or keys",
                errno()
            ));
        }
        objects.sort_by_key(|o| o.id);
        for o in &objects {
            let (kind, new) = match &o.kind {
                SysvKind::Shm { .. } => ("shm", me.make_shm(o, images)?),
                SysvKind::Sem { .. } => ("sem", make_sem(o)?),
                SysvKind::Msg { .. } => ("msg", make_msg(o)?),
            };
            if new != o.id {
                warn(&format!(
                    "System V {kind} id {} could not be kept: it is {new} now",
                    o.id
                ));
            }
            set_owner(kind, new, o);
        }
        Ok(me)
    }

    fn make_shm(
        &mut self,
        o: &SysvObject,
        images: &[(&Image, &ProcessMeta)],
    ) -> anyhow::Result<i32> {
        let SysvKind::Shm {
            size,
            removed,
            contents,
        } = &o.kind
        else {
            unreachable!()
        };
        let id = create("shm", o, |key, fl| {
            // SAFETY: plain system call.
            unsafe { libc::shmget(key, *size as usize, fl) }
        })?;
        // SAFETY: attach at an address the kernel chooses.
        let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if p as isize == -1 {
            return Err(errno()).with_context(|| format!("attaching System V segment {}", o.id));
        }
        self.attached.push(p as usize);
        // SAFETY: the segment is `size` bytes long, attached at `p`.
        let mem = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, *size as usize) };
        if let Some(c) = contents {
            let n = c.len().min(mem.len());
            mem[..n].copy_from_slice(&c[..n]);
        }
        let mut buf = Vec::new();
        for (i, (img, _)) in images.iter().enumerate() {
            for a in img.areas() {
                if !sysv_area(img, a) || a.inode != o.id as u64 {
                    continue;
                }
                if a.file_offset == 0 && a.end - a.start == page_up(*size) {
                    self.areas[i].insert(a.start, id);
                } else {
                    warn(&format!(
                        "System V segment {} is attached in part at {:#x} in {}: that part \
                         becomes a copy of its own",
                        o.id,
                        a.start,
                        img.path().display()
                    ));
                }
                if a.flags & area_flags::HAS_DATA == 0 {
                    continue;
                }
                for c in img.chunks_of(a) {
                    buf.resize(c.len as usize, 0);
                    img.read_chunk(c, &mut buf)?;
                    let at = (a.file_offset + (c.addr - a.start)) as usize;
                    let n = buf.len().min(mem.len().saturating_sub(at));
                    mem[at..at + n].copy_from_slice(&buf[..n]);
                }
            }
        }
        // SAFETY: plain system call.
        if *removed && unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
            warn(&format!("System V segment {}: IPC_RMID: {}", o.id, errno()));
        }
        Ok(id)
    }

    /// The shmid image `i` attaches at `start`, if its area there is a
    /// whole System V segment.
    pub fn area(&self, i: usize, start: u64) -> Option<i32> {
        self.areas.get(i)?.get(&start).copied()
    }

    /// Whether image `i`'s area at `start` is attached from a segment (so
    /// it is not another shared memory object).
    pub fn takes(&self, i: usize, start: u64) -> bool {
        self.area(i, start).is_some()
    }
}

/// Creates an object with the saved key and, if the kernel lets us choose,
/// the saved id.
fn create(
    kind: &str,
    o: &SysvObject,
    get: impl Fn(libc::key_t, i32) -> i32,
) -> anyhow::Result<i32> {
    let chosen = set_next_id(kind, o.id);
    let mut flags = libc::IPC_CREAT | (o.mode & 0o777) as i32;
    if o.key != libc::IPC_PRIVATE {
        flags |= libc::IPC_EXCL;
    }
    let mut id = get(o.key, flags);
    if id < 0 && o.key != libc::IPC_PRIVATE && errno().raw_os_error() == Some(libc::EEXIST) {
        warn(&format!(
            "System V {kind} key {:#x} is taken by another object: id {} is recreated without \
             its key",
            o.key, o.id
        ));
        id = get(libc::IPC_PRIVATE, libc::IPC_CREAT | (o.mode & 0o777) as i32);
    }
    let e = errno();
    if chosen {
        // Not consumed if the creation failed: later objects must not get it.
        set_next_id(kind, -1);
    }
    if id < 0 {
        return Err(e).with_context(|| format!("recreating System V {kind} id {}", o.id));
    }
    Ok(id)
}

fn make_sem(o: &SysvObject) -> anyhow::Result<i32> {
    let SysvKind::Sem { values } = &o.kind else {
        unreachable!()
    };
    let id = create("sem", o, |key, fl| {
        // SAFETY: plain system call.
        unsafe { libc::semget(key, values.len() as i32, fl) }
    })?;
    let mut v = values.clone();
    // SAFETY: SETALL reads `nsems` values from `v`.
    if unsafe { libc::semctl(id, 0, libc::SETALL, v.as_mut_ptr()) } != 0 {
        return Err(errno()).with_context(|| format!("setting System V semaphores {}", o.id));
    }
    Ok(id)
}

fn make_msg(o: &SysvObject) -> anyhow::Result<i32> {
    let SysvKind::Msg { qbytes, messages } = &o.kind else {
        unreachable!()
    };
    let id = create("msg", o, |key, fl| {
        // SAFETY: plain system call.
        unsafe { libc::msgget(key, fl) }
    })?;
    // SAFETY: plain data, zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes into `ds`.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } == 0 && ds.msg_qbytes as u64 != *qbytes
    {
        ds.msg_qbytes = *qbytes as _;
        // SAFETY: IPC_SET reads `ds`.
        if unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) } != 0 {
            warn(&format!(
                "System V queue {}: cannot set its byte limit to {qbytes}: {}",
                o.id,
                errno()
            ));
        }
    }
    let mut buf = Vec::new();
    for (t, text) in messages {
        buf.clear();
        buf.extend_from_slice(&t.to_ne_bytes());
        buf.extend_from_slice(text);
        // SAFETY: `buf` is a `long` type followed by `text.len()` bytes.
        if unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) } != 0 {
            return Err(errno()).with_context(|| format!("refilling System V queue {}", o.id));
        }
    }
    Ok(id)
}

/// Gives the object its saved owner and mode (the creator is us).
fn set_owner(kind: &str, id: i32, o: &SysvObject) {
    // SAFETY: plain id queries.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if o.uid == uid && o.gid == gid {
        return;
    }
    // Each block zeroes a plain-data struct, fills it with IPC_STAT
    // and hands it back with IPC_SET.
    // SAFETY: see just above.
    let rc = unsafe {
        match kind {
            "shm" => {
                let mut ds: libc::shmid_ds = std::mem::zeroed();
                libc::shmctl(id, libc::IPC_STAT, &mut ds);
                ds.shm_perm.uid = o.uid;
                ds.shm_perm.gid = o.gid;
                libc::shmctl(id, libc::IPC_SET, &mut ds)
            }
            "sem" => {
                let mut ds: libc::semid_ds = std::mem::zeroed();
                libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds);
                ds.sem_perm.uid = o.uid;
                ds.sem_perm.gid = o.gid;
                libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds)
            }
            _ => {
                let mut ds: libc::msqid_ds = std::mem::zeroed();
                libc::msgctl(id, libc::IPC_STAT, &mut ds);
                ds.msg_perm.uid = o.uid;
                ds.msg_perm.gid = o.gid;
                libc::msgctl(id, libc::IPC_SET, &mut ds)
            }
        }
    };
    if rc != 0 {
        warn(&format!(
            "System V {kind} id {}: cannot give it back to uid {} gid {}: {}",
            o.id,
            o.uid,
            o.gid,
            errno()
        ));
    }
}
