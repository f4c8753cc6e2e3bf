//! Signals and timers through two launch → checkpoint → SIGKILL all →
//! restart cycles, against an uninterrupted run: pending signals (for the
//! process and for one thread), `alarm`, `setitimer` and POSIX timers.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use hiber_e2e::{Env, Tracked, kill_restart_cycles};

/// `tests/programs/timers.c` in `mode` (`alarm` or `itimer`: both use
/// ITIMER_REAL, so one run cannot have both), through two cycles. The
/// uninterrupted run uses the same delay: its output does not depend on
/// timing, but waiting the same way keeps the two runs alike.
fn timers(name: &str, mode: &str) {
    let env = Env::new(name);
    let prog = env.compile("timers", &["-pthread"]);
    let args = ["50", "100", mode];
    let out = Command::new(&prog)
        .current_dir(&env.dir)
        .args(args)
        .tracked_output()
        .unwrap();
    assert!(out.status.success());
    let reference = String::from_utf8(out.stdout).unwrap();
    // The program checks itself; a check failing in the uninterrupted run
    // too would let a broken restart pass: every `name value` pair must
    // say the check held (1, or 0 for the counts of what must not happen).
    for line in reference.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            let (name, value) = (w[0], w[1]);
            if name == "step" || value.parse::<i64>().is_err() {
                continue;
            }
            let want = match name {
                "bad" | "wrong-thread" | "sigchld" | "other" => "0",
                _ => "1",
            };
            assert_eq!(value, want, "the uninterrupted run failed a check: {line}");
        }
    }
    kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

/// An `alarm(3)` armed before the checkpoints fires after the restarts,
/// once; blocked pending signals, for the process (`kill`) and for one
/// thread (`pthread_kill`), are delivered when unblocked; POSIX timers
/// (SIGEV_SIGNAL and SIGEV_THREAD_ID, monotonic, realtime, CPU-time,
/// disarmed) keep their ids, intervals and time left; ITIMER_VIRTUAL and
/// ITIMER_PROF fire when the program burns CPU.
#[test]
fn alarm_pending_signals_and_posix_timers() {
    timers("sigalarm", "alarm");
}

/// The same with a periodic ITIMER_REAL (50 ms) instead of the alarm.
#[test]
fn periodic_itimer_real_and_posix_timers() {
    timers("sigitimer", "itimer");
}
