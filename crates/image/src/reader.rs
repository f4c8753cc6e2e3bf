//! Reads and validates an image (`hiber restart`, `hiber inspect`).
//!
//! [`Image::open`] checks everything except the page data before returning:
//! a restart must refuse a corrupt, truncated, foreign or too-new image
//! before it touches any process state. Each length read from the file is
//! checked against the file's actual size (and sane caps) before it is used
//! to allocate or to read, in the order the checks can be trusted: magic,
//! architecture and version first (so a foreign file gets the message that
//! explains it), then the header checksum, the footer that seals the file,
//! the section table, each section, and the records. Page data is checked
//! chunk by chunk, in parallel, by [`Image::verify_data`], or as it is read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::vec::Vec;
use std::{format, vec};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

use crate::format::{
    self, AreaRecord, ChunkRecord, DATA_OFFSET, FOOTER_SIZE, Footer, HEADER_SIZE, Header,
    PAGE_SIZE, SectionEntry, area_flags, codec, header_flags, section_kind,
};
use crate::identity::Identity;
use crate::meta::{self, FdMeta, ProcessMeta, ThreadMeta};

/// Errors of the reader. Every message names the image file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("image {path}: truncated (file is {actual} bytes, an image is at least {minimum})")]
    TooShort {
        path: String,
        actual: u64,
        minimum: u64,
    },
    #[error("image {path}: truncated (file is {actual} bytes, header says {expected})")]
    Truncated {
        path: String,
        actual: u64,
        expected: u64,
    },
    #[error("{path} is not a hiber image")]
    NotAnImage { path: String },
    #[error("image {path}: written for machine type {arch}, this hiber handles x86-64 (62)")]
    ForeignArch { path: String, arch: u32 },
    #[error(
        "image {path}: format version {found} was written by an older hiber; this one reads version {oldest} and later"
    )]
    OldVersion {
        path: String,
        found: u32,
        oldest: u32,
    },
    #[error("image {path}: format version {found} is newer than this hiber supports ({supported})")]
    UnsupportedVersion {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("image {path}: unfinished (its writer did not complete it)")]
    Unfinished { path: String },
    #[error("image {path}: header checksum mismatch")]
    HeaderChecksum { path: String },
    #[error("image {path}: bad footer: {problem}")]
    Footer { path: String, problem: &'static str },
    #[error("image {path}: section table checksum mismatch")]
    TableChecksum { path: String },
    #[error("image {path}: section {index} ({}) checksum mismatch", section_kind::name(*kind))]
    SectionChecksum {
        path: String,
        index: usize,
        kind: u32,
    },
    #[error("image {path}: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("image {path}: chunk {index} (at {addr:#x}) checksum mismatch")]
    ChunkChecksum {
        path: String,
        index: usize,
        addr: u64,
    },
    #[error("image {path}: chunk {index} (at {addr:#x}) does not decompress: {detail}")]
    Decompress {
        path: String,
        index: usize,
        addr: u64,
        detail: String,
    },
    #[error("image {path}: {section} section does not decode: {source}")]
    Metadata {
        path: String,
        section: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("image {path}: no {section} section")]
    MissingSection { path: String, section: &'static str },
    #[error(
        "image {path}: chunk {index}: output buffer is {actual} bytes, the chunk is {expected}"
    )]
    BufferSize {
        path: String,
        index: usize,
        expected: u64,
        actual: usize,
    },
    #[error("image {path}: writing chunk {index} to the restore buffer: {source}")]
    Unpack {
        path: String,
        index: usize,
        #[source]
        source: io::Error,
    },
}

/// At most this many sections: a table larger than this is corrupt.
const MAX_SECTIONS: u32 = 1 << 16;
/// Caps on record counts, far above anything Linux produces
/// (`vm.max_map_count` defaults to 65530), so a corrupt length cannot make
/// the reader allocate gigabytes.
const MAX_AREAS: u64 = 1 << 22;
const MAX_CHUNKS: u64 = 1 << 28;
/// Cap on a postcard metadata section or the STRINGS section.
const MAX_META_LEN: u64 = 256 << 20;
/// Piece size when checksumming sections this reader skips.
const SKIP_READ: usize = 1 << 20;

