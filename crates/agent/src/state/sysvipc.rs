//! System V IPC: shared memory segments, semaphore sets, message queues.
//!
//! The kernel keeps these objects after every process that used them is
//! gone, and the program holds their ids (not descriptors), so the agent
//! learns which ones the computation uses from the calls that hand out ids
//! (`shmget`, `semget`, `msgget`, `shmat`, wrapped in `wrappers.rs`); which
//! segments are attached comes from `/proc/self/maps` (`/SYSV<key>` with
//! the shmid as inode), read only when there are any. The sets live in memory, so a forked child inherits
//! its parent's and a restarted process finds its own again.
//!
//! At PRE_CHECKPOINT each process saves every object it knows that still
//! exists (all processes are stopped, so they save the same state; a
//! restart recreates each id once, `cli/src/sysv.rs`): key, mode, owner,
//! for a semaphore set its values (`GETALL`), for a queue its messages
//! (`msgrcv` with `MSG_COPY`, which copies without consuming), for a
//! segment whether `IPC_RMID` is pending (`SHM_DEST`) and, when this
//! process does not have it attached, its contents through a temporary
//! read-only `shmat` (an attached segment's contents are in the memory
//! image). Not kept: semaphore undo values (`SEM_UNDO`), the `*_time` and
//! last-pid fields.

use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering::*;

use hiber_image::meta::{SysvKind, SysvObject};

/// `shm_perm.mode` bit: `IPC_RMID` called while still attached.
const SHM_DEST: u32 = 0o1000;
/// `msgrcv` flag: copy the message at index `msgtyp`, leave it queued.
const MSG_COPY: i32 = 0o40000;
const SLOTS: usize = 256;

/// Ids the program obtained; lock-free, since the wrappers run in any
/// thread and the checkpoint reads them with the threads stopped.
pub struct IdSet([AtomicI32; SLOTS]);

impl IdSet {
    const fn new() -> IdSet {
        IdSet([const { AtomicI32::new(-1) }; SLOTS])
    }

    pub fn record(&self, id: i32) {
        if id < 0 {
            return;
        }
        for s in &self.0 {
            match s.compare_exchange(-1, id, AcqRel, Acquire) {
                Ok(_) => return,
                Err(v) if v == id => return,
                Err(_) => {}
            }
        }
        // Full: the oldest entries are most likely removed objects.
        self.0[id as usize % SLOTS].store(id, Release);
    }

    fn ids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .0
            .iter()
            .map(|s| s.load(Acquire))
            .filter(|&id| id >= 0)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

pub static SHM_IDS: IdSet = IdSet::new();
pub static SEM_IDS: IdSet = IdSet::new();
pub static MSG_IDS: IdSet = IdSet::new();

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn shm(id: i32, attached: bool) -> Result<Option<SysvObject>, String> {
    // SAFETY: plain data, zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes into `ds`.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Ok(None); // removed since
    }
    let size = ds.shm_segsz as u64;
    let contents = if attached {
        None
    } else {
        // Raw system calls: `shmat` and `msgrcv` by name would be our own
        // wrappers, whose first call resolves glibc's with `dlsym`, not a
        // thing to do with the program's threads stopped anywhere.
        // SAFETY: a read-only attach at an address the kernel chooses.
        let p = unsafe { libc::syscall(libc::SYS_shmat, id, 0usize, libc::SHM_RDONLY) };
        if p == -1 {
            return Err(format!(
                "System V segment {id}: cannot read it (shmat: errno {})",
                errno()
            ));
        }
        // SAFETY: the segment is `size` bytes long and attached at `p`.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size as usize) }.to_vec();
        // SAFETY: detaching what we attached above.
        unsafe { libc::syscall(libc::SYS_shmdt, p) };
        Some(bytes)
    };
    Ok(Some(SysvObject {
        id,
        key: ds.shm_perm.__key,
        mode: ds.shm_perm.mode as u32 & 0o777,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        kind: SysvKind::Shm {
            size,
            removed: ds.shm_perm.mode as u32 & SHM_DEST != 0,
            contents,
        },
    }))
}

fn sem(id: i32) -> Result<Option<SysvObject>, String> {
    // SAFETY: plain data, zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes into `ds` (the union argument is its pointer).
    if unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } != 0 {
        return Ok(None);
    }
    let mut values = vec![0u16; ds.sem_nsems as usize];
    // SAFETY: GETALL writes `sem_nsems` values into `values`.
    if unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) } != 0 {
        return Err(format!(
            "System V semaphore set {id}: GETALL: errno {}",
            errno()
        ));
    }
    Ok(Some(SysvObject {
        id,
        key: ds.sem_perm.__key,
        mode: ds.sem_perm.mode as u32 & 0o777,
        uid: ds.sem_perm.uid,
        gid: ds.sem_perm.gid,
        kind: SysvKind::Sem { values },
    }))
}

fn msg(id: i32) -> Result<Option<SysvObject>, String> {
    // SAFETY: plain data, zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes into `ds`.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Ok(None);
    }
    // No message is longer than the queue's byte limit.
    let max = ds.msg_qbytes as usize;
    let mut buf = vec![0u8; 8 + max];
    let mut messages = Vec::new();
    for i in 0..ds.msg_qnum as libc::c_long {
        // SAFETY: `buf` holds a `long` type and `max` bytes of text.
        let n = unsafe {
            libc::syscall(
                libc::SYS_msgrcv,
                id,
                buf.as_mut_ptr(),
                max,
                i,
                libc::IPC_NOWAIT | MSG_COPY,
            )
        };
        if n < 0 {
            return Err(format!(
                "System V message queue {id}: reading message {i} with MSG_COPY: errno {} \
                 (a kernel without CONFIG_CHECKPOINT_RESTORE cannot)",
                errno()
            ));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&buf[..8]);
        messages.push((i64::from_ne_bytes(t), buf[8..8 + n as usize].to_vec()));
    }
    Ok(Some(SysvObject {
        id,
        key: ds.msg_perm.__key,
        mode: ds.msg_perm.mode as u32 & 0o777,
        uid: ds.msg_perm.uid,
        gid: ds.msg_perm.gid,
        kind: SysvKind::Msg {
            qbytes: ds.msg_qbytes as u64,
            messages,
        },
    }))
}

/// Every object this process knows, as it is now.
pub fn save() -> Result<Vec<SysvObject>, String> {
    let mut shm_ids = SHM_IDS.ids();
    // A segment is attached with `shmat` in this process or in a forked
    // parent (exec detaches all): one without a recorded id has none.
    let attached: Vec<i32> = if shm_ids.is_empty() {
        Vec::new()
    } else {
        crate::mem::maps::read_self()?
            .iter()
            .filter(|m| m.shared && m.path.starts_with("/SYSV"))
            .map(|m| m.inode as i32)
            .collect()
    };
    shm_ids.extend(&attached);
    shm_ids.sort_unstable();
    shm_ids.dedup();
    let mut out = Vec::new();
    for id in shm_ids {
        out.extend(shm(id, attached.contains(&id))?);
    }
    for id in SEM_IDS.ids() {
        out.extend(sem(id)?);
    }
    for id in MSG_IDS.ids() {
        out.extend(msg(id)?);
    }
    Ok(out)
}

/// System V IPC as a mechanism (recreated by `hiber restart` before the
/// processes run, so nothing to do at RESTART).
pub struct SysvIpc;

impl crate::mechanisms::Mechanism for SysvIpc {
    fn name(&self) -> &'static str {
        "System V IPC"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.process.sysv = save()?;
        Ok(())
    }
}
