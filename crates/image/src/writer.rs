//! Writes an image from inside the checkpointed process.
//!
//! The writer runs while the process's other threads are stopped, perhaps
//! inside `malloc`. So everything the data path needs is allocated up front
//! in a [`Scratch`] (created before the threads are stopped), compression
//! uses a zstd context that never allocates, and page data is written with
//! plain `write`/`writev` straight from where it lives in memory.
//!
//! Data is written sequentially: one `writev` per batch of runs in raw mode
//! (consecutive chunks are contiguous in the file, so a whole run is one
//! iovec however many chunks it is cut into), one `write` per compressed
//! chunk otherwise. Metadata is buffered and written by [`Writer::finish`]
//! after the data, then the section table and footer, and only then the
//! final header: a file whose writer died has a header that says "not
//! finished" and no footer.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::vec::Vec;

use zerocopy::{FromZeros, IntoBytes};

use crate::format::{
    self, AreaKind, AreaRecord, ChunkRecord, DATA_OFFSET, Footer, Header, PAGE_SIZE, SectionEntry,
    area_flags, codec, header_flags, section_kind,
};
pub use crate::identity::{Identity, VdsoIdentity};
use crate::meta::{self, FdMeta, ProcessMeta, ThreadMeta};
use crate::zstd_static::{self, StaticCctx};

/// Errors of the writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing image: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid write options: {0}")]
    Options(&'static str),
    #[error("area {start:#x}-{end:#x}: {problem}")]
    Area {
        start: u64,
        end: u64,
        problem: &'static str,
    },
    #[error("section {kind}: {problem}")]
    Section { kind: u32, problem: &'static str },
    #[error("compressing chunk at {addr:#x}: {detail}")]
    Compress { addr: u64, detail: &'static str },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("image too large: {0}")]
    TooLarge(&'static str),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> WriteError {
    move |source| WriteError::Io { what, source }
}

/// How to write an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd level (1..=22, or negative for zstd's fastest modes; 0, which
    /// zstd reads as "its default", is refused so the level is explicit);
    /// `None` stores pages raw at page-aligned offsets so a restart can map
    /// them instead of reading them.
    pub compress_level: Option<i32>,
    /// Largest chunk, in bytes (a multiple of 4096): the unit of
    /// compression, checksumming and parallel restore.
    pub chunk_size: usize,
}

impl Default for WriteOptions {
    /// zstd level 1 (fast enough to keep up with the disk on one core) and
    /// 4 MiB chunks (large enough to compress well and keep per-chunk
    /// overhead negligible, small enough to spread over many cores).
    fn default() -> WriteOptions {
        WriteOptions {
            compress_level: Some(1),
            chunk_size: 4 << 20,
        }
    }
}

impl WriteOptions {
    fn validate(&self) -> Result<(), WriteError> {
        if self.chunk_size == 0 || !(self.chunk_size as u64).is_multiple_of(PAGE_SIZE) {
            return Err(WriteError::Options(
                "chunk_size must be a non-zero multiple of 4096",
            ));
        }
        if self.chunk_size as u64 > format::MAX_CHUNK_LEN {
            return Err(WriteError::Options("chunk_size is larger than 256 MiB"));
        }
        Ok(())
    }
}

/// Memory the writer needs, allocated before the process's threads are
/// stopped: the zstd context and its output buffer, and room for the area
/// and chunk tables. Reusable across checkpoints.
pub struct Scratch {
    opts: WriteOptions,
    cctx: Option<StaticCctx>,
    out: Vec<u8>,
    /// A chunk's copy: in raw mode for chunks whose memory moved while being
    /// written (see `Writer::recheck`); in compressed mode the stable input
    /// of every compression (see `Writer::write_runs_compressed`).
    bounce: Vec<u8>,
    areas: Vec<AreaRecord>,
    chunks: Vec<ChunkRecord>,
    strings: Vec<u8>,
    sections: Vec<(u32, Vec<u8>)>,
}

impl Scratch {
    /// Allocates everything a [`Writer`] with `opts` needs.
    pub fn new(opts: &WriteOptions) -> Result<Scratch, WriteError> {
        opts.validate()?;
        let (cctx, out) = match opts.compress_level {
            Some(level) => (
                Some(StaticCctx::new(level).map_err(WriteError::Options)?),
                std::vec![0u8; zstd_static::compress_bound(opts.chunk_size)],
            ),
            None => (None, Vec::new()),
        };
        Ok(Scratch {
            opts: *opts,
            cctx,
            bounce: std::vec![0u8; opts.chunk_size],
            out,
            // A typical process has a few hundred areas; a few thousand
            // chunks cover several GiB. Growing past this allocates, which
            // the agent's private allocator tolerates.
            areas: Vec::with_capacity(1024),
            chunks: Vec::with_capacity(8192),
            strings: Vec::with_capacity(64 << 10),
            sections: Vec::with_capacity(8),
        })
    }
}

/// Copies `src` into `dst` (same length) and returns the copy. `src` may be
/// memory that contains `dst` itself (the writer saving its own heap), so
/// the copy is a `memmove` through raw pointers.
fn snapshot<'b>(src: &[u8], dst: &'b mut [u8]) -> &'b [u8] {
    let len = src.len().min(dst.len());
    // both ranges are valid for `len` bytes; `ptr::copy` allows
    // them to overlap.
    // SAFETY: see just above.
    unsafe { std::ptr::copy(src.as_ptr(), dst.as_mut_ptr(), len) };
    &dst[..len]
}

