//! Drives a real coordinator (on 127.0.0.1, port 0, in a thread) with fake
//! processes and control clients built on `hiber_protocol::client`.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use hiber_protocol::client::{ClientError, Connection};
use hiber_protocol::frame;
use hiber_protocol::{
    FromCoord, Hello, HelloReply, PROTOCOL_VERSION, ProcessHello, RestartedFrom, Role, State,
    ToCoord, barrier,
};

#[test]
fn full_checkpoint_round_with_three_processes() {
    let coord = Coord::start("full", false);
    let dir = coord.dir.to_string_lossy().into_owned();
    let mut procs: Vec<Connection> = (0..3).map(|i| coord.process(i)).collect();
    let mut ctl = coord.control();

    let r = full_round(&mut ctl, &mut procs, &dir);
    assert_eq!(r.generation, 1);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let images: Vec<String> = (0..3)
        .map(|i| format!("{dir}/ckpt_fake{i}_{i}.hiber"))
        .collect();
    assert_eq!(r.images, images);
    let script = PathBuf::from(r.restart_script.unwrap());
    assert_eq!(script, coord.dir.join("hiber_restart_script.sh"));
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("# host hosta: 2 process(es)"), "{text}");
    assert!(text.contains("# host hostb: 1 process(es)"), "{text}");
    assert!(text.contains("'/usr/bin/hiber' restart"), "{text}");
    assert_eq!(status(&mut ctl).generation, 1);

    let r = full_round(&mut ctl, &mut procs, &dir);
    assert_eq!((r.generation, r.errors.len()), (2, 0));
}

#[test]
fn process_dying_after_suspended_aborts_the_others() {
    let coord = Coord::start("die", false);
    let mut procs: Vec<Connection> = (0..3).map(|i| coord.process(i)).collect();
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    for p in &mut procs {
        assert_eq!(expect_checkpoint(p), 1);
        barrier(p, 1, barrier::SUSPENDED);
    }
    for p in &mut procs {
        expect_release(p, 1, barrier::SUSPENDED);
    }
    barrier(&mut procs[0], 1, barrier::WRITTEN);
    drop(procs.remove(1)); // fake1 dies
    for p in &mut procs {
        match p.recv().unwrap() {
            FromCoord::Abort {
                generation: 1,
                reason,
            } => assert!(reason.contains("fake1[100001]")),
            other => panic!("expected Abort, got {other:?}"),
        }
    }
    let r = expect_result(&mut ctl);
    assert_eq!(r.errors, vec!["fake1[100001]: connection lost".to_string()]);
    assert!(r.restart_script.is_none());
    let s = status(&mut ctl);
    assert_eq!((s.generation, s.processes, s.state), (0, 2, State::Running));

    // A process reporting failure: generation 1 again, the failure is named.
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    for p in &mut procs {
        assert_eq!(expect_checkpoint(p), 1);
    }
    let error = "cannot write image: No space left on device".to_string();
    procs[1]
        .send(&ToCoord::CheckpointFailed {
            generation: 1,
            error: error.clone(),
        })
        .unwrap();
    assert!(matches!(
        procs[0].recv().unwrap(),
        FromCoord::Abort { generation: 1, .. }
    ));
    assert_eq!(
        procs[1].recv_timeout(QUIET).unwrap(),
        None,
        "the failed process is not aborted"
    );
    assert_eq!(
        expect_result(&mut ctl).errors,
        vec![format!("fake2[100002]: {error}")]
    );
}

#[test]
fn concurrent_or_empty_checkpoint_refused() {
    let coord = Coord::start("concurrent", false);
    let mut ctl = coord.control();
    let reply = ctl.request(&ToCoord::Checkpoint(options(""))).unwrap();
    assert_eq!(reply, FromCoord::Error("no processes to checkpoint".into()));

    let mut p = coord.process(0);
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    assert_eq!(expect_checkpoint(&mut p), 1);
    let mut other = coord.control();
    assert_eq!(status(&mut other).state, State::Checkpointing);
    let reply = other.request(&ToCoord::Checkpoint(options(""))).unwrap();
    let msg = "a checkpoint is already in progress (generation 1)";
    assert_eq!(reply, FromCoord::Error(msg.into()));
}

