//! Sockets: connected UNIX socket pairs between processes of the
//! computation come back connected, with their bytes in flight, message
//! boundaries and options (issue "Sockets, terminals, event fds and IPC").

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

use hiber_e2e::{Env, LogCycles, log_file_cycles};

/// A parent and its child exchange numbered, checksummed messages of
/// varying sizes over a SOCK_SEQPACKET and a SOCK_STREAM socketpair, with
/// several in flight both ways at every moment. Two launch → checkpoint →
/// SIGKILL all → restart cycles; both logs are those of an uninterrupted
/// run (every message arrived once, whole, in order, with its boundaries;
/// the non-blocking flag and the send buffer size came back).
#[test]
fn unix_socketpairs_with_messages_in_flight() {
    socketpair_cycles("unixpair", false, &[]);
}

/// The stream pair connected through `bind`/`listen`/`connect` on a path
/// instead, with the listening socket kept by parent and child: after the
/// restarts the connection still carries its bytes in flight, and the
/// listener, bound to its path again, accepts a late connection.
#[test]
fn unix_stream_connected_through_a_path_and_its_listener() {
    socketpair_cycles("unixpath", false, &["path"]);
}

/// Both, as an unprivileged user: the restart runs in a pid (and mount)
/// namespace of its own.
#[test]
fn unix_socketpairs_unprivileged() {
    socketpair_cycles("unixpair-user", true, &[]);
    socketpair_cycles("unixpath-user", true, &["path"]);
}

fn socketpair_cycles(name: &str, unprivileged: bool, extra: &[&str]) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("unixpair", &[]);
    let args: Vec<&str> = ["50", "40"].iter().chain(extra).copied().collect();
    let cycles = LogCycles {
        watch: "p.out",
        first: 12,
        second: 26,
        images: 2,
        resume_first: false,
        logs: &["p.out", "c.out"],
        done: "unixpair done 0\n",
        after_kill: &|| {},
    };
    log_file_cycles(&env, &prog, &args, &cycles);
}

/// Socket pairs whose other end sent everything and exited (a seqpacket
/// and a stream pair): the reader takes one message and one line per step
/// across two kill/restart cycles, with the boundaries of every message,
/// then sees end-of-file on both, as in an uninterrupted run.
#[test]
fn unix_sockets_with_data_left_by_an_exited_peer() {
    let env = Env::new("unixleft");
    let prog = env.compile("unixleft", &[]);
    let args = ["40", "30"];
    let reference = hiber_e2e::output(Command::new(&prog).args(args)).unwrap();
    assert!(reference.status.success());
    let reference = String::from_utf8_lossy(&reference.stdout).into_owned();
    hiber_e2e::kill_restart_cycles(&env, &reference, &[], &prog, &args, 2);
}

/// UNIX datagram sockets that are not pairs: a server bound to a path,
/// a client bound to its own path and connected to the server, and an
/// unbound client that uses `sendto`, with messages waiting in the
/// server's queue at every checkpoint. Two SIGKILL → restart cycles; the
/// logs equal an uninterrupted run's (every message once, whole, in
/// order; the names bound and connected again).
#[test]
fn unix_datagram_server_and_clients() {
    let env = Env::new("unixdgram");
    let prog = env.compile("unixdgram", &[]);
    let cycles = LogCycles {
        watch: "c1.out",
        first: 8,
        second: 25,
        images: 3,
        resume_first: false,
        logs: &["s1.out", "s2.out", "c1.out"],
        done: "unixdgram done 45 45\n",
        after_kill: &|| {},
    };
    log_file_cycles(&env, &prog, &["45", "40"], &cycles);
}
