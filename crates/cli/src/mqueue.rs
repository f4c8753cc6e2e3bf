//! POSIX message queues across a restart.
//!
//! Every process saved the queues it had open with their messages
//! (`agent/src/fd/mqueue.rs`). Each named queue is put back here once,
//! before any process runs: created with its size limits and mode if it is
//! gone (or if a queue of that name now has other limits), emptied if it
//! still exists (the checkpointed run's queue outlives it, as a file does,
//! and may have moved on since), and refilled with the messages of the
//! checkpoint. The processes then open it by name again.

use std::collections::HashSet;
use std::ffi::CString;

use anyhow::Context;
use hiber_image::Image;
use hiber_image::meta::FdKind;

pub fn recreate(images: &[&Image]) -> anyhow::Result<()> {
    let mut done = HashSet::new();
    for img in images {
        for m in img.fds()? {
            let FdKind::Mqueue {
                name,
                mode,
                maxmsg,
                msgsize,
                messages,
                unlinked: false,
                ..
            } = &m.kind
            else {
                continue;
            };
            if !done.insert(name.clone()) {
                continue;
            }
            refill(name, *mode, *maxmsg, *msgsize, messages)
                .with_context(|| format!("recreating message queue {name}"))?;
        }
    }
    Ok(())
}

fn open(name: &CString, mode: u32, maxmsg: i64, msgsize: i64) -> std::io::Result<i32> {
    // SAFETY: plain data, zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    let fl = libc::O_RDWR | libc::O_CREAT | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: NUL-terminated name, a valid attribute block.
    let fd = unsafe { libc::mq_open(name.as_ptr(), fl, mode as libc::mode_t, &attr) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn refill(
    name: &str,
    mode: u32,
    maxmsg: i64,
    msgsize: i64,
    messages: &[(u32, Vec<u8>)],
) -> anyhow::Result<()> {
    let c = CString::new(name)?;
    let mut fd = open(&c, mode, maxmsg, msgsize)?;
    // SAFETY: plain data, zero is a valid value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: mq_getattr writes into `attr`.
    unsafe { libc::mq_getattr(fd, &mut attr) };
    if attr.mq_maxmsg != maxmsg || attr.mq_msgsize != msgsize {
        // A queue of that name with other limits: replace it.
        // SAFETY: closing our descriptor; unlinking by a NUL-terminated name.
        unsafe {
            libc::close(fd);
            libc::mq_unlink(c.as_ptr());
        }
        fd = open(&c, mode, maxmsg, msgsize)?;
    }
    let mut buf = vec![0u8; msgsize.max(1) as usize];
    // Empty it (the queue of the checkpointed run, moved on since).
    // SAFETY: `buf` holds `msgsize` bytes; O_NONBLOCK stops at empty.
    while unsafe { libc::mq_receive(fd, buf.as_mut_ptr().cast(), buf.len(), std::ptr::null_mut()) }
        >= 0
    {}
    for (prio, text) in messages {
        // SAFETY: `text` fitted this queue's message size at the checkpoint.
        if unsafe { libc::mq_send(fd, text.as_ptr().cast(), text.len(), *prio) } != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: our descriptor.
            unsafe { libc::close(fd) };
            return Err(e).context("sending a saved message");
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    Ok(())
}
