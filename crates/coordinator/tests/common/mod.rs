//! Shared by the coordinator's integration tests: a real coordinator (on
//! 127.0.0.1, port 0, in a thread) and helpers for fake processes and
//! control clients built on `hiber_protocol::client`.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hiber_coordinator::{Config, Result};
use hiber_protocol::client::Connection;
use hiber_protocol::{
    CheckpointOptions, CheckpointResult, FromCoord, ProcessHello, RestartedFrom, Role, ToCoord,
    barrier,
};

pub const QUIET: Duration = Duration::from_millis(150);

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hiber-coord-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Kept across runs: one cookie per target directory (and so per user).
        let cookie = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("coordinator-test-cookie");
        // Runs once, before any test of this binary reads the
        // environment (every test calls `setup` first and waits here).
        // SAFETY: see just above.
        unsafe { std::env::set_var("HIBER_COOKIE", &cookie) };
    });
}

pub struct Coord {
    pub addr: String,
    thread: Option<JoinHandle<Result<()>>>,
    pub dir: PathBuf,
}

impl Coord {
    pub fn start(name: &str, exit_on_last: bool) -> Coord {
        setup();
        let dir = temp_dir(name);
        let config = Config {
            bind: "127.0.0.1".into(),
            port: 0,
            interval: 0,
            exit_on_last,
            ckpt_dir: dir.clone(),
            hiber_exe: PathBuf::from("/usr/bin/hiber"),
        };
        let coord = hiber_coordinator::bind(config).unwrap();
        let addr = coord.local_addr().to_string();
        let thread = Some(std::thread::spawn(move || coord.run()));
        Coord { addr, thread, dir }
    }

    pub fn control(&self) -> Connection {
        Connection::connect(&self.addr, Role::Control).unwrap().0
    }

    pub fn process(&self, i: u32) -> Connection {
        self.process_with(i, 100_000 + i, None)
    }

    pub fn process_with(
        &self,
        i: u32,
        real_pid: u32,
        restarted: Option<RestartedFrom>,
    ) -> Connection {
        let hello = ProcessHello {
            real_pid,
            virtual_pid: 40_000 + i,
            host: if i.is_multiple_of(2) {
                "hosta"
            } else {
                "hostb"
            }
            .into(),
            program: format!("fake{i}"),
            restarted,
            dormant: false,
        };
        Connection::connect(&self.addr, Role::Process(hello))
            .unwrap()
            .0
    }

    /// Waits for the coordinator thread to end on its own.
    pub fn join(mut self, within: Duration) {
        let t = self.thread.take().unwrap();
        let deadline = Instant::now() + within;
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "coordinator did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        t.join().unwrap().unwrap();
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Ok((mut c, _)) = Connection::connect(&self.addr, Role::Control) {
                let _ = c.request(&ToCoord::Quit);
            }
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn options(dir: &str) -> CheckpointOptions {
    CheckpointOptions {
        dir: dir.into(),
        compress: None,
        sync: None,
    }
}

pub fn expect_checkpoint(p: &mut Connection) -> u64 {
    match p.recv().unwrap() {
        FromCoord::Checkpoint { generation, .. } => generation,
        other => panic!("expected Checkpoint, got {other:?}"),
    }
}

pub fn expect_release(p: &mut Connection, gen_: u64, name: &str) {
    assert_eq!(
        p.recv().unwrap(),
        FromCoord::Release {
            generation: gen_,
            name: name.into()
        }
    );
}

pub fn barrier(p: &mut Connection, generation: u64, name: &str) {
    p.send(&ToCoord::Barrier {
        generation,
        name: name.into(),
    })
    .unwrap();
}

pub fn expect_result(c: &mut Connection) -> CheckpointResult {
    match c.recv().unwrap() {
        FromCoord::CheckpointResult(r) => r,
        other => panic!("expected CheckpointResult, got {other:?}"),
    }
}

pub fn status(c: &mut Connection) -> hiber_protocol::Status {
    match c.request(&ToCoord::Status).unwrap() {
        FromCoord::Status(s) => s,
        other => panic!("expected Status, got {other:?}"),
    }
}

/// Runs one complete checkpoint of `procs`, checking each barrier waits for all.
pub fn full_round(ctl: &mut Connection, procs: &mut [Connection], dir: &str) -> CheckpointResult {
    ctl.send(&ToCoord::Checkpoint(options(dir))).unwrap();
    let generation = expect_checkpoint(&mut procs[0]);
    for p in &mut procs[1..] {
        assert_eq!(expect_checkpoint(p), generation);
    }
    for name in [barrier::SUSPENDED, barrier::WRITTEN] {
        let (last, rest) = procs.split_last_mut().unwrap();
        for p in rest.iter_mut() {
            barrier(p, generation, name);
        }
        assert_eq!(
            rest[0].recv_timeout(QUIET).unwrap(),
            None,
            "released {name} too early"
        );
        barrier(last, generation, name);
        for p in procs.iter_mut() {
            expect_release(p, generation, name);
        }
    }
    for (i, p) in procs.iter_mut().enumerate().rev() {
        let image = format!("{dir}/ckpt_fake{i}_{i}.hiber");
        p.send(&ToCoord::CheckpointDone {
            generation,
            image,
            bytes: 4096,
        })
        .unwrap();
    }
    expect_result(ctl)
}