#[test]
fn bad_cookie_and_other_version_refused() {
    let coord = Coord::start("auth", false);
    match Connection::connect_with_cookie(&coord.addr, Role::Control, &[0u8; 32]) {
        Err(ClientError::Refused { reason, .. }) => assert_eq!(reason, "bad cookie"),
        other => panic!("expected refusal, got {other:?}"),
    }
    let mut raw = std::net::TcpStream::connect(&coord.addr).unwrap();
    let hello = Hello {
        version: 99,
        cookie: [0; 32],
        role: Role::Control,
    };
    frame::write_msg(&mut raw, &hello).unwrap();
    match frame::read_msg::<_, HelloReply>(&mut raw).unwrap() {
        HelloReply::Refused(reason) => {
            assert!(
                reason.contains("version 99")
                    && reason.contains(&format!("version {PROTOCOL_VERSION}")),
                "{reason}"
            )
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    // The coordinator is still serving.
    assert_eq!(status(&mut coord.control()).processes, 0);
}

#[test]
fn status_and_list() {
    let coord = Coord::start("status", false);
    let _p0 = coord.process(0);
    let _p1 = coord.process(1);
    let mut ctl = coord.control();
    let s = status(&mut ctl);
    assert_eq!(s.coordinator, coord.addr);
    assert_eq!(
        (s.processes, s.state, s.generation, s.interval),
        (2, State::Running, 0, 0)
    );
    assert_eq!(
        ctl.request(&ToCoord::SetInterval { seconds: 600 }).unwrap(),
        FromCoord::Ok
    );
    assert_eq!(status(&mut ctl).interval, 600);

    let FromCoord::List(list) = ctl.request(&ToCoord::List).unwrap() else {
        panic!("not a list")
    };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].process_id, 1);
    assert_eq!((list[0].virtual_pid, list[0].real_pid), (40_000, 100_000));
    assert_eq!(
        (list[0].host.as_str(), list[0].program.as_str()),
        ("hosta", "fake0")
    );
    assert_eq!((list[1].process_id, list[1].state.as_str()), (2, "running"));
}

#[test]
fn key_value_get_waits_for_put() {
    let coord = Coord::start("kv", false);
    let mut a = coord.process(0);
    let mut b = coord.process(1);
    a.send(&ToCoord::KvGet { key: "port".into() }).unwrap();
    assert_eq!(a.recv_timeout(QUIET).unwrap(), None);
    b.send(&ToCoord::KvPut {
        key: "port".into(),
        value: vec![1, 2],
    })
    .unwrap();
    let value = FromCoord::KvValue {
        key: "port".into(),
        value: vec![1, 2],
    };
    assert_eq!(a.recv().unwrap(), value);
    assert_eq!(
        b.request(&ToCoord::KvGet { key: "port".into() }).unwrap(),
        value
    );
}

#[test]
fn restart_barrier_waits_for_every_process() {
    let coord = Coord::start("restart", false);
    let mut ctl = coord.control();
    let computation = 0x1234_5678_9abc_def0;
    let begin = ToCoord::RestartBegin {
        computation,
        generation: 5,
        processes: 2,
        ckpt_dir: String::new(),
    };
    assert_eq!(ctl.request(&begin).unwrap(), FromCoord::Ok);
    assert_eq!(status(&mut ctl).state, State::Restarting);

    let from = |process_id| {
        Some(RestartedFrom {
            computation,
            generation: 5,
            process_id,
        })
    };
    let hello = |i: u32, id| ProcessHello {
        real_pid: 200_000 + i,
        virtual_pid: 40_000 + i,
        host: "hosta".into(),
        program: format!("fake{i}"),
        restarted: from(id),
        dormant: false,
    };
    let (mut a, wa) = Connection::connect(&coord.addr, Role::Process(hello(0, 7))).unwrap();
    assert_eq!(
        (wa.process_id, wa.computation, wa.generation),
        (7, computation, 5)
    );
    // The same process id twice is refused.
    let dup = Connection::connect(&coord.addr, Role::Process(hello(2, 7)));
    assert!(matches!(dup, Err(ClientError::Refused { .. })), "{dup:?}");
    let mut b = coord.process_with(1, 200_001, from(9));
    barrier(&mut a, 5, barrier::RESTORED);
    assert_eq!(a.recv_timeout(QUIET).unwrap(), None);
    barrier(&mut b, 5, barrier::RESTORED);
    expect_release(&mut a, 5, barrier::RESTORED);
    expect_release(&mut b, 5, barrier::RESTORED);

    let s = status(&mut ctl);
    assert_eq!(
        (s.state, s.computation, s.generation),
        (State::Running, computation, 5)
    );
    // New processes get ids above the restored ones; the next checkpoint is generation 6.
    let mut c = coord.process(3);
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    assert_eq!(expect_checkpoint(&mut c), 6);
    let FromCoord::List(list) = coord.control().request(&ToCoord::List).unwrap() else {
        panic!("not a list")
    };
    let ids: Vec<u64> = list.iter().map(|e| e.process_id).collect();
    assert_eq!(ids, vec![7, 9, 10]);
}

