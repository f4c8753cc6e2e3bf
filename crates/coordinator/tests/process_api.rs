//! What the C API (`include/hiber.h`) needs from the coordinator, driven
//! through fake processes: user barriers (`hiber_barrier`), checkpoints a
//! process requests on its own connection (`hiber_checkpoint`), `Status`
//! (`hiber_coordinator_status`) and the key-value store (`hiber_kv_*`).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hiber_protocol::client::Connection;
use hiber_protocol::{CheckpointResult, FromCoord, State, ToCoord, barrier};

fn user_release(name: &str) -> FromCoord {
    FromCoord::Release {
        generation: 0,
        name: name.into(),
    }
}

fn expect_quiet(p: &mut Connection, what: &str) {
    assert_eq!(p.recv_timeout(QUIET).unwrap(), None, "{what}");
}

/// Walks the members of checkpoint `generation` (already received
/// `Checkpoint`) through both barriers and `CheckpointDone`.
fn finish_round(procs: &mut [&mut Connection], generation: u64, dir: &str) {
    for name in [barrier::SUSPENDED, barrier::WRITTEN] {
        for p in procs.iter_mut() {
            barrier(p, generation, name);
        }
        for p in procs.iter_mut() {
            expect_release(p, generation, name);
        }
    }
    for (i, p) in procs.iter_mut().enumerate() {
        p.send(&ToCoord::CheckpointDone {
            generation,
            image: format!("{dir}/ckpt_{i}.hiber"),
            bytes: 1,
        })
        .unwrap();
    }
}

#[test]
fn user_barrier_waits_for_every_process_and_is_reusable() {
    let coord = Coord::start("ub-all", false);
    let mut procs: Vec<Connection> = (0..3).map(|i| coord.process(i)).collect();
    for round in 0..2 {
        // The generation an agent sends is its own; it does not matter.
        barrier(&mut procs[0], 0, "plugin-sync");
        barrier(&mut procs[1], 7, "plugin-sync");
        expect_quiet(&mut procs[0], "released before the third process arrived");
        expect_quiet(&mut procs[1], "released before the third process arrived");
        // A second arrival of the same process counts once.
        barrier(&mut procs[1], 7, "plugin-sync");
        expect_quiet(&mut procs[0], "a repeated arrival was counted twice");
        barrier(&mut procs[2], round, "plugin-sync");
        for p in &mut procs {
            assert_eq!(p.recv().unwrap(), user_release("plugin-sync"));
        }
        for p in &mut procs {
            expect_quiet(p, "released twice");
        }
    }
}

#[test]
fn user_barriers_with_different_names_are_independent() {
    let coord = Coord::start("ub-names", false);
    let mut a = coord.process(0);
    let mut b = coord.process(1);
    barrier(&mut a, 0, "one");
    barrier(&mut b, 0, "two");
    expect_quiet(&mut a, "\"one\" released without b");
    barrier(&mut a, 0, "two");
    assert_eq!(b.recv().unwrap(), user_release("two"));
    assert_eq!(a.recv().unwrap(), user_release("two"));
    barrier(&mut b, 0, "one");
    assert_eq!(a.recv().unwrap(), user_release("one"));
    assert_eq!(b.recv().unwrap(), user_release("one"));
}

#[test]
fn user_barrier_recounts_when_a_process_dies_or_exits() {
    let coord = Coord::start("ub-die", false);
    let mut procs: Vec<Connection> = (0..4).map(|i| coord.process(i)).collect();
    barrier(&mut procs[0], 0, "b");
    barrier(&mut procs[1], 0, "b");
    expect_quiet(&mut procs[0], "released with two processes missing");
    drop(procs.remove(3)); // dies without arriving
    expect_quiet(&mut procs[0], "released with one process still missing");
    // Announcing its exit counts as leaving too.
    procs[2].send(&ToCoord::Exiting { status: 0 }).unwrap();
    assert_eq!(procs[0].recv().unwrap(), user_release("b"));
    assert_eq!(procs[1].recv().unwrap(), user_release("b"));
    expect_quiet(&mut procs[2], "the exiting process was released");

    // The exiting process is no participant of later barriers either.
    barrier(&mut procs[0], 0, "c");
    barrier(&mut procs[1], 0, "c");
    assert_eq!(procs[0].recv().unwrap(), user_release("c"));
    assert_eq!(procs[1].recv().unwrap(), user_release("c"));

    // A process that arrived and then died is simply forgotten.
    barrier(&mut procs[0], 0, "d");
    drop(procs.remove(0));
    barrier(&mut procs[0], 0, "d");
    assert_eq!(procs[0].recv().unwrap(), user_release("d"));
}