/// An opened, validated image.
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
    name: String,
    file: File,
    header: Header,
    identity: Identity,
    sections: Vec<SectionEntry>,
    areas: Vec<AreaRecord>,
    chunks: Vec<ChunkRecord>,
    strings: Vec<u8>,
    process: Option<ProcessMeta>,
    threads: Option<Vec<ThreadMeta>>,
    fds: Option<Vec<FdMeta>>,
}

/// The file and its name for messages, while [`Image`] doesn't exist yet.
struct Src<'a> {
    file: &'a File,
    name: &'a str,
}

impl Src<'_> {
    fn io(&self, source: io::Error) -> ImageError {
        ImageError::Io {
            path: self.name.to_string(),
            source,
        }
    }

    fn corrupt(&self, problem: String) -> ImageError {
        ImageError::Corrupt {
            path: self.name.to_string(),
            problem,
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), ImageError> {
        self.file.read_exact_at(buf, offset).map_err(|e| self.io(e))
    }

    /// Reads a section already checked to lie inside the file and under its
    /// cap, and verifies its checksum.
    fn section_bytes(&self, index: usize, e: &SectionEntry) -> Result<Vec<u8>, ImageError> {
        let mut buf = vec![0u8; e.length as usize];
        self.read(&mut buf, e.offset)?;
        if crc32c::crc32c(&buf) != e.crc {
            return Err(ImageError::SectionChecksum {
                path: self.name.to_string(),
                index,
                kind: e.kind,
            });
        }
        Ok(buf)
    }

    /// Verifies the checksum of a section this reader doesn't use, without
    /// holding it in memory.
    fn check_skipped(&self, index: usize, e: &SectionEntry) -> Result<(), ImageError> {
        let mut buf = vec![0u8; SKIP_READ.min(e.length as usize)];
        let mut crc = 0;
        let mut done = 0u64;
        while done < e.length {
            let n = (e.length - done).min(SKIP_READ as u64) as usize;
            self.read(&mut buf[..n], e.offset + done)?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            done += n as u64;
        }
        if crc != e.crc {
            return Err(ImageError::SectionChecksum {
                path: self.name.to_string(),
                index,
                kind: e.kind,
            });
        }
        Ok(())
    }

    /// Reads an array-of-records section straight into typed records.
    fn records<T: FromBytes + IntoBytes + Immutable + Clone>(
        &self,
        index: usize,
        e: &SectionEntry,
        cap: u64,
        what: &str,
    ) -> Result<Vec<T>, ImageError> {
        let size = core::mem::size_of::<T>() as u64;
        if !e.length.is_multiple_of(size) {
            return Err(self.corrupt(format!(
                "{what} section is {} bytes, not a multiple of the {size}-byte record",
                e.length
            )));
        }
        let count = e.length / size;
        if count > cap {
            return Err(self.corrupt(format!("{what} section claims {count} records")));
        }
        let mut recs = vec![T::new_zeroed(); count as usize];
        self.read(recs.as_mut_slice().as_mut_bytes(), e.offset)?;
        if crc32c::crc32c(recs.as_slice().as_bytes()) != e.crc {
            return Err(ImageError::SectionChecksum {
                path: self.name.to_string(),
                index,
                kind: e.kind,
            });
        }
        Ok(recs)
    }
}

/// Per-worker buffers for chunk I/O, reused across chunks.
#[derive(Default)]
struct Worker {
    stored: Vec<u8>,
    out: Vec<u8>,
    dctx: Option<zstd_safe::DCtx<'static>>,
}

/// Grows `buf` to at least `n` bytes and returns its first `n`.
fn sized(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    &mut buf[..n]
}