#[test]
fn exit_on_last_and_kill() {
    let coord = Coord::start("last", true);
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let _victim = coord.process_with(0, child.id(), None);
    let _other = coord.process(1);
    let mut ctl = coord.control();
    assert_eq!(ctl.request(&ToCoord::Kill).unwrap(), FromCoord::Ok);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc_sigkill())
    );
    // Every process is gone: the coordinator exits after its grace period.
    coord.join(Duration::from_secs(5));
}

fn libc_sigkill() -> i32 {
    9
}

#[test]
fn quit_stops_the_coordinator() {
    let coord = Coord::start("quit", false);
    let _p = coord.process(0);
    assert_eq!(
        coord.control().request(&ToCoord::Quit).unwrap(),
        FromCoord::Ok
    );
    coord.join(Duration::from_secs(5));
}

#[test]
fn exiting_process_is_left_out_and_restart_death_aborts() {
    let coord = Coord::start("exiting", false);
    let dir = coord.dir.to_string_lossy().into_owned();
    let mut procs: Vec<Connection> = (0..2).map(|i| coord.process(i)).collect();
    let mut leaving = coord.process(2);
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(&dir))).unwrap();
    assert_eq!(expect_checkpoint(&mut leaving), 1);
    leaving.send(&ToCoord::Exiting { status: 0 }).unwrap();
    drop(leaving);
    for p in &mut procs {
        assert_eq!(expect_checkpoint(p), 1);
        barrier(p, 1, barrier::SUSPENDED);
    }
    for p in &mut procs {
        expect_release(p, 1, barrier::SUSPENDED);
        barrier(p, 1, barrier::WRITTEN);
    }
    for (i, p) in procs.iter_mut().enumerate() {
        expect_release(p, 1, barrier::WRITTEN);
        let image = format!("{dir}/ckpt_{i}.hiber");
        p.send(&ToCoord::CheckpointDone {
            generation: 1,
            image,
            bytes: 1,
        })
        .unwrap();
    }
    let r = expect_result(&mut ctl);
    assert_eq!((r.images.len(), r.errors.len()), (2, 0));

    // A restart whose second process dies before the barrier: the first is aborted.
    drop(procs);
    let computation = status(&mut ctl).computation;
    let begin = ToCoord::RestartBegin {
        computation,
        generation: 1,
        processes: 2,
        ckpt_dir: dir,
    };
    assert_eq!(ctl.request(&begin).unwrap(), FromCoord::Ok);
    let from = |process_id| {
        Some(RestartedFrom {
            computation,
            generation: 1,
            process_id,
        })
    };
    let mut a = coord.process_with(0, 300_000, from(1));
    let b = coord.process_with(1, 300_001, from(2));
    barrier(&mut a, 1, barrier::RESTORED);
    drop(b);
    match a.recv().unwrap() {
        FromCoord::Abort {
            generation: 1,
            reason,
        } => {
            assert_eq!(reason, "fake1[300001] connection lost during the restart")
        }
        other => panic!("expected Abort, got {other:?}"),
    }
}

