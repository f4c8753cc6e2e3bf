//! The wrapper lock: a checkpoint never interleaves with `pthread_create`,
//! `fork`, `exec*`, `dlopen` or `dlclose`.
//!
//! Threads pass the gate when they enter one of those wrappers (a shared,
//! counted hold); the checkpoint thread closes it (exclusive): new entrants
//! wait, and the checkpoint starts once every thread inside has left. So no
//! thread is stopped half-way through creating a thread or a process,
//! replacing its image, or changing the loaded libraries. Waiting at the
//! gate is a futex wait, where the checkpoint signal may stop the thread
//! like anywhere else.

use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

/// Threads inside a gated wrapper.
static INSIDE: AtomicU32 = AtomicU32::new(0);
/// Non-zero while a checkpoint holds the gate closed.
static CLOSED: AtomicU32 = AtomicU32::new(0);

/// The process these counters belong to. A `vfork` child runs in its
/// parent's memory: if it went through the gate on its way to `exec`, the
/// parent's count would never come down (the child's pass is never
/// dropped), so it does not (its parent's calling thread is blocked until
/// the exec anyway).
static OWNER: AtomicU32 = AtomicU32::new(0);

/// Records this process as the owner of the gate (at start, in a fork
/// child, after a restart).
pub fn own() {
    OWNER.store(hiber_sys::getpid(), Release);
}

/// Whether the calling process owns the agent's memory (`false` in a
/// `vfork` child, which runs in its parent's).
pub fn is_owner() -> bool {
    let owner = OWNER.load(Acquire);
    owner == 0 || owner == hiber_sys::getpid()
}

/// Holds the gate open for one wrapper call (a no-op in a `vfork` child).
pub struct Pass(bool);

impl Pass {
    pub fn enter() -> Pass {
        let owner = OWNER.load(Acquire);
        if owner != 0 && owner != hiber_sys::getpid() {
            return Pass(false);
        }
        crate::threads::dormant::at_safe_point();
        loop {
            let c = CLOSED.load(Acquire);
            if c != 0 {
                hiber_sys::futex_wait(&CLOSED, c);
                continue;
            }
            INSIDE.fetch_add(1, AcqRel);
            if CLOSED.load(Acquire) == 0 {
                return Pass(true);
            }
            // A checkpoint closed the gate meanwhile: step back and wait.
            leave();
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.0 {
            leave();
        }
    }
}

fn leave() {
    if INSIDE.fetch_sub(1, AcqRel) == 1 && CLOSED.load(Acquire) != 0 {
        hiber_sys::futex_wake(&INSIDE);
    }
}

/// Closes the gate and waits for every thread inside to leave; `false`
/// (gate open again) if one is still inside after `timeout`.
pub fn close(timeout: Duration) -> bool {
    CLOSED.store(1, Release);
    let deadline = Instant::now() + timeout;
    loop {
        let n = INSIDE.load(Acquire);
        if n == 0 {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            open();
            return false;
        }
        hiber_sys::futex_wait_timeout(
            &INSIDE,
            n,
            (deadline - now).min(Duration::from_millis(50)).as_nanos() as u64,
        );
    }
}

/// Opens the gate (after a checkpoint, and in a restarted process, whose
/// memory was saved with the gate closed).
pub fn open() {
    CLOSED.store(0, Release);
    hiber_sys::futex_wake(&CLOSED);
}

/// In a fork child: no other thread exists, nobody is inside.
pub fn reset_after_fork() {
    own();
    INSIDE.store(0, Release);
    CLOSED.store(0, Release);
}