impl Image {
    /// Opens and validates the image at `path` (everything but the page
    /// data; see [`Image::verify_data`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Image, ImageError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| ImageError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Image::from_file(file, path)
    }

    /// Validates an image from an already open file; `path` is used for
    /// messages and [`Image::path`].
    pub fn from_file(file: File, path: &Path) -> Result<Image, ImageError> {
        let name = path.display().to_string();
        let src = Src {
            file: &file,
            name: &name,
        };
        let len = file.metadata().map_err(|e| src.io(e))?.len();
        let minimum = DATA_OFFSET + FOOTER_SIZE as u64;
        let too_short = || ImageError::TooShort {
            path: name.clone(),
            actual: len,
            minimum,
        };

        // Magic first: a file that isn't an image at all should say so,
        // even when it is short.
        let mut head = [0u8; HEADER_SIZE];
        let n = (len.min(HEADER_SIZE as u64)) as usize;
        src.read(&mut head[..n], 0)?;
        if n == 0 {
            return Err(too_short());
        }
        let m = n.min(format::MAGIC.len());
        if head[..m] != format::MAGIC[..m] {
            return Err(ImageError::NotAnImage { path: name });
        }
        if n < HEADER_SIZE {
            return Err(too_short());
        }
        let header = Header::read_from_bytes(&head).map_err(|_| too_short())?;
        if header.arch != format::EM_X86_64 {
            return Err(ImageError::ForeignArch {
                path: name,
                arch: header.arch,
            });
        }
        if header.format_version > format::FORMAT_VERSION {
            return Err(ImageError::UnsupportedVersion {
                path: name,
                found: header.format_version,
                supported: format::FORMAT_VERSION,
            });
        }
        if header.format_version != 0 && header.format_version < format::OLDEST_READ_VERSION {
            return Err(ImageError::OldVersion {
                path: name,
                found: header.format_version,
                oldest: format::OLDEST_READ_VERSION,
            });
        }
        if header.format_version == 0 || header.header_size as usize != HEADER_SIZE {
            return Err(src.corrupt(format!(
                "header says version {} with a {}-byte header",
                header.format_version, header.header_size
            )));
        }
        let mut zeroed = header;
        zeroed.header_crc = 0;
        if crc32c::crc32c(zeroed.as_bytes()) != header.header_crc {
            return Err(ImageError::HeaderChecksum { path: name });
        }
        if header.file_length == 0 {
            return Err(ImageError::Unfinished { path: name });
        }
        if len < header.file_length {
            return Err(ImageError::Truncated {
                path: name,
                actual: len,
                expected: header.file_length,
            });
        }
        if len > header.file_length {
            return Err(src.corrupt(format!(
                "file is {len} bytes, header says {}: data after the end",
                header.file_length
            )));
        }
        if len < minimum {
            return Err(too_short());
        }
        Image::check_header_fields(&src, &header, len)?;

        // The footer seals the file.
        let footer_bad = |problem| ImageError::Footer {
            path: name.clone(),
            problem,
        };
        let mut fbytes = [0u8; FOOTER_SIZE];
        src.read(&mut fbytes, len - FOOTER_SIZE as u64)?;
        let footer = Footer::read_from_bytes(&fbytes).map_err(|_| footer_bad("unreadable"))?;
        if footer.magic != format::FOOTER_MAGIC {
            return Err(footer_bad(
                "no end marker (the file was cut or overwritten)",
            ));
        }
        let mut zeroed = footer;
        zeroed.footer_crc = 0;
        if crc32c::crc32c(zeroed.as_bytes()) != footer.footer_crc {
            return Err(footer_bad("checksum mismatch"));
        }
        if footer.file_length != len {
            return Err(footer_bad("recorded file length differs from the file's"));
        }
        if footer.header_crc != header.header_crc
            || footer.format_version != header.format_version
            || footer.section_table_offset != header.section_table_offset
            || footer.section_count != header.section_count
        {
            return Err(footer_bad("it does not match the header"));
        }

        // Section table: right before the footer.
        let table_len = u64::from(header.section_count) * format::SECTION_ENTRY_SIZE as u64;
        if header.section_count > MAX_SECTIONS
            || !header
                .section_table_offset
                .is_multiple_of(format::SECTION_ALIGN)
            || header.section_table_offset < header.data_end
            || header.section_table_offset.checked_add(table_len) != Some(len - FOOTER_SIZE as u64)
        {
            return Err(src.corrupt(format!(
                "section table ({} entries at offset {}) is misplaced",
                header.section_count, header.section_table_offset
            )));
        }
        let mut sections = vec![SectionEntry::new_zeroed(); header.section_count as usize];
        src.read(
            sections.as_mut_slice().as_mut_bytes(),
            header.section_table_offset,
        )?;
        if crc32c::crc32c(sections.as_slice().as_bytes()) != footer.table_crc {
            return Err(ImageError::TableChecksum { path: name });
        }
        Image::check_section_bounds(&src, &header, &sections)?;

        let mut areas = Vec::new();
        let mut chunks = Vec::new();
        let mut strings = Vec::new();
        let mut process = None;
        let mut threads = None;
        let mut fds = None;
        let mut seen = [false; 7];
        for (i, e) in sections.iter().enumerate() {
            let known = matches!(e.kind, section_kind::AREAS..=section_kind::FDS);
            if !known {
                // A newer writer's section: checked, then skipped.
                src.check_skipped(i, e)?;
                continue;
            }
            if core::mem::replace(&mut seen[e.kind as usize], true) {
                return Err(src.corrupt(format!(
                    "section {} appears twice",
                    section_kind::name(e.kind)
                )));
            }
            if !matches!(e.kind, section_kind::AREAS | section_kind::CHUNKS)
                && e.length > MAX_META_LEN
            {
                return Err(src.corrupt(format!(
                    "{} section is {} bytes",
                    section_kind::name(e.kind),
                    e.length
                )));
            }
            let meta_err = |section, source| ImageError::Metadata {
                path: name.clone(),
                section,
                source,
            };
            match e.kind {
                section_kind::AREAS => areas = src.records(i, e, MAX_AREAS, "AREAS")?,
                section_kind::CHUNKS => chunks = src.records(i, e, MAX_CHUNKS, "CHUNKS")?,
                section_kind::STRINGS => strings = src.section_bytes(i, e)?,
                section_kind::PROCESS => {
                    let b = src.section_bytes(i, e)?;
                    process = Some(meta::decode(&b).map_err(|s| meta_err("PROCESS", s))?);
                }
                section_kind::THREADS => {
                    let b = src.section_bytes(i, e)?;
                    threads = Some(meta::decode(&b).map_err(|s| meta_err("THREADS", s))?);
                }
                _ => {
                    let b = src.section_bytes(i, e)?;
                    fds = Some(meta::decode(&b).map_err(|s| meta_err("FDS", s))?);
                }
            }
        }
        for kind in [
            section_kind::AREAS,
            section_kind::CHUNKS,
            section_kind::STRINGS,
        ] {
            if !seen[kind as usize] {
                return Err(ImageError::MissingSection {
                    path: name,
                    section: section_kind::name(kind),
                });
            }
        }
        let image = Image {
            path: path.to_path_buf(),
            name,
            file,
            identity: Identity::from_header(&header),
            header,
            sections,
            areas,
            chunks,
            strings,
            process,
            threads,
            fds,
        };
        image.check_chunks()?;
        image.check_areas()?;
        Ok(image)
    }

    fn check_header_fields(src: &Src<'_>, h: &Header, len: u64) -> Result<(), ImageError> {
        if u64::from(h.page_size) != PAGE_SIZE {
            return Err(src.corrupt(format!("page size {} is not 4096", h.page_size)));
        }
        let both = header_flags::COMPRESSED | header_flags::PAGE_ALIGNED;
        if h.flags & !header_flags::KNOWN != 0 || h.flags & both == both {
            return Err(src.corrupt(format!("unknown header flags {:#x}", h.flags)));
        }
        if h.data_offset != DATA_OFFSET
            || h.data_end < h.data_offset
            || h.data_end > len - FOOTER_SIZE as u64
        {
            return Err(src.corrupt(format!(
                "data region {}..{} does not fit the file",
                h.data_offset, h.data_end
            )));
        }
        Ok(())
    }

    /// Every section lies between the data region and the table, aligned,
    /// and no two overlap.
    fn check_section_bounds(
        src: &Src<'_>,
        h: &Header,
        sections: &[SectionEntry],
    ) -> Result<(), ImageError> {
        let mut spans = Vec::with_capacity(sections.len());
        for (i, e) in sections.iter().enumerate() {
            let end = e.offset.checked_add(e.length);
            if !e.offset.is_multiple_of(format::SECTION_ALIGN)
                || e.offset < h.data_end
                || end.is_none_or(|end| end > h.section_table_offset)
            {
                return Err(src.corrupt(format!(
                    "section {i} ({}) at offset {} length {} lies outside the metadata region",
                    section_kind::name(e.kind),
                    e.offset,
                    e.length
                )));
            }
            spans.push((e.offset, e.offset + e.length));
        }
        spans.sort_unstable();
        if spans.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(src.corrupt("sections overlap".to_string()));
        }
        Ok(())
    }

    fn check_chunks(&self) -> Result<(), ImageError> {
        let src = self.src();
        let h = &self.header;
        let page_aligned = h.flags & header_flags::PAGE_ALIGNED != 0;
        for (i, c) in self.chunks.iter().enumerate() {
            let problem = if c.len == 0
                || !c.len.is_multiple_of(PAGE_SIZE)
                || !c.addr.is_multiple_of(PAGE_SIZE)
            {
                "is not a whole number of pages"
            } else if c.len > format::MAX_CHUNK_LEN {
                "is larger than 256 MiB"
            } else if c.addr.checked_add(c.len).is_none() {
                "wraps the address space"
            } else if c.file_offset < h.data_offset
                || c.file_offset
                    .checked_add(c.stored_len)
                    .is_none_or(|end| end > h.data_end)
            {
                "lies outside the data region"
            } else {
                match c.codec {
                    codec::RAW if c.stored_len != c.len => "is raw but its stored length differs",
                    codec::RAW if page_aligned && !c.file_offset.is_multiple_of(PAGE_SIZE) => {
                        "is not page-aligned in a page-aligned image"
                    }
                    codec::RAW => continue,
                    codec::ZSTD if page_aligned => "is compressed in a page-aligned image",
                    codec::ZSTD
                        if c.stored_len == 0
                            || c.stored_len > zstd_safe::compress_bound(c.len as usize) as u64 =>
                    {
                        "has an impossible compressed length"
                    }
                    codec::ZSTD => continue,
                    _ => "has an unknown codec",
                }
            };
            return Err(src.corrupt(format!("chunk {i} (at {:#x}) {problem}", c.addr)));
        }
        Ok(())
    }

    fn check_areas(&self) -> Result<(), ImageError> {
        let src = self.src();
        let mut prev_end = 0u64;
        let mut next_chunk = 0u64;
        for (i, a) in self.areas.iter().enumerate() {
            let bad = |problem: &str| {
                src.corrupt(format!("area {i} ({:#x}-{:#x}) {problem}", a.start, a.end))
            };
            if a.start >= a.end
                || !a.start.is_multiple_of(PAGE_SIZE)
                || !a.end.is_multiple_of(PAGE_SIZE)
            {
                return Err(bad("is empty or not page-aligned"));
            }
            if a.start < prev_end {
                return Err(bad("overlaps or is out of order"));
            }
            prev_end = a.end;
            if a.kind == 0 {
                return Err(bad("has no kind"));
            }
            let path_end = u64::from(a.path_offset) + u64::from(a.path_len);
            if path_end > self.strings.len() as u64 {
                return Err(bad("has a backing path outside STRINGS"));
            }
            if core::str::from_utf8(&self.strings[a.path_offset as usize..path_end as usize])
                .is_err()
            {
                return Err(bad("has a backing path that is not UTF-8"));
            }
            if u64::from(a.first_chunk) != next_chunk {
                return Err(bad("chunks are not in area order"));
            }
            next_chunk += u64::from(a.chunk_count);
            if next_chunk > self.chunks.len() as u64 {
                return Err(bad("claims more chunks than CHUNKS holds"));
            }
            if a.chunk_count > 0 && a.flags & area_flags::HAS_DATA == 0 {
                return Err(bad("has chunks but no HAS_DATA flag"));
            }
            let mut at = a.start;
            for c in self.chunks_of(a) {
                if c.addr < at || c.end() > a.end {
                    return Err(bad(&format!(
                        "has chunk at {:#x} out of order or outside it",
                        c.addr
                    )));
                }
                at = c.end();
            }
        }
        if next_chunk != self.chunks.len() as u64 {
            return Err(src.corrupt(format!(
                "{} chunks belong to no area",
                self.chunks.len() as u64 - next_chunk
            )));
        }
        Ok(())
    }

    /// The header as stored.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The header's identity fields.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// All areas, sorted by address.
    pub fn areas(&self) -> &[AreaRecord] {
        &self.areas
    }

    /// Backing path of `area` ("" for none). Validated UTF-8 at open.
    pub fn area_path(&self, area: &AreaRecord) -> &str {
        let start = area.path_offset as usize;
        let end = start.saturating_add(area.path_len as usize);
        self.strings
            .get(start..end)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// All chunks, grouped by area and sorted within each.
    pub fn chunks(&self) -> &[ChunkRecord] {
        &self.chunks
    }

    /// The chunks of `area` (empty for a record not from this image).
    pub fn chunks_of(&self, area: &AreaRecord) -> &[ChunkRecord] {
        let start = area.first_chunk as usize;
        let end = start.saturating_add(area.chunk_count as usize);
        self.chunks.get(start..end).unwrap_or(&[])
    }

    /// The section table, including sections this reader skips.
    pub fn sections(&self) -> &[SectionEntry] {
        &self.sections
    }

    pub fn is_compressed(&self) -> bool {
        self.header.flags & header_flags::COMPRESSED != 0
    }

    /// Raw chunks sit at page-aligned offsets and can be mapped from the
    /// file.
    pub fn is_page_aligned(&self) -> bool {
        self.header.flags & header_flags::PAGE_ALIGNED != 0
    }

    /// The PROCESS section (decoded and checked at open).
    pub fn process(&self) -> Result<ProcessMeta, ImageError> {
        self.process.clone().ok_or_else(|| self.missing("PROCESS"))
    }

    /// The THREADS section.
    pub fn threads(&self) -> Result<Vec<ThreadMeta>, ImageError> {
        self.threads.clone().ok_or_else(|| self.missing("THREADS"))
    }

    /// The FDS section.
    pub fn fds(&self) -> Result<Vec<FdMeta>, ImageError> {
        self.fds.clone().ok_or_else(|| self.missing("FDS"))
    }

    fn missing(&self, section: &'static str) -> ImageError {
        ImageError::MissingSection {
            path: self.name.clone(),
            section,
        }
    }

    /// Reads the first section of `kind`, checksum verified; for section
    /// kinds owned by other crates. `None` if there is none.
    pub fn read_section(&self, kind: u32) -> Result<Option<Vec<u8>>, ImageError> {
        let src = self.src();
        match self
            .sections
            .iter()
            .enumerate()
            .find(|(_, e)| e.kind == kind)
        {
            Some((i, e)) => src.section_bytes(i, e).map(Some),
            None => Ok(None),
        }
    }

    /// The open image file (for mapping raw chunks).
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total uncompressed bytes of page data.
    pub fn memory_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.len).sum()
    }

    /// Total bytes page data takes in the file.
    pub fn stored_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.stored_len).sum()
    }

    fn src(&self) -> Src<'_> {
        Src {
            file: &self.file,
            name: &self.name,
        }
    }

    fn chunk_index(&self, chunk: &ChunkRecord) -> usize {
        self.chunks
            .iter()
            .position(|c| c == chunk)
            .unwrap_or(usize::MAX)
    }

    /// Reads a chunk's stored bytes into `buf` and checks their checksum.
    fn read_stored<'b>(
        &self,
        index: usize,
        c: &ChunkRecord,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], ImageError> {
        let stored = sized(buf, c.stored_len as usize);
        self.src().read(stored, c.file_offset)?;
        if crc32c::crc32c(stored) != c.crc {
            return Err(ImageError::ChunkChecksum {
                path: self.name.clone(),
                index,
                addr: c.addr,
            });
        }
        Ok(stored)
    }

    /// Fills `out` (exactly `c.len` bytes) with the chunk's pages.
    fn decode_into(
        &self,
        index: usize,
        c: &ChunkRecord,
        stored: &mut Vec<u8>,
        dctx: &mut Option<zstd_safe::DCtx<'static>>,
        out: &mut [u8],
    ) -> Result<(), ImageError> {
        if out.len() as u64 != c.len {
            return Err(ImageError::BufferSize {
                path: self.name.clone(),
                index,
                expected: c.len,
                actual: out.len(),
            });
        }
        if c.codec == codec::RAW {
            self.src().read(out, c.file_offset)?;
            if crc32c::crc32c(out) != c.crc {
                return Err(ImageError::ChunkChecksum {
                    path: self.name.clone(),
                    index,
                    addr: c.addr,
                });
            }
            return Ok(());
        }
        let bytes = self.read_stored(index, c, stored)?;
        let dctx = dctx.get_or_insert_with(zstd_safe::DCtx::create);
        let fail = |detail: String| ImageError::Decompress {
            path: self.name.clone(),
            index,
            addr: c.addr,
            detail,
        };
        match dctx.decompress(out, bytes) {
            Ok(n) if n as u64 == c.len => Ok(()),
            Ok(n) => Err(fail(format!("{n} bytes instead of {}", c.len))),
            Err(code) => Err(fail(zstd_safe::get_error_name(code).to_string())),
        }
    }

    /// Reads one chunk's pages into `out` (exactly `chunk.len` bytes),
    /// decompressing if needed, with its checksum and length verified.
    pub fn read_chunk(&self, chunk: &ChunkRecord, out: &mut [u8]) -> Result<(), ImageError> {
        let index = self.chunk_index(chunk);
        self.decode_into(index, chunk, &mut Vec::new(), &mut None, out)
    }

    /// Runs `f` on every chunk, spread over the available cores. Stops at
    /// the first error, which it returns.
    fn for_each_chunk<F>(&self, f: F) -> Result<(), ImageError>
    where
        F: Fn(&mut Worker, usize, &ChunkRecord) -> Result<(), ImageError> + Sync,
    {
        let n = self.chunks.len();
        let workers = std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
            .min(n);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first: Mutex<Option<(usize, ImageError)>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    let mut w = Worker::default();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = self.chunks.get(i) else { break };
                        if let Err(e) = f(&mut w, i, c) {
                            failed.store(true, Ordering::Relaxed);
                            let mut g = first.lock().unwrap_or_else(|p| p.into_inner());
                            if g.as_ref().is_none_or(|(j, _)| i < *j) {
                                *g = Some((i, e));
                            }
                            break;
                        }
                    }
                });
            }
        });
        match first.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Checks every chunk's checksum, in parallel.
    pub fn verify_data(&self) -> Result<(), ImageError> {
        self.for_each_chunk(|w, i, c| self.read_stored(i, c, &mut w.stored).map(|_| ()))
    }

    /// Writes every chunk's pages into `out` (typically a memfd the restart
    /// maps from), chunk after chunk at page-aligned offsets, in parallel;
    /// returns the offset in `out` of each chunk, by chunk index. Checksums
    /// and decompressed lengths are verified on the way.
    pub fn unpack_chunks_parallel(&self, out: &File) -> Result<Vec<u64>, ImageError> {
        let mut offsets = Vec::with_capacity(self.chunks.len());
        let mut total = 0u64;
        for c in &self.chunks {
            offsets.push(total);
            // Lengths are multiples of the page size (checked at open), so
            // every offset is page-aligned.
            total = total.checked_add(c.len).ok_or_else(|| {
                self.src()
                    .corrupt("chunks add up to more than 2^64 bytes".to_string())
            })?;
        }
        out.set_len(total).map_err(|source| ImageError::Unpack {
            path: self.name.clone(),
            index: 0,
            source,
        })?;
        self.for_each_chunk(|w, i, c| {
            let Worker {
                stored,
                out: buf,
                dctx,
            } = w;
            let buf = sized(buf, c.len as usize);
            self.decode_into(i, c, stored, dctx, buf)?;
            out.write_all_at(buf, offsets[i])
                .map_err(|source| ImageError::Unpack {
                    path: self.name.clone(),
                    index: i,
                    source,
                })
        })?;
        Ok(offsets)
    }
}