#[test]
fn user_barrier_from_a_control_client_is_refused() {
    let coord = Coord::start("ub-ctl", false);
    let _p = coord.process(0);
    let mut ctl = coord.control();
    let reply = ctl
        .request(&ToCoord::Barrier {
            generation: 0,
            name: "x".into(),
        })
        .unwrap();
    assert_eq!(
        reply,
        FromCoord::Error("Barrier is only accepted from a process".into())
    );
}

/// PRE_SUSPEND: the members of a running checkpoint synchronize; the
/// barrier does not disturb the checkpoint, and a process that joined after
/// the checkpoint started (it gets no events for it) is not waited for.
#[test]
fn user_barrier_inside_a_checkpoint_waits_for_its_members_only() {
    let coord = Coord::start("ub-ckpt", false);
    let dir = coord.dir.to_string_lossy().into_owned();
    let mut a = coord.process(0);
    let mut b = coord.process(1);
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(&dir))).unwrap();
    assert_eq!(expect_checkpoint(&mut a), 1);
    assert_eq!(expect_checkpoint(&mut b), 1);
    barrier(&mut a, 1, "pre-suspend");
    expect_quiet(&mut a, "released before b arrived");
    barrier(&mut b, 1, "pre-suspend");
    assert_eq!(a.recv().unwrap(), user_release("pre-suspend"));
    assert_eq!(b.recv().unwrap(), user_release("pre-suspend"));
    for p in [&mut a, &mut b] {
        barrier(p, 1, barrier::SUSPENDED);
    }
    for p in [&mut a, &mut b] {
        expect_release(p, 1, barrier::SUSPENDED);
    }
    // Every member has stopped: a process joining now is not part of it.
    let mut late = coord.process(2);
    assert_eq!(status(&mut ctl).state, State::Checkpointing);
    for p in [&mut a, &mut b] {
        barrier(p, 1, barrier::WRITTEN);
    }
    for p in [&mut a, &mut b] {
        expect_release(p, 1, barrier::WRITTEN);
    }
    for (i, p) in [&mut a, &mut b].into_iter().enumerate() {
        p.send(&ToCoord::CheckpointDone {
            generation: 1,
            image: format!("{dir}/ckpt_{i}.hiber"),
            bytes: 1,
        })
        .unwrap();
    }
    let r = expect_result(&mut ctl);
    assert_eq!((r.generation, r.errors.len(), r.images.len()), (1, 0, 2));
    expect_quiet(&mut late, "the late process saw the checkpoint");

    // RESUME: after the checkpoint, every connected process takes part.
    barrier(&mut a, 1, "resume");
    barrier(&mut b, 1, "resume");
    expect_quiet(&mut a, "released without the third process");
    barrier(&mut late, 0, "resume");
    for p in [&mut a, &mut b, &mut late] {
        assert_eq!(p.recv().unwrap(), user_release("resume"));
    }
}

/// A member dies (exits, execs, crashes) before it stopped, while the
/// others wait in a PRE_SUSPEND barrier: the barrier is recounted and
/// releases them, and the checkpoint goes on without it (the process no
/// longer exists at the checkpoint's moment).
#[test]
fn member_death_before_suspending_is_left_out() {
    let coord = Coord::start("ub-ckpt-die", false);
    let mut procs: Vec<Connection> = (0..3).map(|i| coord.process(i)).collect();
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    for p in &mut procs {
        assert_eq!(expect_checkpoint(p), 1);
    }
    barrier(&mut procs[0], 1, "pre");
    barrier(&mut procs[1], 1, "pre");
    expect_quiet(&mut procs[0], "released before the third member arrived");
    drop(procs.remove(2));
    for p in &mut procs {
        assert_eq!(p.recv().unwrap(), user_release("pre"));
    }
    let (a, b) = procs.split_at_mut(1);
    finish_round(&mut [&mut a[0], &mut b[0]], 1, "/tmp");
    let r = expect_result(&mut ctl);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.images.len(), 2);
}

