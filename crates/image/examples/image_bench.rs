//! Times writing and reading an image of N MiB of memory (default 1024), raw
//! and zstd level 1, against a plain `write_all` of the same memory (the
//! `dd` baseline of DESIGN.md §5a). Unpacking goes to `/dev/shm`, like the
//! memfd a restart uses. Page-cache writeback makes single runs noisy: run
//! it twice.
//!
//! `cargo run --release -p hiber-image --example image_bench -- [MiB] [dir]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::time::Instant;

use hiber_image::format::{AreaKind, area_flags, prot};
use hiber_image::{AreaDesc, Identity, Image, Scratch, WriteOptions, Writer};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(1024, |s| s.parse().expect("MiB"));
    let dir = args.next().unwrap_or_else(|| "/tmp".into());
    let len = mib << 20;
    // Memory that looks like a program's: half text-like (compressible),
    // half pseudo-random.
    let mut mem = vec![0u8; len + 4096];
    let off = mem.as_ptr().align_offset(4096);
    let mem = &mut mem[off..off + len];
    let mut x = 1u64;
    for (i, page) in mem.chunks_mut(4096).enumerate() {
        if i % 2 == 0 {
            for b in page.iter_mut() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (x >> 56) as u8;
            }
        } else {
            for (j, b) in page.iter_mut().enumerate() {
                *b = b"hello world, "[j % 13] ^ (i as u8);
            }
        }
    }
    let start = mem.as_ptr() as u64;
    let area = AreaDesc {
        start,
        end: start + len as u64,
        prot: prot::READ | prot::WRITE,
        flags: area_flags::PRIVATE | area_flags::ANONYMOUS,
        kind: AreaKind::Anon,
        file_offset: 0,
        dev: 0,
        inode: 0,
        path: "",
    };
    {
        use std::io::Write;
        let p = format!("{dir}/hiber-bench-plain");
        let t = Instant::now();
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(mem).unwrap();
        println!(" plain: write_all {:.3}s", t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&p);
    }
    for (name, level) in [("raw", None), ("zstd1", Some(1))] {
        let opts = WriteOptions {
            compress_level: level,
            ..WriteOptions::default()
        };
        let path = format!("{dir}/hiber-bench-{name}.hiber");
        let mut scratch = Scratch::new(&opts).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let t = Instant::now();
        let mut w = Writer::new(file, &Identity::default(), &opts, &mut scratch).unwrap();
        w.add_area(&area, &[&mem[..]]).unwrap();
        let s = w.finish(false).unwrap();
        let write = t.elapsed();
        let t = Instant::now();
        let img = Image::open(&path).unwrap();
        img.verify_data().unwrap();
        let verify = t.elapsed();
        let out_path = format!("/dev/shm/hiber-bench-{name}.out");
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&out_path)
            .unwrap();
        let t = Instant::now();
        img.unpack_chunks_parallel(&out).unwrap();
        let unpack = t.elapsed();
        println!(
            "{name:>6}: {mib} MiB -> {:.1} MiB; write {:.3}s, open+verify {:.3}s, unpack {:.3}s",
            s.bytes_written as f64 / (1 << 20) as f64,
            write.as_secs_f64(),
            verify.as_secs_f64(),
            unpack.as_secs_f64()
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&out_path);
    }
}
