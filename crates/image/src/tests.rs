//! Round trips through the writer and reader, and the reader's refusals.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::string::ToString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;
use std::{format, vec};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::format::{
    self, AreaKind, DATA_OFFSET, FOOTER_SIZE, Header, PAGE_SIZE, area_flags, codec, prot,
    section_kind,
};
use crate::meta::{FdKind, FdMeta, MmLayout, ProcessMeta, Rlimit, SigAction, ThreadMeta};
use crate::{
    AreaDesc, Identity, Image, ImageError, ImageSummary, Scratch, VdsoIdentity, WriteOptions,
    Writer,
};

/// A page-aligned page, so a `Vec<Page>` stands in for process memory.
#[repr(C, align(4096))]
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
struct Page([u8; 4096]);

/// A file removed when dropped.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Tmp(std::env::temp_dir().join(format!(
            "hiber-image-test-{}-{n}-{tag}.hiber",
            std::process::id()
        )))
    }
    fn create(&self) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.0)
            .unwrap()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Simple deterministic generator (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

fn identity() -> Identity {
    Identity {
        computation: 0xc0ffee,
        generation: 3,
        process_id: 42,
        virtual_pid: 4000,
        real_pid: 5123,
        created_unix_ns: 1_700_000_000_123_000_000,
        program: "testprog".into(),
        hostname: "node-1.example".into(),
        kernel_release: "6.8.0-test".into(),
        glibc_version: "2.39".into(),
        vdso: VdsoIdentity {
            vdso_len: 8192,
            vvar_len: 16384,
            vvar_vclock_len: 0,
            vdso_crc: 0xdead_beef,
        },
    }
}

fn process() -> ProcessMeta {
    ProcessMeta {
        program: "testprog".into(),
        argv: vec!["testprog".into(), "--n".into(), "5".into()],
        exe: "/usr/bin/testprog".into(),
        cwd: "/tmp".into(),
        umask: 0o022,
        rlimits: vec![Rlimit {
            resource: 7,
            cur: 1024,
            max: 4096,
        }],
        mm: MmLayout {
            brk: 0x55_0000,
            ..MmLayout::default()
        },
        sigactions: vec![SigAction {
            signo: 10,
            handler: 0x40_1000,
            flags: 0x0400_0000,
            restorer: 0x40_2000,
            mask: 0,
        }],
        pending_signals: 0,
        restart_entry: 0x7f00_0000_1000,
        agent_version: "0.1.0".into(),
        standalone: false,
        ..ProcessMeta::default()
    }
}

fn threads() -> Vec<ThreadMeta> {
    vec![
        ThreadMeta {
            tid: 4000,
            is_main: true,
            name: "testprog".into(),
            fs_base: 0x7f00_0000_2000,
            rip: 0x40_1234,
            rsp: 0x7ffd_0000_0000,
            ..ThreadMeta::default()
        },
        ThreadMeta {
            tid: 4001,
            is_agent: true,
            name: "hiber-ckpt".into(),
            ..ThreadMeta::default()
        },
    ]
}

fn fds() -> Vec<FdMeta> {
    vec![
        FdMeta {
            fd: 0,
            cloexec: false,
            dup_of: None,
            shared_with: Vec::new(),
            owner: None,
            kind: FdKind::Terminal {
                path: "/dev/pts/0".into(),
                flags: 2,
            },
        },
        FdMeta {
            fd: 3,
            cloexec: true,
            dup_of: None,
            shared_with: Vec::new(),
            owner: None,
            kind: FdKind::File {
                path: "/tmp/out".into(),
                flags: 0o101,
                offset: 77,
                size: 77,
                mode: 0o644,
                deleted: false,
                contents: None,
            },
        },
        FdMeta {
            fd: 4,
            cloexec: false,
            dup_of: None,
            shared_with: Vec::new(),
            owner: None,
            kind: FdKind::Pipe {
                inode: 1234,
                flags: 0,
                path: "".to_string(),
                capacity: 65536,
                data: b"in flight".to_vec(),
                writers_gone: false,
            },
        },
        FdMeta {
            fd: 5,
            cloexec: false,
            dup_of: None,
            shared_with: Vec::new(),
            owner: None,
            kind: FdKind::UnixSocket {
                inode: 77,
                peer: 78,
                sock_type: 5,
                flags: 0o4002,
                sndbuf: 212992,
                rcvbuf: 212992,
                passcred: false,
                peek_off: -1,
                queue: vec![b"one".to_vec(), Vec::new(), b"three".to_vec()],
                peer_gone: false,
            },
        },
    ]
}

/// New descriptor kinds are appended to `FdKind`: postcard encodes the
/// variant's index first, so the old ones keep theirs and old images read.
#[test]
fn fd_kind_variant_indices_are_stable() {
    let socket = crate::meta::encode(&FdKind::Socket { inode: 1, flags: 2 }).unwrap();
    assert_eq!(socket[0], 4);
    let unix = crate::meta::encode(&fds()[3].kind).unwrap();
    assert_eq!(unix[0], 11);
    let back: FdKind = crate::meta::decode(&unix).unwrap();
    assert_eq!(back, fds()[3].kind);
}

/// Fake process memory: 32 pages, some random (incompressible), some
/// patterned (compressible).
fn memory() -> Vec<Page> {
    let mut mem = vec![Page([0; 4096]); 32];
    let mut rng = Lcg(7);
    for (i, p) in mem.iter_mut().enumerate() {
        if i % 3 == 0 || i == 19 {
            rng.fill(&mut p.0);
        } else {
            p.0.fill(i as u8);
            p.0[..8].copy_from_slice(&(i as u64).to_le_bytes());
        }
    }
    mem
}

const CHUNK: usize = 2 * PAGE_SIZE as usize;

/// Areas of a test image: one with holes, one several chunks long, one
/// file-backed without data, one [vvar].
struct Layout<'m> {
    mem: &'m [u8],
    base: u64,
}

