//! TCP and UDP sockets (issue "Sockets, terminals, event fds and IPC"):
//! connections between processes of the computation come back connected,
//! with every byte in flight both ways, their addresses and options;
//! connections to a peer outside come back closed, and the program's own
//! reconnect logic takes over.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;
use std::time::Duration;

use hiber_e2e::{Env, LogCycles, log_file_cycles};

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
    let cycles = LogCycles {
        watch: "p.out",
        first: 5,
        second: 25,
        images: 2,
        resume_first: true,
        logs: &["p.out", "c.out"],
        done: "tcpstream done 0\n",
        after_kill: &|| {},
    };
    log_file_cycles(&env, &prog, &args, &cycles);
}

/// An epoll server, its UDP socket and four clients, each with requests
/// in flight on its connection and UDP questions answered by the server:
/// two SIGKILL → restart cycles; every log equals an uninterrupted run's
/// (every connection came back between the right two processes, the
/// listener and the UDP socket bound to their ports again, the epoll
/// interest list over all of them).
#[test]
fn epoll_server_with_several_clients() {
    let env = Env::new("epollsrv");
    let prog = env.compile("epollsrv", &[]);
    let cycles = LogCycles {
        watch: "c3.out",
        first: 8,
        second: 28,
        images: 5,
        resume_first: false,
        logs: &["s.out", "c0.out", "c1.out", "c2.out", "c3.out"],
        done: "epollsrv done 0\n",
        after_kill: &|| {},
    };
    log_file_cycles(&env, &prog, &["45", "40"], &cycles);
}

/// A "ping K" / "pong K" server run by the test itself: outside the
/// computation, and alive across its restarts.
fn outside_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { break };
                    let k = line.trim_start_matches("ping ");
                    if w.write_all(format!("pong {k}\n").as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A connection to a server outside the computation comes back closed,
/// with a warning naming the server; the program sees end of file, its
/// own reconnect logic connects again, and its log equals an
/// uninterrupted run's.
#[test]
fn outside_server_connection_comes_back_closed_and_the_program_reconnects() {
    let env = Env::new("tcpclient");
    let prog = env.compile("tcpclient", &[]);
    let port = outside_server().to_string();
    let args = [port.as_str(), "60", "40"];
    let refdir = env.dir.join("ref");
    std::fs::create_dir_all(&refdir).unwrap();
    let reference = hiber_e2e::output(Command::new(&prog).args(args).current_dir(&refdir)).unwrap();
    assert!(reference.status.success(), "reference run: {reference:?}");
    let t = Duration::from_secs(90);

    let mut c = env.launch(&[], &prog, &args, "run0.out");
    env.wait_lines("log.out", 10, t);
    let images = env.checkpoint(&[]);
    assert_eq!(images.len(), 1, "{images:?}");
    env.wait_lines("log.out", env.read("log.out").lines().count() + 2, t);
    env.kill_all(&mut [&mut c]);
    assert_eq!(
        env.read("reconnects.out"),
        "",
        "no reconnect before the restart"
    );

    let mut cmd = env.cmd();
    cmd.arg("restart")
        .args(&images)
        .stderr(env.stderr_file("restart.err"));
    let mut r = env.spawn(cmd, "run1.out");
    let st = env.wait(&mut r, t);
    assert!(st.success(), "restarted client failed: {st:?}");
    assert_eq!(env.read("run1.out"), "tcpclient done\n");
    let err = env.read("restart.err");
    let peer = format!("-> 127.0.0.1:{port}");
    assert!(
        err.contains("leads outside the computation") && err.contains(&peer),
        "a warning names the server: {err}"
    );
    assert!(
        env.read("reconnects.out").contains("reconnecting"),
        "the program saw its connection end and connected again"
    );
    let want = std::fs::read_to_string(refdir.join("log.out")).unwrap();
    assert_eq!(
        env.read("log.out"),
        want,
        "log differs from an uninterrupted run"
    );
}