/// A process that joins while the others are being stopped (a child forked
/// by a member) is told to checkpoint too, and the generation waits for it.
#[test]
fn process_joining_a_running_checkpoint_takes_part() {
    let coord = Coord::start("join-ckpt", false);
    let mut a = coord.process(0);
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    assert_eq!(expect_checkpoint(&mut a), 1);
    let mut child = coord.process(1);
    assert_eq!(expect_checkpoint(&mut child), 1);
    barrier(&mut a, 1, barrier::SUSPENDED);
    expect_quiet(&mut a, "released before the child stopped");
    finish_round_from_suspended(&mut a, &mut child);
    let r = expect_result(&mut ctl);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.images.len(), 2);
}

fn finish_round_from_suspended(a: &mut Connection, child: &mut Connection) {
    barrier(child, 1, barrier::SUSPENDED);
    for p in [&mut *a, &mut *child] {
        expect_release(p, 1, barrier::SUSPENDED);
    }
    for p in [&mut *a, &mut *child] {
        barrier(p, 1, barrier::WRITTEN);
    }
    for p in [&mut *a, &mut *child] {
        expect_release(p, 1, barrier::WRITTEN);
    }
    for (i, p) in [a, child].into_iter().enumerate() {
        p.send(&ToCoord::CheckpointDone {
            generation: 1,
            image: format!("/tmp/ckpt_{i}.hiber"),
            bytes: 1,
        })
        .unwrap();
    }
}

/// A member reports `CheckpointFailed` while the others wait: it has
/// resumed and gets no more events, so they are released, then aborted.
#[test]
fn member_failure_in_a_user_barrier_releases_then_aborts() {
    let coord = Coord::start("ub-ckpt-fail", false);
    let mut procs: Vec<Connection> = (0..3).map(|i| coord.process(i)).collect();
    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    for p in &mut procs {
        assert_eq!(expect_checkpoint(p), 1);
    }
    barrier(&mut procs[0], 1, "pre");
    barrier(&mut procs[1], 1, "pre");
    procs[2]
        .send(&ToCoord::CheckpointFailed {
            generation: 1,
            error: "plugin refused".into(),
        })
        .unwrap();
    for p in &mut procs[..2] {
        assert_eq!(p.recv().unwrap(), user_release("pre"));
        assert!(matches!(
            p.recv().unwrap(),
            FromCoord::Abort { generation: 1, .. }
        ));
    }
    expect_quiet(
        &mut procs[2],
        "the failed process got a release or an abort",
    );
    assert_eq!(
        expect_result(&mut ctl).errors,
        vec!["fake2[100002]: plugin refused".to_string()]
    );
    // The culprit still takes part in barriers outside that checkpoint.
    barrier(&mut procs[0], 1, "later");
    barrier(&mut procs[1], 1, "later");
    expect_quiet(&mut procs[0], "released without the third process");
    barrier(&mut procs[2], 1, "later");
    for p in &mut procs {
        assert_eq!(p.recv().unwrap(), user_release("later"));
    }
}