impl<'m> Layout<'m> {
    fn new(mem: &'m [Page]) -> Layout<'m> {
        let mem = mem.as_bytes();
        Layout {
            base: mem.as_ptr() as u64,
            mem,
        }
    }
    fn pages(&self, from: usize, to: usize) -> &'m [u8] {
        &self.mem[from * 4096..to * 4096]
    }
    fn heap(&self) -> AreaDesc<'static> {
        AreaDesc {
            start: self.base,
            end: self.base + 16 * PAGE_SIZE,
            prot: prot::READ | prot::WRITE,
            flags: area_flags::PRIVATE | area_flags::ANONYMOUS,
            kind: AreaKind::Heap,
            file_offset: 0,
            dev: 0,
            inode: 0,
            path: "",
        }
    }
    fn stack(&self) -> AreaDesc<'static> {
        AreaDesc {
            start: self.base + 16 * PAGE_SIZE,
            end: self.base + 32 * PAGE_SIZE,
            kind: AreaKind::Stack,
            flags: area_flags::PRIVATE | area_flags::ANONYMOUS | area_flags::GROWSDOWN,
            ..self.heap()
        }
    }
    fn file_area(&self) -> AreaDesc<'static> {
        AreaDesc {
            start: self.base + 64 * PAGE_SIZE,
            end: self.base + 80 * PAGE_SIZE,
            prot: prot::READ | prot::EXEC,
            flags: area_flags::PRIVATE,
            kind: AreaKind::File,
            file_offset: 0x2000,
            dev: 0x803,
            inode: 99,
            path: "/usr/lib/libfoo.so.1",
        }
    }
    fn vvar(&self) -> AreaDesc<'static> {
        AreaDesc {
            start: self.base + 96 * PAGE_SIZE,
            end: self.base + 100 * PAGE_SIZE,
            prot: prot::READ,
            flags: area_flags::PRIVATE,
            kind: AreaKind::Vvar,
            file_offset: 0,
            dev: 0,
            inode: 0,
            path: "[vvar]",
        }
    }
    /// Every run written, with its address, for comparison.
    fn runs(&self) -> Vec<(u64, &'m [u8])> {
        [
            self.pages(0, 3),
            self.pages(8, 12),
            self.pages(16, 21),
            self.pages(24, 32),
        ]
        .iter()
        .map(|r| (r.as_ptr() as u64, *r))
        .collect()
    }
}

fn write_image(path: &Path, opts: &WriteOptions, extra: &[(u32, &[u8])]) -> crate::WriteSummary {
    write_image_from(&memory(), path, opts, extra)
}

