//! Sockets: connected UNIX socket pairs between processes of the
//! computation come back connected, with their bytes in flight, message
//! boundaries and options (issue "Sockets, terminals, event fds and IPC").

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::time::Duration;

use hiber_e2e::Env;

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
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference =
        hiber_e2e::output(Command::new(&prog).args(&args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success(), "reference run: {reference:?}");
    let t = Duration::from_secs(90);

    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("p.out", 12, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "parent and child: {images:?}");
    env.wait_lines("p.out", env.read("p.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("p.out", 26, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    env.wait_lines("p.out", env.read("p.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted pair failed: {st:?}");
    assert_eq!(env.read("run2.out"), "unixpair done 0\n");
    for f in ["p.out", "c.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
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
    let args = ["45", "40"];
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference =
        hiber_e2e::output(Command::new(&prog).args(args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success(), "reference run: {reference:?}");
    let t = Duration::from_secs(90);

    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("c1.out", 8, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 3, "server and two clients: {images:?}");
    env.wait_lines("c1.out", env.read("c1.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("c1.out", 25, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 3, "{images:?}");
    env.wait_lines("c1.out", env.read("c1.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted server failed: {st:?}");
    assert_eq!(env.read("run2.out"), "unixdgram done 45 45\n");
    for f in ["s1.out", "s2.out", "c1.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}