/// One memory area to save, as read from `/proc/self/maps`.
#[derive(Clone, Copy, Debug)]
pub struct AreaDesc<'a> {
    pub start: u64,
    pub end: u64,
    /// `format::prot` bits.
    pub prot: u32,
    /// `format::area_flags` bits (`HAS_DATA` is added when runs are given).
    pub flags: u32,
    pub kind: AreaKind,
    pub file_offset: u64,
    pub dev: u64,
    pub inode: u64,
    /// Backing path, empty for none.
    pub path: &'a str,
}

/// What [`Writer::finish`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Length of the file.
    pub bytes_written: u64,
    /// Uncompressed bytes of page data saved.
    pub memory_bytes: u64,
    /// Bytes those pages take in the file.
    pub stored_bytes: u64,
    pub areas: u32,
    pub chunks: u32,
}

/// Runs per `writev`: well under `IOV_MAX` (1024), and the array lives on
/// the stack so batching allocates nothing.
const IOV_BATCH: usize = 64;

/// An image being written. Create with [`Writer::new`], add areas and
/// sections in any order (areas by increasing address), then
/// [`Writer::finish`]. A refused argument (an `Area` or `Section` error)
/// leaves the writer usable; after an I/O or compression error drop it:
/// the file is unfinished and readers refuse it.
pub struct Writer<'s> {
    file: File,
    scratch: &'s mut Scratch,
    header: Header,
    /// File offset of the next byte written (the file cursor).
    pos: u64,
    memory_bytes: u64,
    stored_bytes: u64,
    /// End of the last area added, to enforce increasing addresses.
    last_end: u64,
}

impl<'s> Writer<'s> {
    /// Writes a placeholder header (one that says the file is unfinished)
    /// into `file`, which must be new and empty, leaving the cursor at the
    /// data region.
    pub fn new(
        file: File,
        identity: &Identity,
        opts: &WriteOptions,
        scratch: &'s mut Scratch,
    ) -> Result<Writer<'s>, WriteError> {
        opts.validate()?;
        if *opts != scratch.opts {
            return Err(WriteError::Options(
                "the scratch was allocated for other write options",
            ));
        }
        scratch.areas.clear();
        scratch.chunks.clear();
        scratch.strings.clear();
        scratch.sections.clear();

