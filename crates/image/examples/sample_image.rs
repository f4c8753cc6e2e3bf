//! Writes a small sample image of this very process (its heap-allocated
//! buffer, a fake file-backed area, metadata), for trying `hiber inspect`
//! and for tests of tools that read images.
//!
//! `cargo run -p hiber-image --example sample_image -- OUT.hiber [--raw]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;

use hiber_image::format::{AreaKind, area_flags, prot};
use hiber_image::{
    AreaDesc, FdKind, FdMeta, Identity, ProcessMeta, Scratch, ThreadMeta, WriteOptions, Writer,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: sample_image OUT.hiber [--raw]");
    let raw = args.next().as_deref() == Some("--raw");
    let opts = WriteOptions {
        compress_level: if raw { None } else { Some(1) },
        ..WriteOptions::default()
    };
    let mut buf = vec![0u8; 40 << 12];
    let off = buf.as_ptr().align_offset(4096);
    let mem = &mut buf[off..off + (32 << 12)];
    for (i, b) in mem.iter_mut().enumerate() {
        *b = (i / 4096) as u8 ^ (i as u8 & 0x0f);
    }
    let start = mem.as_ptr() as u64;
    let anon = AreaDesc {
        start,
        end: start + mem.len() as u64,
        prot: prot::READ | prot::WRITE,
        flags: area_flags::PRIVATE | area_flags::ANONYMOUS,
        kind: AreaKind::Heap,
        file_offset: 0,
        dev: 0,
        inode: 0,
        path: "",
    };
    let lib = AreaDesc {
        start: anon.end + (1 << 20),
        end: anon.end + (1 << 20) + (16 << 12),
        prot: prot::READ | prot::EXEC,
        flags: area_flags::PRIVATE,
        kind: AreaKind::File,
        file_offset: 0x1000,
        dev: 0x803,
        inode: 1234,
        path: "/usr/lib/x86_64-linux-gnu/libc.so.6",
    };
    let id = Identity {
        computation: 0x1234_5678,
        generation: 1,
        process_id: 1,
        virtual_pid: std::process::id(),
        real_pid: std::process::id(),
        created_unix_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        program: "sample".into(),
        hostname: "localhost".into(),
        kernel_release: "6.8.0".into(),
        glibc_version: "2.39".into(),
        ..Identity::default()
    };
    let mut scratch = Scratch::new(&opts).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&out)
        .unwrap();
    let mut w = Writer::new(file, &id, &opts, &mut scratch).unwrap();
    w.add_process(&ProcessMeta {
        program: "sample".into(),
        argv: vec!["sample".into(), "--demo".into()],
        exe: "/usr/bin/sample".into(),
        cwd: "/".into(),
        ..ProcessMeta::default()
    })
    .unwrap();
    w.add_threads(&[ThreadMeta {
        tid: std::process::id(),
        is_main: true,
        name: "sample".into(),
        ..ThreadMeta::default()
    }])
    .unwrap();
    w.add_fds(&[FdMeta {
        fd: 1,
        cloexec: false,
        dup_of: None,
        shared_with: Vec::new(),
        owner: None,
        kind: FdKind::Terminal {
            path: "/dev/pts/0".into(),
            flags: 2,
        },
    }])
    .unwrap();
    // Pages 0..8 and 16..32 saved; 8..16 are a hole (zero pages).
    w.add_area(&anon, &[&mem[..8 << 12], &mem[16 << 12..]])
        .unwrap();
    w.add_area(&lib, &[]).unwrap();
    let s = w.finish(true).unwrap();
    println!("{out}: {s:?}");
}
