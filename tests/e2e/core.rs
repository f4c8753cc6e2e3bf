//! Core single-process checkpoint/restart (issue: core). Every test kills
//! the program and its coordinator with SIGKILL, restarts from the image
//! files in fresh processes and compares with an uninterrupted run.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::Duration;

use hiber_e2e::{Env, Tracked, assert_continuation, kill_restart_cycle};

const T: Duration = Duration::from_secs(60);

/// The uninterrupted reference run of `memory`.
fn reference(env: &Env, prog: &std::path::Path, steps: &str) -> (String, Vec<u8>) {
    let data = env.dir.join("ref.data");
    let out = std::process::Command::new(prog)
        .current_dir(&env.dir)
        .args([steps, "0"])
        .arg(&data)
        .tracked_output()
        .unwrap();
    assert!(out.status.success());
    (
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read(&data).unwrap(),
    )
}

/// launch → wait → checkpoint → SIGKILL all → restart, `cycles` times;
/// each restart is checkpointed and killed again before the next.
fn kill_restart_cycles(name: &str, flags: &[&str], cycles: usize) {
    let env = Env::new(name);
    let prog = env.compile("memory", &[]);
    let (full, ref_data) = reference(&env, &prog, "60");
    let data = env.dir.join("run.data");
    let data_s = data.to_str().unwrap();

    let mut child = env.launch(flags, &prog, &["60", "40", data_s], "run0.out");
    env.wait_lines("run0.out", 8, T);
    let mut images: Vec<PathBuf> = env.checkpoint(&[]);
    assert_eq!(images.len(), 1, "one process, one image: {images:?}");
    env.wait_lines("run0.out", env.read("run0.out").lines().count() + 3, T);
    env.kill_all(&mut [&mut child]);
    let mut before = env.read("run0.out");
    let mut outputs = Vec::new();

    for cycle in 1..=cycles {
        let out = format!("run{cycle}.out");
        let mut r = env.restart(&images, &out);
        if cycle < cycles {
            // Checkpoint the restarted process again, then kill it too.
            env.wait_lines(&out, 4, T);
            images = env.checkpoint(&[]);
            env.wait_lines(&out, env.read(&out).lines().count() + 2, T);
            env.kill_all(&mut [&mut r]);
            outputs.push((before.clone(), env.read(&out)));
            before = String::new();
        } else {
            let st = env.wait(&mut r, T);
            assert!(st.success(), "restarted program failed: {st:?}");
            outputs.push((before.clone(), env.read(&out)));
        }
    }
    // Every restarted run continues exactly where its image was taken.
    let n = outputs.len();
    for (i, (before, restarted)) in outputs.iter().enumerate() {
        assert_continuation(&full, before, restarted, i + 1 == n);
    }
    assert!(
        outputs[n - 1].1.contains("done file"),
        "program did not finish"
    );
    assert_eq!(
        std::fs::read(&data).unwrap(),
        ref_data,
        "the file the program wrote differs"
    );
}

#[test]
fn memory_kill_restart_compressed() {
    kill_restart_cycles("mem-z", &[], 2);
}

#[test]
fn memory_kill_restart_uncompressed() {
    kill_restart_cycles("mem-raw", &["--no-compress"], 2);
}

#[test]
fn checkpoint_then_keep_running() {
    let env = Env::new("keep");
    let prog = env.compile("memory", &[]);
    let (full, ref_data) = reference(&env, &prog, "40");
    let data = env.dir.join("run.data");
    let mut child = env.launch(&[], &prog, &["40", "20", data.to_str().unwrap()], "run.out");
    env.wait_lines("run.out", 5, T);
    env.checkpoint(&[]);
    env.checkpoint(&["--no-compress"]);
    let st = env.wait(&mut child, T);
    assert!(st.success());
    assert_eq!(env.read("run.out"), full);
    assert_eq!(std::fs::read(&data).unwrap(), ref_data);
}