        let mut header = Header::new_zeroed();
        header.magic = format::MAGIC;
        header.format_version = format::FORMAT_VERSION;
        header.header_size = format::HEADER_SIZE as u32;
        header.arch = format::EM_X86_64;
        header.flags = if opts.compress_level.is_some() {
            header_flags::COMPRESSED
        } else {
            header_flags::PAGE_ALIGNED
        };
        header.page_size = PAGE_SIZE as u32;
        header.data_offset = DATA_OFFSET;
        identity.fill_header(&mut header);
        // A valid checksum with `file_length` 0: a reader of a file whose
        // writer died says "unfinished", not "corrupt".
        header.header_crc = crc32c::crc32c(header.as_bytes());

        let mut w = Writer {
            file,
            scratch,
            header,
            pos: 0,
            memory_bytes: 0,
            stored_bytes: 0,
            last_end: 0,
        };
        // No truncation here: the caller hands over a new, empty file.
        // Truncating one (even an empty one) makes ext4 flush the whole
        // file on close (its replace-by-truncate heuristic), which costs
        // --no-sync checkpoints a disk write.
        w.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seeking to the start"))?;
        let mut first_page = [0u8; DATA_OFFSET as usize];
        first_page[..format::HEADER_SIZE].copy_from_slice(w.header.as_bytes());
        w.write(&first_page, "writing the header")?;
        Ok(w)
    }

    /// Writes at the cursor, which `pos` mirrors.
    fn write(&mut self, bytes: &[u8], what: &'static str) -> Result<(), WriteError> {
        (&self.file).write_all(bytes).map_err(io_err(what))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes zeros up to the next multiple of `align`.
    fn pad_to(&mut self, align: u64) -> Result<(), WriteError> {
        const ZEROS: [u8; 8] = [0; 8];
        let target = format::align_up(self.pos, align).ok_or(WriteError::TooLarge("offset"))?;
        let n = (target - self.pos) as usize;
        self.write(&ZEROS[..n], "padding")
    }

    /// Records `area` and saves its `runs`: slices of the area's own memory
    /// (their addresses are the virtual addresses saved), page-aligned,
    /// multiples of 4096 long, sorted and non-overlapping. Pages of the
    /// area outside every run are restored as zero pages.
    pub fn add_area(&mut self, area: &AreaDesc<'_>, runs: &[&[u8]]) -> Result<(), WriteError> {
        let bad = |problem| WriteError::Area {
            start: area.start,
            end: area.end,
            problem,
        };
        if area.start >= area.end
            || !area.start.is_multiple_of(PAGE_SIZE)
            || !area.end.is_multiple_of(PAGE_SIZE)
        {
            return Err(bad("bounds are empty or not page-aligned"));
        }
        if area.start < self.last_end {
            return Err(bad("areas must be added by increasing address"));
        }
        if area.kind == AreaKind::Vsyscall {
            return Err(bad("[vsyscall] is never stored"));
        }
        let has_runs = runs.iter().any(|r| !r.is_empty());
        if has_runs && area.kind.never_saved() {
            return Err(bad("the kernel's [vvar] pages are never saved"));
        }
        let mut prev_end = area.start;
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let addr = run.as_ptr() as u64;
            let len = run.len() as u64;
            if !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
                return Err(bad("a run is not page-aligned"));
            }
            if addr < prev_end || addr + len > area.end {
                return Err(bad("runs must be sorted, disjoint and inside the area"));
            }
            prev_end = addr + len;
        }
        let path_offset = u32::try_from(self.scratch.strings.len())
            .map_err(|_| WriteError::TooLarge("backing paths exceed 4 GiB"))?;
        let path_len =
            u32::try_from(area.path.len()).map_err(|_| bad("backing path is too long"))?;
        let first_chunk = u32::try_from(self.scratch.chunks.len())
            .map_err(|_| WriteError::TooLarge("more than 2^32 chunks"))?;
        if self.scratch.areas.len() >= u32::MAX as usize {
            return Err(WriteError::TooLarge("more than 2^32 areas"));
        }

        if self.scratch.cctx.is_some() {
            self.write_runs_compressed(runs)?;
        } else {
            self.write_runs_raw(runs)?;
        }

        let chunk_count = u32::try_from(self.scratch.chunks.len() - first_chunk as usize)
            .map_err(|_| WriteError::TooLarge("more than 2^32 chunks"))?;
        self.scratch.strings.extend_from_slice(area.path.as_bytes());
        self.scratch.areas.push(AreaRecord {
            start: area.start,
            end: area.end,
            prot: area.prot,
            flags: area.flags | if has_runs { area_flags::HAS_DATA } else { 0 },
            kind: area.kind as u32,
            reserved: 0,
            file_offset: area.file_offset,
            dev: area.dev,
            inode: area.inode,
            path_offset,
            path_len,
            first_chunk,
            chunk_count,
        });
        self.last_end = area.end;
        Ok(())
    }

    /// Raw mode: the data region starts page-aligned and every chunk is a
    /// whole number of pages, so chunks land page-aligned without padding
    /// and runs are written in batches of iovecs straight from memory.
    ///
    /// The caller's own live memory (the checkpoint thread's stack, the
    /// writer's tables) can change between checksumming and writing, so
    /// after each batch every chunk's checksum is taken again; a chunk
    /// whose memory moved is copied once into the bounce buffer and
    /// rewritten from there, so the stored bytes always match their crc.
    fn write_runs_raw(&mut self, runs: &[&[u8]]) -> Result<(), WriteError> {
        let mut iov = [IoSlice::new(&[]); IOV_BATCH];
        let mut n = 0;
        let mut next = self.pos;
        let mut batch_start = 0;
        let mut batch_first_chunk = self.scratch.chunks.len();
        let runs: &[&[u8]] = runs;
        let nonempty = |i: usize| !runs[i].is_empty();
        for ri in 0..runs.len() {
            if !nonempty(ri) {
                continue;
            }
            let run = runs[ri];
            for (i, piece) in run.chunks(self.scratch.opts.chunk_size).enumerate() {
                let addr = run.as_ptr() as u64 + (i * self.scratch.opts.chunk_size) as u64;
                self.scratch.chunks.push(ChunkRecord {
                    addr,
                    len: piece.len() as u64,
                    file_offset: next,
                    stored_len: piece.len() as u64,
                    codec: codec::RAW,
                    crc: crc32c::crc32c(piece),
                });
                next += piece.len() as u64;
            }
            iov[n] = IoSlice::new(run);
            n += 1;
            if n == IOV_BATCH {
                write_all_vectored(&self.file, &mut iov[..n]).map_err(io_err("writing pages"))?;
                self.recheck(&runs[batch_start..=ri], batch_first_chunk)?;
                n = 0;
                batch_start = ri + 1;
                batch_first_chunk = self.scratch.chunks.len();
            }
        }
        if n > 0 {
            write_all_vectored(&self.file, &mut iov[..n]).map_err(io_err("writing pages"))?;
            self.recheck(&runs[batch_start..], batch_first_chunk)?;
        }
        let written = next - self.pos;
        self.pos = next;
        self.memory_bytes += written;
        self.stored_bytes += written;
        Ok(())
    }

    /// Re-checksums the chunks of `runs` (recorded from `first_chunk` on)
    /// after they were written; see [`Writer::write_runs_raw`].
    fn recheck(&mut self, runs: &[&[u8]], first_chunk: usize) -> Result<(), WriteError> {
        let chunk_size = self.scratch.opts.chunk_size;
        let mut ci = first_chunk;
        for run in runs.iter().filter(|r| !r.is_empty()) {
            for piece in run.chunks(chunk_size) {
                let now = crc32c::crc32c(piece);
                if now != self.scratch.chunks[ci].crc {
                    if self.scratch.bounce.len() < piece.len() {
                        self.scratch.bounce.resize(chunk_size, 0);
                    }
                    let copy = &mut self.scratch.bounce[..piece.len()];
                    copy.copy_from_slice(piece);
                    let rec = &mut self.scratch.chunks[ci];
                    rec.crc = crc32c::crc32c(copy);
                    self.file
                        .write_all_at(copy, rec.file_offset)
                        .map_err(io_err("rewriting pages"))?;
                }
                ci += 1;
            }
        }
        Ok(())
    }

    /// Compressed mode: each chunk is first copied, then compressed from the
    /// copy into the scratch buffer and written; one that doesn't shrink is
    /// written raw from the copy.
    ///
    /// The copy matters because the memory being saved includes the writer's
    /// own: the zstd workspace, the output buffer, the caller's stack. zstd
    /// reading input that changes under it does not just save those bytes
    /// stale: a match found against bytes that changed afterwards makes the
    /// *other* end of the match decode wrong, so unrelated data next to the
    /// workspace came back corrupted. A copy is one moment of the chunk.
    fn write_runs_compressed(&mut self, runs: &[&[u8]]) -> Result<(), WriteError> {
        let chunk_size = self.scratch.opts.chunk_size;
        for run in runs.iter().filter(|r| !r.is_empty()) {
            for (i, piece) in run.chunks(chunk_size).enumerate() {
                let addr = run.as_ptr() as u64 + (i * chunk_size) as u64;
                let Scratch {
                    cctx, out, bounce, ..
                } = &mut *self.scratch;
                let Some(cctx) = cctx.as_mut() else {
                    return Err(WriteError::Options("no compression context"));
                };
                if bounce.len() < piece.len() {
                    bounce.resize(chunk_size, 0);
                }
                let copy = snapshot(piece, &mut bounce[..piece.len()]);
                let n = cctx
                    .compress(out, copy)
                    .map_err(|detail| WriteError::Compress { addr, detail })?;
                let (stored, kind) = if n < copy.len() {
                    (&out[..n], codec::ZSTD)
                } else {
                    (copy, codec::RAW)
                };
                let record = ChunkRecord {
                    addr,
                    len: piece.len() as u64,
                    file_offset: self.pos,
                    stored_len: stored.len() as u64,
                    codec: kind,
                    crc: crc32c::crc32c(stored),
                };
                (&self.file)
                    .write_all(stored)
                    .map_err(io_err("writing pages"))?;
                self.pos += record.stored_len;
                self.memory_bytes += record.len;
                self.stored_bytes += record.stored_len;
                self.scratch.chunks.push(record);
            }
        }
        Ok(())
    }

    /// Adds a metadata section of `kind`. The writer owns AREAS, CHUNKS and
    /// STRINGS; each kind may appear once.
    pub fn add_section(&mut self, kind: u32, data: &[u8]) -> Result<(), WriteError> {
        let bad = |problem| WriteError::Section { kind, problem };
        if matches!(
            kind,
            0 | section_kind::AREAS | section_kind::CHUNKS | section_kind::STRINGS
        ) {
            return Err(bad("reserved for the writer"));
        }
        if self.scratch.sections.iter().any(|(k, _)| *k == kind) {
            return Err(bad("added twice"));
        }
        self.scratch.sections.push((kind, data.to_vec()));
        Ok(())
    }

    /// Adds the PROCESS section.
    pub fn add_process(&mut self, process: &ProcessMeta) -> Result<(), WriteError> {
        let bytes = meta::encode(process).map_err(|source| WriteError::Encode {
            what: "process metadata",
            source,
        })?;
        self.add_section(section_kind::PROCESS, &bytes)
    }

    /// Adds the THREADS section.
    pub fn add_threads(&mut self, threads: &[ThreadMeta]) -> Result<(), WriteError> {
        let bytes = meta::encode(threads).map_err(|source| WriteError::Encode {
            what: "thread metadata",
            source,
        })?;
        self.add_section(section_kind::THREADS, &bytes)
    }

    /// Adds the FDS section.
    pub fn add_fds(&mut self, fds: &[FdMeta]) -> Result<(), WriteError> {
        let bytes = meta::encode(fds).map_err(|source| WriteError::Encode {
            what: "fd metadata",
            source,
        })?;
        self.add_section(section_kind::FDS, &bytes)
    }

    fn write_section(
        &mut self,
        table: &mut Vec<SectionEntry>,
        kind: u32,
        bytes: &[u8],
    ) -> Result<(), WriteError> {
        self.pad_to(format::SECTION_ALIGN)?;
        table.push(SectionEntry {
            kind,
            flags: 0,
            offset: self.pos,
            length: bytes.len() as u64,
            crc: crc32c::crc32c(bytes),
            reserved: 0,
        });
        self.write(bytes, "writing a section")
    }

    /// Writes the metadata sections, the section table, the footer and the
    /// final header, then `fdatasync`s if `sync`. The caller renames the
    /// file into place ([`commit`]).
    pub fn finish(mut self, sync: bool) -> Result<WriteSummary, WriteError> {
        self.header.data_end = self.pos;
        let mut table = Vec::with_capacity(3 + self.scratch.sections.len());
        let areas = core::mem::take(&mut self.scratch.areas);
        let chunks = core::mem::take(&mut self.scratch.chunks);
        let strings = core::mem::take(&mut self.scratch.strings);
        let sections = core::mem::take(&mut self.scratch.sections);
        let result = self.write_tail(&mut table, &areas, &chunks, &strings, &sections);
        // Hand the buffers back so the next checkpoint reuses them.
        self.scratch.areas = areas;
        self.scratch.chunks = chunks;
        self.scratch.strings = strings;
        self.scratch.sections = sections;
        let file_length = result?;
        if sync {
            self.file.sync_data().map_err(io_err("fdatasync"))?;
        }
        Ok(WriteSummary {
            bytes_written: file_length,
            memory_bytes: self.memory_bytes,
            stored_bytes: self.stored_bytes,
            areas: self.scratch.areas.len() as u32,
            chunks: self.scratch.chunks.len() as u32,
        })
    }

    fn write_tail(
        &mut self,
        table: &mut Vec<SectionEntry>,
        areas: &[AreaRecord],
        chunks: &[ChunkRecord],
        strings: &[u8],
        sections: &[(u32, Vec<u8>)],
    ) -> Result<u64, WriteError> {
        self.write_section(table, section_kind::AREAS, areas.as_bytes())?;
        self.write_section(table, section_kind::CHUNKS, chunks.as_bytes())?;
        self.write_section(table, section_kind::STRINGS, strings)?;
        for (kind, bytes) in sections {
            self.write_section(table, *kind, bytes)?;
        }
        self.pad_to(format::SECTION_ALIGN)?;
        let table_offset = self.pos;
        let table_bytes = table.as_slice().as_bytes();
        let table_crc = crc32c::crc32c(table_bytes);
        self.write(table_bytes, "writing the section table")?;
        let file_length = self.pos + format::FOOTER_SIZE as u64;

        let h = &mut self.header;
        h.section_table_offset = table_offset;
        h.section_count =
            u32::try_from(table.len()).map_err(|_| WriteError::TooLarge("section count"))?;
        h.file_length = file_length;
        h.header_crc = 0;
        h.header_crc = crc32c::crc32c(h.as_bytes());

        let mut footer = Footer::new_zeroed();
        footer.magic = format::FOOTER_MAGIC;
        footer.format_version = format::FORMAT_VERSION;
        footer.file_length = file_length;
        footer.section_table_offset = table_offset;
        footer.section_count = h.section_count;
        footer.header_crc = h.header_crc;
        footer.table_crc = table_crc;
        footer.footer_crc = crc32c::crc32c(footer.as_bytes());
        self.write(footer.as_bytes(), "writing the footer")?;
        // Last: until this lands the header says "unfinished" (length 0).
        self.file
            .write_all_at(self.header.as_bytes(), 0)
            .map_err(io_err("writing the final header"))?;
        Ok(file_length)
    }
}

/// `writev` until everything is written (std's `write_all_vectored` is
/// unstable).
fn write_all_vectored(mut file: &File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves a finished image into place: renames `tmp` to `final_path` and, if
/// `sync`, fsyncs the directory so the rename itself survives a crash (a
/// synced file under an unsynced name can vanish on power loss).
pub fn commit(tmp: &Path, final_path: &Path, sync: bool) -> Result<(), WriteError> {
    std::fs::rename(tmp, final_path).map_err(io_err("renaming into place"))?;
    if sync {
        let dir = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing the directory"))?;
    }
    Ok(())
}