/// Many processes through one round (`HIBER_TEST_PROCS` overrides the count).
#[test]
fn many_processes_one_round() {
    let n: u32 = std::env::var("HIBER_TEST_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let coord = Coord::start("many", false);
    let dir = coord.dir.to_string_lossy().into_owned();
    let mut procs: Vec<Connection> = (0..n).map(|i| coord.process(i)).collect();
    let mut ctl = coord.control();
    let started = Instant::now();
    let r = full_round(&mut ctl, &mut procs, &dir);
    assert_eq!((r.images.len(), r.errors.len()), (n as usize, 0));
    eprintln!(
        "{n} processes: one checkpoint round in {:?}",
        started.elapsed()
    );
}

/// A fork child takes over its parent's spare connection: it is a process
/// once the parent's `Forked` arrives (messages it sent before are kept),
/// named after its parent, and part of a checkpoint that is stopping
/// processes. One that exec'd during the stop is asked again. The spare
/// goes through the coordinator's local socket.
#[test]
fn forked_child_takes_over_the_spare_and_exec_is_asked_again() {
    let coord = Coord::start("spare", false);
    let hello = ProcessHello {
        real_pid: 100,
        virtual_pid: 100,
        host: "hosta".into(),
        program: "parent".into(),
        restarted: None,
        dormant: false,
    };
    let (mut parent, w) = Connection::connect(&coord.addr, Role::Process(hello)).unwrap();
    let cookie = hiber_protocol::cookie::load_or_create().unwrap();
    // Through the local socket the welcome names, as the agent does.
    assert!(!w.local.is_empty(), "the coordinator has a local socket");
    let local = hiber_protocol::client::local_addr(&w.local);
    let mut spare = Connection::open_spare(&local, w.process_id, &cookie).unwrap();
    let child_id = spare.welcome().unwrap().process_id;
    assert_ne!(child_id, w.process_id);
    let mut ctl = coord.control();
    assert_eq!(status(&mut ctl).processes, 1, "a spare is no process");

    // Start a checkpoint: only the parent is asked.
    ctl.send(&ToCoord::Checkpoint(options(coord.dir.to_str().unwrap())))
        .unwrap();
    let generation = expect_checkpoint(&mut parent);
    // The child execs before the parent's `Forked` is read...
    spare
        .send(&ToCoord::Execd {
            program: "kid".into(),
        })
        .unwrap();
    std::thread::sleep(QUIET);
    // ...and is a member once it is: asked to checkpoint (and asked again
    // for its early `Execd`).
    parent
        .send(&ToCoord::Forked {
            spare: child_id,
            real_pid: 101,
            virtual_pid: 101,
        })
        .unwrap();
    assert_eq!(expect_checkpoint(&mut spare), generation);
    assert_eq!(expect_checkpoint(&mut spare), generation);
    // A forked (or exec'd) process may not have its checkpoint thread yet:
    // it is asked again every 20 ms until it answers.
    let mut asked = 0;
    while let Some(m) = spare.recv_timeout(Duration::from_millis(100)).unwrap() {
        assert_eq!(
            m,
            FromCoord::Checkpoint {
                generation,
                options: options(coord.dir.to_str().unwrap())
            }
        );
        asked += 1;
        if asked == 3 {
            break;
        }
    }
    assert_eq!(asked, 3, "asked again while dormant");
    let list = match ctl.request(&ToCoord::List).unwrap() {
        FromCoord::List(l) => l,
        other => panic!("expected List, got {other:?}"),
    };
    let kid = list.iter().find(|e| e.process_id == child_id).unwrap();
    assert_eq!((kid.program.as_str(), kid.real_pid), ("kid", 101));
    assert_eq!(kid.host, "hosta");

    // The suspended barrier waits for the child too.
    barrier(&mut parent, generation, barrier::SUSPENDED);
    assert_eq!(parent.recv_timeout(QUIET).unwrap(), None);
    barrier(&mut spare, generation, barrier::SUSPENDED);
    expect_release(&mut parent, generation, barrier::SUSPENDED);
    // Repeats sent before its barrier was read come first.
    loop {
        match spare.recv().unwrap() {
            FromCoord::Checkpoint { generation: g, .. } if g == generation => {}
            m => {
                let want = FromCoord::Release {
                    generation,
                    name: barrier::SUSPENDED.into(),
                };
                assert_eq!(m, want);
                break;
            }
        }
    }
    // After suspension an exec cannot happen; an `Execd` now asks nothing.
    for p in [&mut parent, &mut spare] {
        barrier(p, generation, barrier::WRITTEN);
    }
    for p in [&mut parent, &mut spare] {
        expect_release(p, generation, barrier::WRITTEN);
    }
    for (p, name) in [(&mut parent, "parent"), (&mut spare, "kid")] {
        p.send(&ToCoord::CheckpointDone {
            generation,
            image: format!("{}/ckpt_{name}.hiber", coord.dir.display()),
            bytes: 4096,
        })
        .unwrap();
    }
    let r = expect_result(&mut ctl);
    assert_eq!(r.images.len(), 2, "{r:?}");

    // A spare that closes unclaimed (fork failed, child gone) is no loss,
    // and a late `Forked` for it is ignored.
    let mut spare2 = Connection::open_spare(&coord.addr, w.process_id, &cookie).unwrap();
    let id2 = spare2.welcome().unwrap().process_id;
    drop(spare2);
    std::thread::sleep(QUIET);
    parent
        .send(&ToCoord::Forked {
            spare: id2,
            real_pid: 102,
            virtual_pid: 102,
        })
        .unwrap();
    assert_eq!(status(&mut ctl).processes, 2);
}

/// Processes that list TCP sockets before `suspended` get a `TcpPlan`
/// just before the release: a loopback pair on one host is internal (and
/// drained, as one end has unacknowledged bytes); the same addresses on
/// another host are not; a process that listed nothing gets no plan.
#[test]
fn tcp_ends_are_paired_before_the_release() {
    use hiber_protocol::{TcpEnd, TcpRole};
    let coord = Coord::start("tcpplan", false);
    let dir = coord.dir.to_string_lossy().into_owned();
    // 0 and 2 run on hosta, 1 and 3 on hostb; 3 lists nothing.
    let mut procs: Vec<Connection> = (0..4).map(|i| coord.process(i)).collect();
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(&dir))).unwrap();
    let generation = expect_checkpoint(&mut procs[0]);
    for p in &mut procs[1..] {
        assert_eq!(expect_checkpoint(p), generation);
    }
    let end = |inode, local: &str, remote: &str, unsent| TcpEnd {
        inode,
        local: local.into(),
        remote: remote.into(),
        established: true,
        unsent,
    };
    let lists = [
        vec![end(10, "127.0.0.1:5000", "127.0.0.1:40000", 3)],
        vec![end(11, "127.0.0.1:40000", "127.0.0.1:5000", 0)],
        vec![end(12, "127.0.0.1:40000", "127.0.0.1:5000", 0)],
    ];
    for (p, ends) in procs.iter_mut().zip(lists) {
        p.send(&ToCoord::TcpEnds { generation, ends }).unwrap();
    }
    for p in procs.iter_mut() {
        barrier(p, generation, barrier::SUSPENDED);
    }
    let mut marker0 = Vec::new();
    for (i, p) in procs.iter_mut().enumerate().take(3) {
        let Some(FromCoord::TcpPlan {
            generation: g,
            marker,
            ends,
        }) = p.recv_timeout(Duration::from_secs(5)).unwrap()
        else {
            panic!("process {i}: no plan");
        };
        assert_eq!(g, generation);
        assert_eq!(marker.len(), 32);
        if i == 0 {
            marker0 = marker.clone();
        }
        assert_eq!(marker, marker0, "one marker for everyone");
        let (inode, internal) = [(10, true), (11, false), (12, true)][i];
        assert_eq!(
            ends,
            vec![TcpRole {
                inode,
                internal,
                leader: true,
                drain: internal,
            }],
            "process {i}"
        );
    }
    for p in procs.iter_mut() {
        expect_release(p, generation, barrier::SUSPENDED);
    }
    for p in procs.iter_mut() {
        barrier(p, generation, barrier::WRITTEN);
    }
    for (i, p) in procs.iter_mut().enumerate() {
        expect_release(p, generation, barrier::WRITTEN);
        p.send(&ToCoord::CheckpointDone {
            generation,
            image: format!("{dir}/ckpt_fake{i}_{i}.hiber"),
            bytes: 4096,
        })
        .unwrap();
    }
    assert!(expect_result(&mut ctl).errors.is_empty());
}
