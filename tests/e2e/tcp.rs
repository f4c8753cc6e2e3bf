//! TCP and UDP sockets (issue "Sockets, terminals, event fds and IPC"):
//! connections between processes of the computation come back connected,
//! with every byte in flight both ways, their addresses and options;
//! connections to a peer outside come back closed, and the program's own
//! reconnect logic takes over.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::time::Duration;

use hiber_e2e::Env;

/// A server and its forked client stream checksummed blocks both ways
/// over loopback, megabytes in flight each way at every moment. The first
/// checkpoint lets them go on (the drained bytes were echoed back into the
/// kernel), then two SIGKILL → restart cycles; both logs equal an
/// uninterrupted run's: every byte arrived once and in order, the
/// connection kept its addresses (the server's end still on the listener's
/// port), TCP_NODELAY, O_NONBLOCK and the SO_RCVBUF the program set.
#[test]
fn tcp_stream_both_ways_in_flight() {
    tcp_stream_cycles("tcpstream", &[], false);
}

/// The same over IPv6 loopback.
#[test]
fn tcp6_stream_both_ways_in_flight() {
    tcp_stream_cycles("tcpstream6", &["v6"], false);
}

/// The same as an unprivileged user.
#[test]
fn tcp_stream_unprivileged() {
    tcp_stream_cycles("tcpstream-user", &[], true);
}

fn tcp_stream_cycles(name: &str, extra: &[&str], unprivileged: bool) {
    let mut env = Env::new(name);
    if unprivileged && let Some((uid, gid)) = hiber_e2e::unprivileged_user() {
        env.become_user(uid, gid);
    }
    let prog = env.compile("tcpstream", &[]);
    let args: Vec<&str> = ["40", "60"].iter().chain(extra).copied().collect();
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference =
        hiber_e2e::output(Command::new(&prog).args(&args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success(), "reference run: {reference:?}");
    let t = Duration::from_secs(90);

    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("p.out", 5, t);
    // A checkpoint the computation survives: drained and echoed back.
    let first = env.checkpoint(&[]);
    assert_eq!(first.len(), 2, "server and client: {first:?}");
    env.wait_lines("p.out", env.read("p.out").lines().count() + 3, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    env.wait_lines("p.out", env.read("p.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);

    let mut r = env.restart(&images, "run1.out");
    env.wait_lines("p.out", 25, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 2, "{images:?}");
    env.wait_lines("p.out", env.read("p.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut r]);

    let mut r = env.restart(&images, "run2.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted pair failed: {st:?}");
    assert_eq!(env.read("run2.out"), "tcpstream done 0\n");
    for f in ["p.out", "c.out"] {
        let want = std::fs::read_to_string(refdir.join(f)).unwrap();
        assert_eq!(env.read(f), want, "{f} differs from an uninterrupted run");
    }
}