fn write_image_from(
    mem: &[Page],
    path: &Path,
    opts: &WriteOptions,
    extra: &[(u32, &[u8])],
) -> crate::WriteSummary {
    let l = Layout::new(mem);
    let mut scratch = Scratch::new(opts).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut w = Writer::new(file, &identity(), opts, &mut scratch).unwrap();
    w.add_process(&process()).unwrap();
    w.add_threads(&threads()).unwrap();
    w.add_area(&l.heap(), &[l.pages(0, 3), l.pages(8, 12)])
        .unwrap();
    w.add_area(&l.stack(), &[l.pages(16, 21), l.pages(24, 32)])
        .unwrap();
    w.add_area(&l.file_area(), &[]).unwrap();
    w.add_area(&l.vvar(), &[]).unwrap();
    w.add_fds(&fds()).unwrap();
    for (kind, data) in extra {
        w.add_section(*kind, data).unwrap();
    }
    w.finish(true).unwrap()
}

fn raw_opts() -> WriteOptions {
    WriteOptions {
        compress_level: None,
        chunk_size: CHUNK,
    }
}

fn zstd_opts() -> WriteOptions {
    WriteOptions {
        compress_level: Some(3),
        chunk_size: CHUNK,
    }
}

fn check_round_trip(opts: &WriteOptions) {
    let tmp = Tmp::new("rt");
    let mem = memory();
    let l = Layout::new(&mem);
    let summary = write_image_from(&mem, &tmp.0, opts, &[]);

    let img = Image::open(&tmp.0).unwrap();
    img.verify_data().unwrap();
    assert_eq!(summary.bytes_written, fs::metadata(&tmp.0).unwrap().len());
    assert_eq!(summary.areas, 4);
    // 3 pages -> 2 chunks, 4 -> 2, 5 -> 3, 8 -> 4.
    assert_eq!(summary.chunks, 11);
    assert_eq!(summary.memory_bytes, 20 * PAGE_SIZE);
    assert_eq!(img.memory_bytes(), summary.memory_bytes);
    assert_eq!(img.stored_bytes(), summary.stored_bytes);
    assert_eq!(img.identity(), &identity());
    assert_eq!(img.process().unwrap(), process());
    assert_eq!(img.threads().unwrap(), threads());
    assert_eq!(img.fds().unwrap(), fds());
    assert_eq!(img.is_compressed(), opts.compress_level.is_some());
    assert_eq!(img.is_page_aligned(), opts.compress_level.is_none());

    let areas = img.areas();
    assert_eq!(areas.len(), 4);
    assert_eq!(areas[0].start, l.heap().start);
    assert_eq!(areas[0].area_kind(), Some(AreaKind::Heap));
    assert!(areas[0].has_data());
    assert_eq!(&areas[0].perms(), b"rw-p");
    assert_eq!(img.chunks_of(&areas[0]).len(), 4);
    assert_eq!(img.chunks_of(&areas[1]).len(), 7);
    assert_eq!(img.area_path(&areas[2]), "/usr/lib/libfoo.so.1");
    assert_eq!(areas[2].inode, 99);
    assert!(!areas[2].has_data());
    assert_eq!(img.chunks_of(&areas[2]).len(), 0);
    assert_eq!(img.area_path(&areas[3]), "[vvar]");

    // Every chunk holds exactly the memory at its address.
    let mut by_addr = Vec::new();
    for (addr, run) in l.runs() {
        for (i, piece) in run.chunks(CHUNK).enumerate() {
            by_addr.push((addr + (i * CHUNK) as u64, piece));
        }
    }
    assert_eq!(by_addr.len(), img.chunks().len());
    let mut codecs = [0usize; 2];
    for (c, (addr, data)) in img.chunks().iter().zip(&by_addr) {
        assert_eq!(c.addr, *addr);
        let mut out = vec![0u8; c.len as usize];
        img.read_chunk(c, &mut out).unwrap();
        assert_eq!(&out[..], *data);
        codecs[c.codec as usize] += 1;
        if img.is_page_aligned() {
            assert_eq!(c.file_offset % PAGE_SIZE, 0);
        }
    }
    if opts.compress_level.is_some() {
        assert!(codecs[codec::ZSTD as usize] > 0, "some chunks compress");
        assert!(codecs[codec::RAW as usize] > 0, "random chunks stay raw");
    } else {
        assert_eq!(codecs[codec::ZSTD as usize], 0);
    }

    let out_tmp = Tmp::new("unpack");
    let out = out_tmp.create();
    let offsets = img.unpack_chunks_parallel(&out).unwrap();
    assert_eq!(offsets.len(), by_addr.len());
    for (off, (_, data)) in offsets.iter().zip(&by_addr) {
        assert_eq!(off % PAGE_SIZE, 0);
        let mut buf = vec![0u8; data.len()];
        out.read_exact_at(&mut buf, *off).unwrap();
        assert_eq!(&buf[..], *data);
    }
}

