//! The checkpoint thread's side of a restart. `threads::restore` recreates
//! this thread at the top of its old stack, with its old TLS, so Rust's
//! thread-locals and the agent's statics are as they were at the
//! checkpoint. The program's threads stay parked while this restores the
//! process-wide state, rejoins the coordinator and passes the `restored`
//! barrier; then they are let go and the thread serves checkpoints again.

use std::sync::atomic::Ordering::Relaxed;

use hiber_protocol::client::Connection;
use hiber_protocol::handoff::RestartArgs;
use hiber_protocol::{FromCoord, Role, ToCoord, barrier};

use crate::checkpoint::{self, Link, SAVED, SHARED};
use crate::mechanisms::{self, Restore};
use crate::threads::{restore, suspend};
use crate::{fd, log};

/// Entry of the recreated checkpoint thread.
pub extern "C" fn checkpoint_thread_start(_arg: u64) -> ! {
    // The image was saved with the allocator frozen.
    crate::alloc::restarted();
    checkpoint::forget_spare();
    // Per-thread kernel state of this thread: rseq (glibc registered one
    // for it when it was created as a pthread).
    let fs = hiber_sys::arch_get_fs();
    crate::threads::restore::drop_restart_capabilities();
    hiber_sys::set_thread_name(b"hiber-ckpt\0");
    suspend::deactivate();
    suspend::forget_agent_threads();
    suspend::register_agent_thread(hiber_sys::gettid());
    restore::CKPT_TID_ADDR.store(hiber_sys::get_tid_address(), Relaxed);
    let _ = fs;
    let mut link = restart();
    crate::events::restart(&mut link);
    // A hiber_checkpoint() that was waiting now returns HIBER_RESTARTED.
    crate::capi::restarted();
    // The image was saved with the gate closed (and by a process that may
    // have had another pid).
    crate::gate::own();
    crate::gate::open();
    restore::GO.store(1, Relaxed);
    hiber_sys::futex_wake(&restore::GO);
    restore::release_temp_stacks();
    checkpoint::serve(link)
}

fn args() -> RestartArgs {
    let len = restore::ARGS_LEN.load(Relaxed);
    // ARGS was filled by the restart entry before this thread was
    // created and is not written again.
    // SAFETY: see just above.
    let bytes = unsafe { &(&*std::ptr::addr_of!(restore::ARGS))[..len] };
    postcard::from_bytes(bytes).unwrap_or_default()
}

/// Restores process state and rejoins the coordinator; without one (lost,
/// or standalone) the thread serves standalone requests only.
fn restart() -> Link {
    let args = args();
    // Our pid as the host sees it (before the descriptor is closed below).
    let host_pid = host_pid(args.host_proc_fd);
    let saved = SAVED.lock().ok().and_then(|g| g.clone());
    let mut warnings = Vec::new();
    if let Some(saved) = &saved {
        mechanisms::restore(&mut Restore {
            saved,
            temp_fds: &args.temp_fds,
            pipes: &args.pipes,
            files: &args.files,
            sockets: &args.sockets,
            ptys: &args.ptys,
            warnings: &mut warnings,
        });
    } else {
        warnings.push("the image holds no saved process state".into());
    }
    // The process kept its pid, so its threads were meant to keep theirs
    // (with new ids on purpose, or after a warning, the pid changed too).
    let kept_pid = restore::SAVED_PID.load(Relaxed) == hiber_sys::getpid();
    for s in crate::threads::suspend::slots() {
        let (old, new) = (s.tid.load(Relaxed), s.new_tid.load(Relaxed));
        if kept_pid && new != 0 && old != new {
            warnings.push(format!(
                "thread {old} was restarted as {new} (its id is taken or may not be chosen)"
            ));
        }
    }
    for w in &warnings {
        log::warn(w);
    }
    if let Ok(mut g) = SHARED.lock()
        && let Some(s) = g.as_mut()
    {
        if !args.coord.is_empty() {
            s.coord = args.coord.clone();
        }
        if let Some(d) = &args.ckpt_dir {
            s.ckpt_dir = d.clone();
        }
        s.host_pid = host_pid;
        // The coordinator of the checkpoint is gone; the new one tells.
        s.local.clear();
    }
    let s = checkpoint::shared();
    if s.standalone || s.coord.is_empty() {
        return Link::Alone;
    }
    let hello = checkpoint::restarted_hello(&s);
    let (mut conn, welcome) = match Connection::connect(&s.coord, Role::Process(hello)) {
        Ok(c) => c,
        Err(e) => {
            log::warn(&format!(
                "restarted without a coordinator ({e}); no more checkpoints"
            ));
            return Link::Alone;
        }
    };
    if let Err(e) = conn.relocate_fd(fd::AGENT_FD_BASE) {
        log::debug(&format!("keeping the coordinator socket low: {e}"));
    }
    checkpoint::set_shared(|s| s.local = welcome.local);
    checkpoint::send_settings(&mut conn);
    checkpoint::COORD_FD.store(conn.raw_fd(), Relaxed);
    let _ = conn.send(&ToCoord::Barrier {
        generation: s.generation,
        name: barrier::RESTORED.into(),
    });
    loop {
        match conn.recv() {
            Ok(FromCoord::Release { name, .. }) if name == barrier::RESTORED => {
                return Link::Coord(conn);
            }
            Ok(_) => {}
            Err(e) => {
                log::warn(&format!(
                    "coordinator lost during restart ({e}); continuing without it"
                ));
                return Link::Alone;
            }
        }
    }
}

/// The pid of this process in the host's pid namespace, read through a
/// descriptor of the host's /proc (`readlink self`); 0 without one.
fn host_pid(proc_fd: i32) -> u32 {
    if proc_fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 32];
    // SAFETY: readlinkat into a local buffer, on a descriptor we were given.
    let n = unsafe {
        libc::readlinkat(
            proc_fd,
            c"self".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return 0;
    }
    hiber_sys::fmt::parse_u64(&buf[..n as usize]).map_or(0, |v| v as u32)
}
