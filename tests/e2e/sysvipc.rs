//! System V IPC: shared memory (re-attached at the same addresses, with
//! its contents and a pending IPC_RMID), semaphores (values) and message
//! queues (messages) across kill/restart cycles, with the ids and keys
//! the program saw; POSIX message queues with their messages (issue
//! "Sockets, terminals, event fds and IPC").

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use hiber_e2e::{Env, LogCycles, log_file_cycles};

/// The keys one run of `sysvipc` uses (KEY, KEY+1, KEY+2), per test
/// (and test process) so that concurrent runs do not meet. Removes, when dropped and
/// when asked, the objects of this namespace with those keys: the SIGKILLed
/// run leaves its objects behind (they outlive their processes), and so
/// does a run that failed midway. Only our keys: never anyone else's.
struct Keys(i32);

impl Keys {
    /// `slot`: one per test of this process (they run concurrently).
    fn new(slot: i32) -> Keys {
        Keys(0x4b10_0000 + (std::process::id() as i32 & 0xffff) * 8 + slot * 4)
    }

    fn remove_leftovers(&self) {
        // SAFETY: lookups by key, and IPC_RMID of what they found.
        unsafe {
            let id = libc::shmget(self.0, 0, 0);
            if id >= 0 {
                libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
            let id = libc::semget(self.0 + 1, 0, 0);
            if id >= 0 {
                libc::semctl(id, 0, libc::IPC_RMID);
            }
            let id = libc::msgget(self.0 + 2, 0);
            if id >= 0 {
                libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.remove_leftovers();
    }
}

/// A parent and its child take turns with a semaphore set, both write a
/// keyed segment (counter, log) and a private one removed while attached,
/// and pass numbered messages through a queue that always holds some. Two
/// launch → checkpoint → SIGKILL all → restart cycles give the outputs of
/// an uninterrupted run: every turn sees the other's writes, the keys still
/// name the same ids, the queue holds the same messages.
#[test]
fn sysv_shm_semaphores_and_queues() {
    sysv_cycles("sysvipc", false);
}

/// The same as an unprivileged user: the restart makes a user namespace,
/// and in it an IPC namespace where the ids are free and may be chosen.
#[test]
fn sysv_shm_semaphores_and_queues_unprivileged() {
    sysv_cycles("sysvipc-user", true);
}

fn sysv_cycles(name: &str, unprivileged: bool) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("sysvipc", &[]);
    let keys = Keys::new(i32::from(unprivileged));
    keys.remove_leftovers();
    let key = format!("{:#x}", keys.0);
    let cycles = LogCycles {
        watch: "c.out",
        first: 10,
        second: 22,
        images: 2,
        resume_first: false,
        logs: &["p.out", "c.out"],
        done: "done\n",
        after_kill: &|| keys.remove_leftovers(),
    };
    log_file_cycles(&env, &prog, &[key.as_str(), "40", "40"], &cycles);
}

/// The POSIX queues one run of `mqueue` uses; unlinked when dropped (only
/// ours: the names carry this test process's pid).
struct Queues(String);

impl Drop for Queues {
    fn drop(&mut self) {
        for q in ["d", "g", "a"] {
            let name = std::ffi::CString::new(format!("/hiber-test-mq-{}-{q}", self.0)).unwrap();
            // SAFETY: NUL-terminated name.
            unsafe { libc::mq_unlink(name.as_ptr()) };
        }
    }
}

/// POSIX message queues: a data queue holding messages of several
/// priorities at every checkpoint, and two queues the processes wait on.
/// The queues of the SIGKILLed run stay behind and move on (they are not
/// removed here): a restart puts each back as it was at the checkpoint.
/// Two cycles give the outputs of an uninterrupted run.
#[test]
fn posix_message_queues() {
    let env = Env::new("mqueue");
    let prog = env.compile("mqueue", &[]);
    let tag = format!("{}", std::process::id());
    let _queues = Queues(tag.clone());
    let cycles = LogCycles {
        watch: "c.out",
        first: 10,
        second: 22,
        images: 2,
        resume_first: false,
        logs: &["p.out", "c.out"],
        done: "done\n",
        after_kill: &|| {},
    };
    log_file_cycles(&env, &prog, &[tag.as_str(), "40", "40"], &cycles);
}