#[test]
fn round_trip_raw() {
    check_round_trip(&raw_opts());
}

#[test]
fn round_trip_compressed() {
    check_round_trip(&zstd_opts());
}

#[test]
fn round_trip_default_options_and_reused_scratch() {
    let opts = WriteOptions::default();
    let mut scratch = Scratch::new(&opts).unwrap();
    let mem = memory();
    let l = Layout::new(&mem);
    for round in 0..2 {
        let tmp = Tmp::new("reuse");
        let mut w = Writer::new(tmp.create(), &identity(), &opts, &mut scratch).unwrap();
        w.add_area(&l.heap(), &[l.pages(0, 16)]).unwrap();
        let s = w.finish(false).unwrap();
        assert_eq!((s.areas, s.chunks), (1, 1), "round {round}");
        let img = Image::open(&tmp.0).unwrap();
        img.verify_data().unwrap();
        assert!(matches!(
            img.process(),
            Err(ImageError::MissingSection { .. })
        ));
    }
}

/// Writes a raw image and returns its bytes.
fn image_bytes() -> Vec<u8> {
    let tmp = Tmp::new("bytes");
    write_image(&tmp.0, &raw_opts(), &[]);
    fs::read(&tmp.0).unwrap()
}

fn open_bytes(bytes: &[u8]) -> Result<Image, ImageError> {
    let tmp = Tmp::new("mut");
    fs::write(&tmp.0, bytes).unwrap();
    Image::open(&tmp.0)
}

#[test]
fn refuses_truncated() {
    let bytes = image_bytes();
    let err = open_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(
        matches!(err, ImageError::Truncated { expected, .. } if expected == bytes.len() as u64),
        "{err}"
    );
    assert!(err.to_string().contains("truncated (file is"), "{err}");
    let err = open_bytes(&bytes[..100]).unwrap_err();
    assert!(matches!(err, ImageError::TooShort { .. }), "{err}");
}

#[test]
fn refuses_empty_and_random_files() {
    let err = open_bytes(&[]).unwrap_err();
    assert!(
        matches!(err, ImageError::TooShort { actual: 0, .. }),
        "{err}"
    );
    let mut random = vec![0u8; 20_000];
    Lcg(99).fill(&mut random);
    let err = open_bytes(&random).unwrap_err();
    assert!(matches!(err, ImageError::NotAnImage { .. }), "{err}");
    assert!(err.to_string().ends_with("is not a hiber image"), "{err}");
    let err = open_bytes(b"#!/bin/sh\n").unwrap_err();
    assert!(matches!(err, ImageError::NotAnImage { .. }), "{err}");
}

#[test]
fn refuses_header_bit_flip() {
    let mut bytes = image_bytes();
    let at = core::mem::offset_of!(Header, hostname) + 2;
    bytes[at] ^= 0x10;
    let err = open_bytes(&bytes).unwrap_err();
    assert!(matches!(err, ImageError::HeaderChecksum { .. }), "{err}");
}

fn set_header(bytes: &mut [u8], edit: impl FnOnce(&mut Header)) {
    let mut h = Header::read_from_bytes(&bytes[..format::HEADER_SIZE]).unwrap();
    edit(&mut h);
    h.header_crc = 0;
    h.header_crc = crc32c::crc32c(h.as_bytes());
    bytes[..format::HEADER_SIZE].copy_from_slice(h.as_bytes());
}

#[test]
fn refuses_newer_version_and_foreign_arch() {
    let mut bytes = image_bytes();
    set_header(&mut bytes, |h| h.format_version = 4);
    let err = open_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::UnsupportedVersion {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("format version 4 is newer than this hiber supports (3)"),
        "{err}"
    );
    let mut bytes = image_bytes();
    set_header(&mut bytes, |h| h.format_version = 2);
    let err = open_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::OldVersion {
                found: 2,
                oldest: 3,
                ..
            }
        ),
        "{err}"
    );
    let mut bytes = image_bytes();
    set_header(&mut bytes, |h| h.arch = 183); // EM_AARCH64
    let err = open_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, ImageError::ForeignArch { arch: 183, .. }),
        "{err}"
    );
}

#[test]
fn refuses_unfinished_image() {
    let tmp = Tmp::new("unfinished");
    let opts = raw_opts();
    let mut scratch = Scratch::new(&opts).unwrap();
    let mem = memory();
    let l = Layout::new(&mem);
    let mut w = Writer::new(tmp.create(), &identity(), &opts, &mut scratch).unwrap();
    w.add_area(&l.heap(), &[l.pages(0, 4)]).unwrap();
    drop(w); // the writer "died" before finish
    let err = Image::open(&tmp.0).unwrap_err();
    assert!(matches!(err, ImageError::Unfinished { .. }), "{err}");
}

