//! Pseudo-terminals (issue "Sockets, terminals, event fds and IPC"): a pty
//! pair made by the program comes back with its bytes in flight both
//! ways, its modes, window size, packet mode, controlling terminal and
//! foreground group; a program running on a terminal (a tmux pane) comes
//! back on `hiber restart`'s terminal with its modes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use hiber_e2e::{Env, kill_restart_cycles};

/// `tests/programs/ptypair.c`: forkpty, the child in raw mode on the slave
/// (session leader, controlling terminal), the parent in packet mode on
/// the master, lines in flight both ways, the window resized half-way.
/// Two launch → checkpoint → SIGKILL all → restart cycles print what an
/// uninterrupted run prints.
#[test]
fn forkpty_pair_with_bytes_in_flight() {
    pair_cycles("ptypair", false);
}

/// The same as an unprivileged user (the restart runs in a user and pid
/// namespace of its own).
#[test]
fn forkpty_pair_unprivileged() {
    pair_cycles("ptypair-user", true);
}

fn pair_cycles(name: &str, unprivileged: bool) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("ptypair", &["-lutil"]);
    let rounds = "60";
    let out = hiber_e2e::output(Command::new(&prog).arg(rounds)).unwrap();
    assert!(out.status.success(), "uninterrupted run failed: {out:?}");
    let reference = String::from_utf8(out.stdout).unwrap();
    assert!(
        reference.ends_with("child exit 0\nptypair done\n")
            && reference.contains("icanon=0 echo=0 isig=0 opost=0 icrnl=0 ws=40x132 winch=1 fg=1 leader=1 ctty=1"),
        "the uninterrupted run:\n{reference}"
    );
    kill_restart_cycles(&env, &reference, &[], &prog, &[rounds], 2);
}
