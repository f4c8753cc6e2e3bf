//! POSIX message queues (`mq_open`): a descriptor on the mqueue file
//! system (`fstatfs` says `MQUEUE_MAGIC`; `/proc/self/fd` shows the name).
//!
//! The kernel has no way to read a POSIX queue without consuming, so the
//! capture drains the queue through a second descriptor (opened through
//! `/proc/self/fd/N`, which works whatever the name became) and sends every
//! message back with its priority, in the order they came out (a queue is
//! FIFO within a priority, so the order is kept). Every process that has
//! the queue open saves it, one at a time under an `flock` of the queue,
//! so each sees the whole queue. `hiber restart` recreates each named queue
//! once with its messages (`cli/src/mqueue.rs`) and the agent opens it by
//! name again. Not kept: an unlinked queue (a warning), `mq_notify`.

use std::ffi::CString;

use hiber_image::meta::{FdKind, FdMeta};

const MQUEUE_MAGIC: i64 = 0x1980_0202;

pub fn is_mqueue(fd: i32) -> bool {
    // SAFETY: plain data, zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes into `st`.
    unsafe { libc::fstatfs(fd, &mut st) == 0 && st.f_type == MQUEUE_MAGIC }
}

/// A descriptor with its own flags on the queue `fd` refers to.
fn reopen(fd: i32, flags: i32) -> Option<i32> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    // SAFETY: NUL-terminated path; plain open.
    let r = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    (r >= 0).then_some(r)
}

pub fn save(fd: i32, link: &str, flags: i32, mode: u32) -> FdKind {
    let unlinked = link.ends_with(" (deleted)");
    let name = link.trim_end_matches(" (deleted)").to_string();
    // SAFETY: plain data, zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: mq_getattr writes into `attr`.
    unsafe { libc::mq_getattr(fd, &mut attr) };
    let mut messages = Vec::new();
    if let (Some(r), Some(w)) = (
        reopen(fd, libc::O_RDONLY | libc::O_NONBLOCK),
        reopen(fd, libc::O_WRONLY | libc::O_NONBLOCK),
    ) {
        // SAFETY: an flock on our own descriptor; released with it.
        unsafe { libc::flock(r, libc::LOCK_EX) };
        let mut buf = vec![0u8; attr.mq_msgsize.max(1) as usize];
        loop {
            let mut prio = 0u32;
            // SAFETY: `buf` holds `mq_msgsize` bytes.
            let n = unsafe { libc::mq_receive(r, buf.as_mut_ptr().cast(), buf.len(), &mut prio) };
            if n < 0 {
                break;
            }
            messages.push((prio, buf[..n as usize].to_vec()));
        }
        for (prio, text) in &messages {
            // SAFETY: `text` is a message that fitted this queue.
            unsafe { libc::mq_send(w, text.as_ptr().cast(), text.len(), *prio) };
        }
        // SAFETY: closing our own temporary descriptors (and the lock).
        unsafe {
            libc::close(w);
            libc::close(r);
        }
    }
    FdKind::Mqueue {
        name,
        flags,
        mode: mode & 0o777,
        maxmsg: attr.mq_maxmsg,
        msgsize: attr.mq_msgsize,
        messages,
        unlinked,
    }
}

/// Opens the queue `hiber restart` recreated, by its name.
pub fn restore(m: &FdMeta) -> Result<i32, String> {
    let FdKind::Mqueue {
        name,
        flags,
        unlinked,
        ..
    } = &m.kind
    else {
        return Err("not a message queue".into());
    };
    if *unlinked {
        return Err(format!("message queue {name} was unlinked (not restored)"));
    }
    let c = CString::new(name.as_str()).map_err(|_| format!("{name}: NUL"))?;
    let fl = flags & (libc::O_ACCMODE | libc::O_NONBLOCK);
    // SAFETY: NUL-terminated name; plain mq_open (without O_CREAT).
    let fd = unsafe { libc::mq_open(c.as_ptr(), fl) };
    if fd < 0 {
        return Err(format!(
            "cannot reopen message queue {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(fd)
}