#[test]
fn refuses_chunk_bit_flip() {
    let mut bytes = image_bytes();
    // The first chunk starts the data region.
    bytes[DATA_OFFSET as usize + 100] ^= 1;
    let img = open_bytes(&bytes).unwrap();
    let err = img.verify_data().unwrap_err();
    assert!(
        matches!(err, ImageError::ChunkChecksum { index: 0, addr, .. } if addr == img.chunks()[0].addr),
        "{err}"
    );
    assert!(err.to_string().contains("chunk 0 (at 0x"), "{err}");
    let c = img.chunks()[0];
    let mut out = vec![0u8; c.len as usize];
    assert!(matches!(
        img.read_chunk(&c, &mut out),
        Err(ImageError::ChunkChecksum { index: 0, .. })
    ));
    let out_tmp = Tmp::new("unpack-bad");
    assert!(matches!(
        img.unpack_chunks_parallel(&out_tmp.create()),
        Err(ImageError::ChunkChecksum { index: 0, .. })
    ));
}

#[test]
fn refuses_metadata_bit_flip() {
    let mut bytes = image_bytes();
    let img = open_bytes(&bytes).unwrap();
    for kind in [
        section_kind::PROCESS,
        section_kind::AREAS,
        section_kind::STRINGS,
    ] {
        let e = img.sections().iter().find(|e| e.kind == kind).unwrap();
        let at = (e.offset + e.length / 2) as usize;
        bytes[at] ^= 0x40;
        let err = open_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, ImageError::SectionChecksum { kind: k, .. } if k == kind),
            "{err}"
        );
        bytes[at] ^= 0x40;
    }
}

#[test]
fn refuses_footer_bit_flip() {
    let bytes = image_bytes();
    for at in [0, 20, 40, 63] {
        let mut b = bytes.clone();
        let i = b.len() - FOOTER_SIZE + at;
        b[i] ^= 0x02;
        let err = open_bytes(&b).unwrap_err();
        assert!(matches!(err, ImageError::Footer { .. }), "byte {at}: {err}");
    }
    // Appending data moves the footer away from the end.
    let mut b = bytes.clone();
    b.extend_from_slice(&[0; 64]);
    assert!(matches!(
        open_bytes(&b).unwrap_err(),
        ImageError::Corrupt { .. }
    ));
}

#[test]
fn skips_unknown_sections() {
    let tmp = Tmp::new("unknown");
    write_image(
        &tmp.0,
        &zstd_opts(),
        &[(1000, b"from the future"), (77, &[1, 2, 3])],
    );
    let img = Image::open(&tmp.0).unwrap();
    img.verify_data().unwrap();
    assert_eq!(img.process().unwrap(), process());
    assert_eq!(
        img.read_section(1000).unwrap().as_deref(),
        Some(&b"from the future"[..])
    );
    assert_eq!(img.read_section(12345).unwrap(), None);
    assert_eq!(img.sections().len(), 8);
}

#[test]
fn writer_refuses_bad_input() {
    let opts = raw_opts();
    let mut scratch = Scratch::new(&opts).unwrap();
    let mem = memory();
    let l = Layout::new(&mem);
    let tmp = Tmp::new("bad");
    let mut w = Writer::new(tmp.create(), &identity(), &opts, &mut scratch).unwrap();
    // Not page-aligned.
    assert!(w.add_area(&l.heap(), &[&l.mem[100..4196]]).is_err());
    // Outside the area.
    assert!(w.add_area(&l.heap(), &[l.pages(15, 17)]).is_err());
    // Out of order.
    assert!(
        w.add_area(&l.heap(), &[l.pages(8, 9), l.pages(0, 1)])
            .is_err()
    );
    // [vvar] is never saved.
    assert!(w.add_area(&l.vvar(), &[l.pages(0, 1)]).is_err());
    let vsyscall = AreaDesc {
        kind: AreaKind::Vsyscall,
        ..l.vvar()
    };
    assert!(w.add_area(&vsyscall, &[]).is_err());
    w.add_area(&l.stack(), &[l.pages(16, 17)]).unwrap();
    // Areas go by increasing address.
    assert!(w.add_area(&l.heap(), &[]).is_err());
    assert!(w.add_section(section_kind::AREAS, b"x").is_err());
    w.add_section(500, b"x").unwrap();
    assert!(w.add_section(500, b"y").is_err());
    w.finish(false).unwrap();
    // The image stays valid after refused calls.
    let img = Image::open(&tmp.0).unwrap();
    img.verify_data().unwrap();
    assert_eq!(img.areas().len(), 1);

    for chunk_size in [0, 1000, 1 << 30] {
        assert!(
            Scratch::new(&WriteOptions {
                compress_level: None,
                chunk_size
            })
            .is_err()
        );
    }
    let mut scratch = Scratch::new(&raw_opts()).unwrap();
    assert!(Writer::new(tmp.create(), &identity(), &zstd_opts(), &mut scratch).is_err());
}

