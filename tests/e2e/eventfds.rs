//! Descriptors without a path through two launch → checkpoint → SIGKILL all
//! → restart cycles, against an uninterrupted run: an epoll instance (with
//! one-shot and edge-triggered registrations and 64-bit data) over an
//! eventfd in semaphore mode, a periodic timerfd, a signalfd and an inotify
//! watch (`tests/programs/evloop.c`); and two timerfds read only at the
//! end: one whose expiration went unread across the checkpoints, one still
//! an hour away.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use hiber_e2e::{Env, Tracked, kill_restart_cycles};

/// Every round waits on all four in one `epoll_wait` loop and prints what
/// each gave; the eventfd's counter is drained (counted) every fifth round,
/// so a counter or semaphore flag lost at a restart shows. The log file
/// the program keeps open must also end up equal to the uninterrupted
/// run's.
#[test]
fn epoll_over_eventfd_timerfd_signalfd_inotify() {
    let env = Env::new("evloop");
    let prog = env.compile("evloop", &[]);
    let rounds = "100";
    let out = Command::new(&prog)
        .current_dir(&env.dir)
        .args([rounds, "ref.d", "ref.log"])
        .tracked_output()
        .unwrap();
    assert!(out.status.success(), "uninterrupted run failed: {out:?}");
    let reference = String::from_utf8(out.stdout).unwrap();
    for bad in ["timeout", "again", "bad-data", "other"] {
        assert!(
            !reference.contains(bad),
            "the uninterrupted run failed a check ({bad}):\n{reference}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(env.dir.join("ref.log")).unwrap(),
        reference
    );
    assert!(
        reference.ends_with("oneshot=1 hour-pending=1 hour-armed=1\n"),
        "the uninterrupted run's timers:\n{reference}"
    );
    kill_restart_cycles(
        &env,
        &reference,
        &[],
        &prog,
        &[rounds, "run.d", "run.log"],
        2,
    );
    assert_eq!(
        std::fs::read_to_string(env.dir.join("run.log")).unwrap(),
        reference,
        "the log file kept open across the restarts differs"
    );
}