/// One launch → checkpoint → SIGKILL all → restart cycle of a program
/// taking `STEPS DELAY_MS`, compared with an uninterrupted run.
fn simple_cycle(name: &str, program: &str, steps: &str) {
    let env = Env::new(name);
    let prog = env.compile(program, &[]);
    let out = std::process::Command::new(&prog)
        .current_dir(&env.dir)
        .args([steps, "0"])
        .tracked_output()
        .unwrap();
    assert!(out.status.success());
    let full = String::from_utf8(out.stdout).unwrap();
    kill_restart_cycle(&env, &full, &[], &prog, &[steps, "40"]);
}

#[test]
fn program_blocking_and_ignoring_all_signals() {
    simple_cycle("sigblock", "sigblock", "30");
}

/// After a restart from a raw image, memory is mapped from the image file.
/// If that file is gone before the next checkpoint (deleted, or replaced),
/// pages the program has not touched since must still be saved.
#[test]
fn raw_image_deleted_before_next_checkpoint() {
    let env = Env::new("rawdel");
    let prog = env.compile("memory", &[]);
    let (full, _) = reference(&env, &prog, "50");
    let data = env.dir.join("run.data");
    let mut c = env.launch(
        &["--no-compress"],
        &prog,
        &["50", "40", data.to_str().unwrap()],
        "run0.out",
    );
    env.wait_lines("run0.out", 5, T);
    let images = env.checkpoint(&[]);
    env.kill_all(&mut [&mut c]);
    // Restart from a copy, so the original path can go away.
    let copy = env.dir.join("gen1.hiber");
    std::fs::rename(&images[0], &copy).unwrap();
    let mut r = env.restart(std::slice::from_ref(&copy), "run1.out");
    env.wait_lines("run1.out", 3, T);
    std::fs::remove_file(&copy).unwrap();
    let images2 = env.checkpoint(&[]);
    env.kill_all(&mut [&mut r]);
    let mut r2 = env.restart(&images2, "run2.out");
    let st = env.wait(&mut r2, T);
    assert!(st.success());
    let out = env.read("run2.out");
    assert_continuation(&full, "", &out, true);
    assert!(out.contains("done cold"), "{out}");
}

/// (start, end, kind, perms) of every area of an image, from `hiber inspect --json`.
fn areas(env: &Env, image: &std::path::Path) -> Vec<(u64, u64, String, String)> {
    let out = env.run(&["inspect", "--json", image.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = |s: &serde_json::Value| {
        u64::from_str_radix(s.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let text = |s: &serde_json::Value| s.as_str().unwrap().to_string();
    v["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                hex(&a["start"]),
                hex(&a["end"]),
                text(&a["kind"]),
                text(&a["perms"]),
            )
        })
        .collect()
}

/// The restorer leaves nothing behind. Its copy of itself lives in an
/// anonymous read-write-execute mapping that no ordinary program has: an
/// image taken after a restart must hold no such area that the image it
/// was restarted from did not.
#[test]
fn restart_leaves_no_restorer_memory() {
    for flags in [&[][..], &["--no-compress"][..]] {
        let env = Env::new("leftovers");
        let prog = env.compile("memory", &[]);
        let data = env.dir.join("run.data");
        let mut c = env.launch(
            flags,
            &prog,
            &["100", "30", data.to_str().unwrap()],
            "run0.out",
        );
        env.wait_lines("run0.out", 3, T);
        let gen1 = env.checkpoint(&[]);
        let before = areas(&env, &gen1[0]);
        env.kill_all(&mut [&mut c]);
        let kept = env.dir.join("gen1.hiber");
        std::fs::copy(&gen1[0], &kept).unwrap();
        let mut r = env.restart(std::slice::from_ref(&kept), "run1.out");
        env.wait_lines("run1.out", 2, T);
        let gen2 = env.checkpoint(&[]);
        env.kill_all(&mut [&mut r]);
        let after = areas(&env, &gen2[0]);
        assert!(
            after.len() >= before.len() / 2,
            "suspiciously few areas after the restart"
        );
        for a in &after {
            let rwx_anon = a.2 == "anon" && a.3.starts_with("rwx");
            assert!(
                !rwx_anon || before.contains(a),
                "area {:#x}-{:#x} {} ({flags:?}) is new after the restart: a restorer leftover",
                a.0,
                a.1,
                a.3
            );
        }
    }
}