#[test]
fn long_identity_text_is_cut_at_char_boundary() {
    let tmp = Tmp::new("longname");
    let opts = raw_opts();
    let mut scratch = Scratch::new(&opts).unwrap();
    let mut id = identity();
    id.program = "é".repeat(40); // 80 bytes; the field holds 64
    let w = Writer::new(tmp.create(), &id, &opts, &mut scratch).unwrap();
    w.finish(false).unwrap();
    let img = Image::open(&tmp.0).unwrap();
    assert_eq!(img.identity().program, "é".repeat(32));
}

#[test]
fn summary_text_and_json() {
    let tmp = Tmp::new("summary");
    write_image(&tmp.0, &zstd_opts(), &[]);
    let img = Image::open(&tmp.0).unwrap();
    let s = ImageSummary::from_image(&img);
    assert_eq!(s.totals.areas, 4);
    assert_eq!(s.totals.chunks, 11);
    assert!(s.totals.compression_ratio > 1.0);
    assert_eq!(s.created, "2023-11-14T22:13:20.123Z");
    assert_eq!(s.areas[0].perms, "rw-p");
    assert_eq!(s.areas[2].kind, "file");
    let text = s.to_string();
    for needle in [
        "program    testprog",
        "host       node-1.example",
        "glibc      2.39",
        "/usr/lib/libfoo.so.1",
        "r-xp",
        "tid 4000",
        "/tmp/out",
        "pipe:[1234]",
        "ratio",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["identity"]["program"], "testprog");
    assert_eq!(json["areas"][2]["path"], "/usr/lib/libfoo.so.1");
    assert!(
        json["areas"][0]["start"]
            .as_str()
            .unwrap()
            .starts_with("0x")
    );
    assert_eq!(json["threads"][1]["is_agent"], true);
    assert_eq!(json["totals"]["memory_bytes"], 20 * PAGE_SIZE);
}

#[test]
fn rfc3339_dates() {
    use crate::summary::rfc3339;
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
}

/// Flips random bytes (and cuts at random lengths) and checks that the
/// reader never panics: every outcome is an image or an error.
#[test]
fn fuzz_random_corruption_never_panics() {
    let mut rng = Lcg(0x5eed);
    for opts in [raw_opts(), zstd_opts()] {
        let tmp = Tmp::new("fuzz-src");
        write_image(&tmp.0, &opts, &[(999, b"extra")]);
        let bytes = fs::read(&tmp.0).unwrap();
        let mut accepted = 0;
        for round in 0..300 {
            let mut b = bytes.clone();
            if round % 10 == 9 {
                b.truncate(rng.next() as usize % b.len());
            } else {
                for _ in 0..1 + rng.next() % 4 {
                    let i = rng.next() as usize % b.len();
                    b[i] ^= 1 << (rng.next() % 8);
                }
            }
            if let Ok(img) = open_bytes(&b) {
                accepted += 1;
                let _ = img.verify_data();
                for c in img.chunks() {
                    let mut out = vec![0u8; c.len as usize];
                    let _ = img.read_chunk(c, &mut out);
                }
                let _ = ImageSummary::from_image(&img).to_string();
            }
        }
        // Only flips in padding or chunk data can leave the image openable.
        assert!(accepted < 300);
    }
}