/// `hiber_checkpoint()` on the process's own connection: it receives the
/// checkpoint's messages in their natural order, then the result.
#[test]
fn process_requests_a_checkpoint_on_its_own_connection() {
    let coord = Coord::start("self-ckpt", false);
    let dir = coord.dir.to_string_lossy().into_owned();
    let mut a = coord.process(0);
    let mut b = coord.process(1);
    for generation in 1..=2 {
        a.send(&ToCoord::Checkpoint(options(&dir))).unwrap();
        assert_eq!(expect_checkpoint(&mut a), generation);
        assert_eq!(expect_checkpoint(&mut b), generation);
        finish_round(&mut [&mut a, &mut b], generation, &dir);
        let r: CheckpointResult = expect_result(&mut a);
        assert_eq!((r.generation, r.errors.len()), (generation, 0));
        assert_eq!(
            r.images,
            vec![format!("{dir}/ckpt_0.hiber"), format!("{dir}/ckpt_1.hiber")]
        );
        assert!(r.restart_script.is_some());
        expect_quiet(&mut a, "more than one result");
        expect_quiet(&mut b, "the other member got the result");
    }

    // A second request during a checkpoint is refused on the requester's
    // connection, after the `Checkpoint` it was sent behind.
    b.send(&ToCoord::Checkpoint(options(&dir))).unwrap();
    assert_eq!(expect_checkpoint(&mut b), 3);
    assert_eq!(expect_checkpoint(&mut a), 3);
    a.send(&ToCoord::Checkpoint(options(&dir))).unwrap();
    assert_eq!(
        a.recv().unwrap(),
        FromCoord::Error("a checkpoint is already in progress (generation 3)".into())
    );
    // The requester itself fails: it is not aborted, it gets the result.
    b.send(&ToCoord::CheckpointFailed {
        generation: 3,
        error: "disk full".into(),
    })
    .unwrap();
    assert!(matches!(
        a.recv().unwrap(),
        FromCoord::Abort { generation: 3, .. }
    ));
    let r = expect_result(&mut b);
    assert_eq!(r.errors, vec!["fake1[100001]: disk full".to_string()]);
    assert_eq!(status(&mut a).generation, 2);
}

/// The requesting process dies before it stopped: it is left out, and the
/// checkpoint of the others completes (nobody is left to read the result).
#[test]
fn requesting_process_dying_is_left_out() {
    let coord = Coord::start("self-ckpt-die", false);
    let mut a = coord.process(0);
    let mut b = coord.process(1);
    a.send(&ToCoord::Checkpoint(options(""))).unwrap();
    assert_eq!(expect_checkpoint(&mut b), 1);
    drop(a);
    finish_round(&mut [&mut b], 1, "/tmp");
    let s = status(&mut b);
    assert_eq!((s.processes, s.state, s.generation), (1, State::Running, 1));
}

#[test]
fn status_from_a_process() {
    let coord = Coord::start("proc-status", false);
    let mut a = coord.process(0);
    let _b = coord.process(1);
    let s = status(&mut a);
    assert_eq!(s.coordinator, coord.addr);
    assert_eq!(
        (s.processes, s.state, s.generation, s.interval),
        (2, State::Running, 0, 0)
    );
}

/// `hiber_kv_get` from a process waits until the key is put, also when the
/// checkpoint's own messages arrive on the same connection meanwhile.
#[test]
fn key_value_get_from_processes_waits_for_the_put() {
    let coord = Coord::start("proc-kv", false);
    let mut a = coord.process(0);
    let mut b = coord.process(1);
    let mut c = coord.process(2);
    a.send(&ToCoord::KvGet { key: "k".into() }).unwrap();
    b.send(&ToCoord::KvGet { key: "k".into() }).unwrap();
    let mut doomed = coord.process(3);
    doomed.send(&ToCoord::KvGet { key: "k".into() }).unwrap();
    drop(doomed); // a waiter that leaves is forgotten
    expect_quiet(&mut a, "answered before the put");

    let mut ctl = coord.control();
    ctl.send(&ToCoord::Checkpoint(options(""))).unwrap();
    assert_eq!(expect_checkpoint(&mut a), 1);
    assert_eq!(expect_checkpoint(&mut b), 1);
    assert_eq!(expect_checkpoint(&mut c), 1);
    c.send(&ToCoord::KvPut {
        key: "k".into(),
        value: b"v1".to_vec(),
    })
    .unwrap();
    let v1 = FromCoord::KvValue {
        key: "k".into(),
        value: b"v1".to_vec(),
    };
    assert_eq!(a.recv().unwrap(), v1);
    assert_eq!(b.recv().unwrap(), v1);
    // A later put replaces the value; a get of an existing key is immediate.
    c.send(&ToCoord::KvPut {
        key: "k".into(),
        value: b"v2".to_vec(),
    })
    .unwrap();
    let reply = a.request(&ToCoord::KvGet { key: "k".into() }).unwrap();
    assert_eq!(
        reply,
        FromCoord::KvValue {
            key: "k".into(),
            value: b"v2".to_vec()
        }
    );
}
