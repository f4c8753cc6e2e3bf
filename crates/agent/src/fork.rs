//! A new process made by copying this one (`fork`, and `clone` used as
//! fork in `shim.c`): the child joins the computation before the program
//! sees the call return, in both processes.
//!
//! The sequence is split in three so that a caller whose child runs on
//! another stack (`clone`) can use it: [`Fork::enter`] before the copy,
//! [`Fork::child`] first thing in the child, [`Fork::parent`] in the
//! parent (also when the copy failed).

use crate::checkpoint::{self, ForkState};
use crate::gate::Pass;

/// One fork in progress, from before the copy until both sides went on.
pub struct Fork {
    /// The agent's locks a child needs, held across the copy: a lock held
    /// by another thread at that moment would stay locked in the child for
    /// ever. Released in both processes right after.
    locks: Option<checkpoint::ForkLocks>,
    pass: Pass,
    joining: Option<ForkState>,
    /// The parent returns only once the child has joined: otherwise a
    /// checkpoint could stop the parent and complete before the child's
    /// hello reached the coordinator, and the generation would lack the
    /// child its parent knows. The child closes its write end once joined.
    joined: [i32; 2],
}

impl Fork {
    /// Before the copy: holds the wrapper lock (no checkpoint stops this
    /// process half-way through a fork) and takes what the child needs.
    pub fn enter() -> Fork {
        let pass = Pass::enter();
        let joining = checkpoint::fork_prepare();
        let mut joined = [-1i32; 2];
        // With a spare connection the parent itself tells the coordinator,
        // so it need not wait for the child.
        let slow = joining.as_ref().is_some_and(|st| st.spare.is_none());
        if slow && hiber_sys::pipe2(&mut joined, libc::O_CLOEXEC as u32).is_err() {
            joined = [-1, -1];
        }
        Fork {
            locks: checkpoint::fork_locks(),
            pass,
            joining,
            joined,
        }
    }

    /// In the child, a new single-threaded process: it joins the
    /// computation (takes over the parent's spare connection, or says
    /// hello itself).
    pub fn child(self) {
        drop(self.locks);
        // The pass was taken in the parent's counters, which this process
        // now owns afresh.
        std::mem::forget(self.pass);
        crate::gate::reset_after_fork();
        if let Some(st) = self.joining {
            checkpoint::fork_child(st);
        }
        // Closing our write end tells the parent we joined (or gave up).
        for fd in self.joined {
            if fd >= 0 {
                let _ = hiber_sys::close(fd);
            }
        }
    }

    /// In the parent, with the child's pid (or -1 if the copy failed).
    pub fn parent(self, pid: libc::pid_t) {
        drop(self.locks);
        let Some(st) = self.joining else { return };
        if let Some((spare, id)) = st.spare {
            // The child has its copy; ours goes (closing it before `Forked`
            // would do no harm either: the socket stays open in the child).
            let _ = hiber_sys::close(spare);
            if pid > 0 {
                checkpoint::child_forked(&st.parent, id, pid as u32);
            }
        }
        let [r, w] = self.joined;
        if r >= 0 {
            let _ = hiber_sys::close(w);
            if pid > 0 {
                let mut b = [0u8; 1];
                // End of file once the child closed its copy (or died).
                while let Err(hiber_sys::Errno::EINTR) = hiber_sys::read(r, &mut b) {}
            }
            let _ = hiber_sys::close(r);
        }
    }
}

// ---- for shim.c ------------------------------------------------------------

/// `clone` used as fork, before the copy; the result goes to one of the
/// two functions below, exactly once in each process.
#[unsafe(no_mangle)]
pub extern "C" fn hiber_internal_fork_enter() -> *mut Fork {
    Box::into_raw(Box::new(Fork::enter()))
}

/// # Safety
/// `f` comes from [`hiber_internal_fork_enter`], in the child's copy of
/// memory.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_internal_fork_child(f: *mut Fork) {
    // SAFETY: caller's contract; the child owns its copy of the box.
    unsafe { Box::from_raw(f) }.child();
}

/// # Safety
/// `f` comes from [`hiber_internal_fork_enter`], in the parent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_internal_fork_parent(f: *mut Fork, pid: libc::pid_t) {
    // SAFETY: caller's contract.
    unsafe { Box::from_raw(f) }.parent(pid);
}