#[test]
fn fuzz_consistent_garbage_records_never_panic() {
    // Corruption that keeps every checksum valid: rewrite the AREAS and
    // CHUNKS sections with random values and re-seal. The structural checks
    // alone must catch it.
    let bytes = image_bytes();
    let img = open_bytes(&bytes).unwrap();
    let sections: Vec<_> = img.sections().to_vec();
    let table_off = img.header().section_table_offset as usize;
    let mut rng = Lcg(1);
    for _ in 0..200 {
        let mut b = bytes.clone();
        let mut table = sections.clone();
        for e in table.iter_mut() {
            if e.kind != section_kind::AREAS && e.kind != section_kind::CHUNKS {
                continue;
            }
            let range = e.offset as usize..(e.offset + e.length) as usize;
            for _ in 0..3 {
                let i = range.start + rng.next() as usize % (range.end - range.start);
                b[i] = rng.next() as u8;
            }
            e.crc = crc32c::crc32c(&b[range]);
        }
        let tb = table.as_slice().as_bytes();
        b[table_off..table_off + tb.len()].copy_from_slice(tb);
        let len = b.len();
        let mut f = crate::format::Footer::read_from_bytes(&b[len - FOOTER_SIZE..]).unwrap();
        f.table_crc = crc32c::crc32c(tb);
        f.footer_crc = 0;
        f.footer_crc = crc32c::crc32c(f.as_bytes());
        b[len - FOOTER_SIZE..].copy_from_slice(f.as_bytes());
        if let Ok(img) = open_bytes(&b) {
            let _ = img.verify_data();
            let out = Tmp::new("fz");
            let _ = img.unpack_chunks_parallel(&out.create());
        }
    }
}

#[test]
fn messages_name_the_file() {
    let err = open_bytes(&[]).unwrap_err().to_string();
    assert!(err.starts_with("image /"), "{err}");
    let err = Image::open("/nonexistent/ckpt.hiber")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/ckpt.hiber"), "{err}");
}

/// The offsets documented in docs/image-format.md.
#[test]
fn layout_matches_the_documentation() {
    use crate::format::{AreaRecord, ChunkRecord, Footer, SectionEntry};
    use core::mem::offset_of;
    let header = [
        (offset_of!(Header, magic), 0),
        (offset_of!(Header, format_version), 8),
        (offset_of!(Header, header_size), 12),
        (offset_of!(Header, arch), 16),
        (offset_of!(Header, flags), 20),
        (offset_of!(Header, page_size), 24),
        (offset_of!(Header, header_crc), 28),
        (offset_of!(Header, computation), 32),
        (offset_of!(Header, generation), 40),
        (offset_of!(Header, process_id), 48),
        (offset_of!(Header, virtual_pid), 56),
        (offset_of!(Header, real_pid), 60),
        (offset_of!(Header, created_unix_ns), 64),
        (offset_of!(Header, file_length), 72),
        (offset_of!(Header, section_table_offset), 80),
        (offset_of!(Header, section_count), 88),
        (offset_of!(Header, vdso_crc), 92),
        (offset_of!(Header, vdso_len), 96),
        (offset_of!(Header, vvar_len), 104),
        (offset_of!(Header, vvar_vclock_len), 112),
        (offset_of!(Header, data_offset), 120),
        (offset_of!(Header, data_end), 128),
        (offset_of!(Header, program), 136),
        (offset_of!(Header, hostname), 200),
        (offset_of!(Header, kernel_release), 272),
        (offset_of!(Header, glibc_version), 344),
        (offset_of!(Header, reserved), 360),
    ];
    for (i, (got, want)) in header.iter().enumerate() {
        assert_eq!(got, want, "header field {i}");
    }
    let footer = [
        (offset_of!(Footer, magic), 0),
        (offset_of!(Footer, format_version), 8),
        (offset_of!(Footer, footer_crc), 12),
        (offset_of!(Footer, file_length), 16),
        (offset_of!(Footer, section_table_offset), 24),
        (offset_of!(Footer, section_count), 32),
        (offset_of!(Footer, header_crc), 36),
        (offset_of!(Footer, table_crc), 40),
        (offset_of!(Footer, reserved0), 44),
        (offset_of!(Footer, reserved), 48),
    ];
    for (i, (got, want)) in footer.iter().enumerate() {
        assert_eq!(got, want, "footer field {i}");
    }
    assert_eq!(offset_of!(SectionEntry, offset), 8);
    assert_eq!(offset_of!(SectionEntry, crc), 24);
    assert_eq!(offset_of!(AreaRecord, kind), 24);
    assert_eq!(offset_of!(AreaRecord, file_offset), 32);
    assert_eq!(offset_of!(AreaRecord, path_offset), 56);
    assert_eq!(offset_of!(AreaRecord, first_chunk), 64);
    assert_eq!(offset_of!(ChunkRecord, file_offset), 16);
    assert_eq!(offset_of!(ChunkRecord, codec), 32);
    assert_eq!(offset_of!(ChunkRecord, crc), 36);
}

/// Memory that changes while it is compressed (the writer's own heap, in
/// the agent) must not corrupt the bytes around it: a zstd match against
/// bytes that change afterwards decodes wrong at its other end. A thread
/// keeps rewriting the first half of the area with records like those of
/// the second half, which stays fixed and must come back exactly.
#[test]
fn changing_memory_does_not_corrupt_its_neighbours() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    const PAGES: usize = 512; // 2 MiB, one chunk
    let words = PAGES * 4096 / 8;
    let mut mem: Vec<Page> = vec![Page([0; 4096]); PAGES];
    let base = mem.as_mut_ptr() as u64;
    // Records of (small number, pointer-like value, small number): like a
    // Vec<String> buffer, and like what the mutator writes.
    let record = |i: usize| -> [u64; 3] {
        [
            13 + (i % 7) as u64,
            base + (i as u64 % 97) * 64,
            4 + (i % 5) as u64,
        ]
    };
    {
        // SAFETY: `mem` is `words` u64s long; plain initialisation.
        let w = unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u64>(), words) };
        for (i, r) in w.chunks_mut(3).enumerate() {
            let rec = record(i);
            r.copy_from_slice(&rec[..r.len()]);
        }
    }
    let half = words / 2;
    let expected: Vec<u8> = mem.as_bytes()[half * 8..].to_vec();
    let stop = AtomicBool::new(false);
    // The first half is only accessed through atomics while the
    // mutator runs (the writer reads it too: that read races by design, as
    // the agent's reads of its own heap do).
    // SAFETY: see just above.
    let atomics = unsafe { std::slice::from_raw_parts(mem.as_ptr().cast::<AtomicU64>(), half) };
    let tmp = Tmp::new("moving");
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, a) in atomics.iter().enumerate() {
                    // The records of another index: the same values, moved.
                    let r = record(i / 3 + n as usize);
                    a.store(r[i % 3], Ordering::Relaxed);
                }
                n += 1;
            }
        });
        // Stops the mutator however this closure ends (a failed assertion
        // must not leave the scope waiting for it).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        let opts = WriteOptions {
            compress_level: Some(1),
            chunk_size: PAGES * 4096,
        };
        let mut scratch = Scratch::new(&opts).unwrap();
        for _ in 0..100 {
            let mut w = Writer::new(tmp.create(), &identity(), &opts, &mut scratch).unwrap();
            let mem_start = mem.as_ptr().cast::<u8>();
            // SAFETY: `mem` outlives the writer; see above for the race.
            let run = unsafe { std::slice::from_raw_parts(mem_start, PAGES * 4096) };
            let area = AreaDesc {
                start: base,
                end: base + (PAGES * 4096) as u64,
                prot: prot::READ | prot::WRITE,
                flags: area_flags::PRIVATE | area_flags::ANONYMOUS,
                kind: AreaKind::Heap,
                file_offset: 0,
                dev: 0,
                inode: 0,
                path: "",
            };
            w.add_area(&area, &[run]).unwrap();
            w.finish(false).unwrap();
            let img = Image::open(&tmp.0).unwrap();
            let c = img.chunks_of(&img.areas()[0])[0];
            let mut out = vec![0u8; c.len as usize];
            img.read_chunk(&c, &mut out).unwrap();
            assert!(
                out[half * 8..] == expected[..],
                "the fixed half came back changed"
            );
        }
    });
}

/// postcard stores an enum's variant index: the kinds added later must
/// come after the first six, so images written before them still decode.
#[test]
fn fd_kinds_keep_their_variant_index() {
    let other = FdKind::Other {
        link: "anon_inode:[x]".into(),
        flags: 2,
    };
    assert_eq!(crate::meta::encode(&other).unwrap()[0], 5);
    let epoll = FdKind::Epoll {
        flags: 2,
        targets: vec![crate::meta::EpollTarget {
            fd: 4,
            events: 0x8000_0001,
            data: u64::MAX,
        }],
    };
    let bytes = crate::meta::encode(&epoll).unwrap();
    assert_eq!(bytes[0], 9);
    assert_eq!(crate::meta::decode::<FdKind>(&bytes).unwrap(), epoll);
    let inotify = FdKind::Inotify {
        flags: 0,
        watches: vec![crate::meta::InotifyWatch {
            wd: 1,
            mask: 0x100,
            path: "/tmp".into(),
        }],
    };
    assert_eq!(crate::meta::encode(&inotify).unwrap()[0], 10);
}
