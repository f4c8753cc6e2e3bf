//! Fixed-layout records of image format version 1.
//!
//! Every record is `#[repr(C)]` with explicit padding fields and derives the
//! `zerocopy` traits, so encoding and decoding are `as_bytes()` /
//! `read_from_bytes()`: no byte offsets written by hand, no unsafe casts, and
//! a record that grew implicit padding fails to compile instead of leaking
//! uninitialised bytes into a file. All integers are little-endian, which is
//! the native order of the only architecture hiber supports (x86-64); the
//! header's `arch` field refuses an image from anywhere else before any
//! other field is trusted.
//!
//! This module needs neither `std` nor `alloc`: the freestanding restorer
//! uses it to map the page data of an uncompressed image.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// First eight bytes of every image.
pub const MAGIC: [u8; 8] = *b"HIBERIMG";
/// First eight bytes of the footer, which is the last 64 bytes of the file.
pub const FOOTER_MAGIC: [u8; 8] = *b"HIBEREND";
/// The format version this code writes and the newest it reads.
/// Version 2: the PROCESS section gained timers, parent, group and session.
/// Version 3: it gained System V IPC objects.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this code reads: the metadata sections are postcard
/// (schema-less), so an older PROCESS section does not decode as today's.
pub const OLDEST_READ_VERSION: u32 = 3;
/// `e_machine` of x86-64 in ELF, reused so the value needs no new registry.
pub const EM_X86_64: u32 = 62;
/// Page size the image's page-aligned offsets and chunk lengths refer to.
pub const PAGE_SIZE: u64 = 4096;
/// Size of [`Header`] in bytes.
pub const HEADER_SIZE: usize = 1024;
/// File offset of the data region: the header is padded to one page so that
/// raw chunk data, which follows it, starts page-aligned.
pub const DATA_OFFSET: u64 = PAGE_SIZE;
/// Size of [`Footer`] in bytes.
pub const FOOTER_SIZE: usize = 64;
/// Size of one [`SectionEntry`].
pub const SECTION_ENTRY_SIZE: usize = 32;
/// Size of one [`AreaRecord`].
pub const AREA_RECORD_SIZE: usize = 72;
/// Size of one [`ChunkRecord`].
pub const CHUNK_RECORD_SIZE: usize = 40;
/// Largest uncompressed chunk a reader accepts (and a writer produces): it
/// bounds what a reader allocates for one chunk before the data is checked.
pub const MAX_CHUNK_LEN: u64 = 1 << 28;
/// Sections start at file offsets that are a multiple of this, so records
/// can be read in place on any platform.
pub const SECTION_ALIGN: u64 = 8;

/// Bits of [`Header::flags`].
pub mod header_flags {
    /// Chunks may be zstd-compressed and are packed back to back.
    pub const COMPRESSED: u32 = 1 << 0;
    /// Every chunk is stored raw at a page-aligned file offset, so it can be
    /// mapped `MAP_PRIVATE` straight from the file.
    pub const PAGE_ALIGNED: u32 = 1 << 1;
    /// Bits this version knows; a reader refuses others.
    pub const KNOWN: u32 = COMPRESSED | PAGE_ALIGNED;
}

/// Values of [`SectionEntry::kind`]. Readers skip kinds they do not know.
pub mod section_kind {
    /// Array of [`AreaRecord`](super::AreaRecord), sorted by address.
    pub const AREAS: u32 = 1;
    /// Array of [`ChunkRecord`](super::ChunkRecord), grouped by area.
    pub const CHUNKS: u32 = 2;
    /// Backing-file paths, referenced by offset and length from areas.
    pub const STRINGS: u32 = 3;
    /// postcard-encoded `ProcessMeta`.
    pub const PROCESS: u32 = 4;
    /// postcard-encoded `Vec<ThreadMeta>`.
    pub const THREADS: u32 = 5;
    /// postcard-encoded `Vec<FdMeta>`.
    pub const FDS: u32 = 6;

    /// Human name of a section kind, for messages.
    pub const fn name(kind: u32) -> &'static str {
        match kind {
            AREAS => "AREAS",
            CHUNKS => "CHUNKS",
            STRINGS => "STRINGS",
            PROCESS => "PROCESS",
            THREADS => "THREADS",
            FDS => "FDS",
            _ => "unknown",
        }
    }
}

/// Bits of [`AreaRecord::prot`]: Linux's `PROT_*` values.
pub mod prot {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const EXEC: u32 = 0x4;
}

/// Bits of [`AreaRecord::flags`].
pub mod area_flags {
    /// `MAP_PRIVATE` (the `p` in `/proc/self/maps`).
    pub const PRIVATE: u32 = 1 << 0;
    /// `MAP_SHARED` (the `s` in `/proc/self/maps`).
    pub const SHARED: u32 = 1 << 1;
    /// Not backed by a file.
    pub const ANONYMOUS: u32 = 1 << 2;
    /// `MAP_GROWSDOWN` (the main stack).
    pub const GROWSDOWN: u32 = 1 << 3;
    /// Mostly unpopulated (`MAP_NORESERVE`-like): restore without
    /// committing memory for the holes.
    pub const SPARSE: u32 = 1 << 4;
    /// The area's contents were saved: pages not covered by a chunk are
    /// zero. Without it the area is recreated from its backing only.
    pub const HAS_DATA: u32 = 1 << 5;
}

/// Values of [`ChunkRecord::codec`].
pub mod codec {
    /// Stored as is: `stored_len == len`.
    pub const RAW: u32 = 0;
    /// One zstd frame whose content is `len` bytes.
    pub const ZSTD: u32 = 1;
}

/// What an area is, as far as a restart cares. Stored as its `u32` value;
/// zero is never a valid kind so that a zeroed record is caught.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AreaKind {
    Anon = 1,
    Heap = 2,
    Stack = 3,
    File = 4,
    Vdso = 5,
    Vvar = 6,
    VvarVclock = 7,
    /// `[vsyscall]` is fixed by the kernel; it is never stored.
    Vsyscall = 8,
    /// Memory of hiber's own agent.
    Agent = 9,
    Other = 10,
}

impl AreaKind {
    /// Decodes a stored kind; `None` for values this version doesn't know.
    pub const fn from_u32(v: u32) -> Option<AreaKind> {
        Some(match v {
            1 => AreaKind::Anon,
            2 => AreaKind::Heap,
            3 => AreaKind::Stack,
            4 => AreaKind::File,
            5 => AreaKind::Vdso,
            6 => AreaKind::Vvar,
            7 => AreaKind::VvarVclock,
            8 => AreaKind::Vsyscall,
            9 => AreaKind::Agent,
            10 => AreaKind::Other,
            _ => return None,
        })
    }

    /// Short lowercase name, as `hiber inspect` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            AreaKind::Anon => "anon",
            AreaKind::Heap => "heap",
            AreaKind::Stack => "stack",
            AreaKind::File => "file",
            AreaKind::Vdso => "vdso",
            AreaKind::Vvar => "vvar",
            AreaKind::VvarVclock => "vvar_vclock",
            AreaKind::Vsyscall => "vsyscall",
            AreaKind::Agent => "agent",
            AreaKind::Other => "other",
        }
    }

    /// Kernel-provided areas whose contents must never be saved: the kernel
    /// supplies them anew in every process.
    pub const fn never_saved(self) -> bool {
        matches!(
            self,
            AreaKind::Vvar | AreaKind::VvarVclock | AreaKind::Vsyscall
        )
    }
}

/// The first [`HEADER_SIZE`] bytes of the file; zero padding follows up to
/// [`DATA_OFFSET`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `size_of::<Header>()`, i.e. [`HEADER_SIZE`].
    pub header_size: u32,
    /// [`EM_X86_64`].
    pub arch: u32,
    /// [`header_flags`].
    pub flags: u32,
    /// [`PAGE_SIZE`].
    pub page_size: u32,
    /// crc32c of these [`HEADER_SIZE`] bytes with this field zero.
    pub header_crc: u32,
    /// Computation id given by the coordinator.
    pub computation: u64,
    /// Checkpoint generation (1 for the first checkpoint).
    pub generation: u64,
    /// Unique id of the process within the computation.
    pub process_id: u64,
    /// Pid the program sees (stays the same across restarts).
    pub virtual_pid: u32,
    /// Kernel pid at checkpoint time.
    pub real_pid: u32,
    /// Wall-clock time the checkpoint began, ns since the Unix epoch.
    pub created_unix_ns: u64,
    /// Length of the complete file; 0 while the writer is still at work.
    pub file_length: u64,
    /// File offset of the section table.
    pub section_table_offset: u64,
    /// Number of [`SectionEntry`] in the table.
    pub section_count: u32,
    /// crc32c of the vDSO image at checkpoint time.
    pub vdso_crc: u32,
    /// Length of the `[vdso]` mapping.
    pub vdso_len: u64,
    /// Length of the `[vvar]` mapping.
    pub vvar_len: u64,
    /// Length of the `[vvar_vclock]` mapping (0 on kernels without it).
    pub vvar_vclock_len: u64,
    /// File offset where chunk data begins ([`DATA_OFFSET`]).
    pub data_offset: u64,
    /// File offset one past the last chunk byte.
    pub data_end: u64,
    /// Program name, NUL-padded UTF-8 (cut at a character boundary).
    pub program: [u8; 64],
    /// `uname -n`, NUL-padded (65 bytes in the kernel, padded to 72).
    pub hostname: [u8; 72],
    /// `uname -r`, NUL-padded (65 bytes in the kernel, padded to 72).
    pub kernel_release: [u8; 72],
    /// `gnu_get_libc_version()`, NUL-padded.
    pub glibc_version: [u8; 16],
    /// Zero; room for fields of later format versions.
    pub reserved: [u8; 664],
}

/// The last [`FOOTER_SIZE`] bytes of a complete file.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Footer {
    /// [`FOOTER_MAGIC`].
    pub magic: [u8; 8],
    /// Same as the header's.
    pub format_version: u32,
    /// crc32c of these 64 bytes with this field zero.
    pub footer_crc: u32,
    /// Length of the complete file.
    pub file_length: u64,
    /// Same as the header's.
    pub section_table_offset: u64,
    /// Same as the header's.
    pub section_count: u32,
    /// Copy of [`Header::header_crc`]: ties the footer to its header.
    pub header_crc: u32,
    /// crc32c over the section table.
    pub table_crc: u32,
    /// Zero.
    pub reserved0: u32,
    /// Zero.
    pub reserved: [u8; 16],
}

/// One entry of the section table.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SectionEntry {
    /// [`section_kind`].
    pub kind: u32,
    /// Zero in version 1.
    pub flags: u32,
    /// File offset, a multiple of [`SECTION_ALIGN`].
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// crc32c of the section's bytes.
    pub crc: u32,
    /// Zero.
    pub reserved: u32,
}

/// One memory area (one line of `/proc/self/maps`, minus what is never
/// restored).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct AreaRecord {
    /// First address, page-aligned.
    pub start: u64,
    /// One past the last address, page-aligned.
    pub end: u64,
    /// [`prot`] bits.
    pub prot: u32,
    /// [`area_flags`] bits.
    pub flags: u32,
    /// [`AreaKind`] value.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
    /// Offset of `start` in the backing file.
    pub file_offset: u64,
    /// Device of the backing file (`makedev` encoding, as in `st_dev`).
    pub dev: u64,
    /// Inode of the backing file.
    pub inode: u64,
    /// Backing path: offset into the STRINGS section.
    pub path_offset: u32,
    /// Backing path: length in bytes (0 for none).
    pub path_len: u32,
    /// Index of the area's first chunk in CHUNKS.
    pub first_chunk: u32,
    /// Number of chunks of this area.
    pub chunk_count: u32,
}

/// One stored run of pages.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ChunkRecord {
    /// Virtual address of the first byte.
    pub addr: u64,
    /// Uncompressed length, a multiple of [`PAGE_SIZE`].
    pub len: u64,
    /// File offset of the stored bytes.
    pub file_offset: u64,
    /// Stored (possibly compressed) length.
    pub stored_len: u64,
    /// [`codec`] value.
    pub codec: u32,
    /// crc32c of the stored bytes.
    pub crc: u32,
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(core::mem::size_of::<Footer>() == FOOTER_SIZE);
const _: () = assert!(core::mem::size_of::<SectionEntry>() == SECTION_ENTRY_SIZE);
const _: () = assert!(core::mem::size_of::<AreaRecord>() == AREA_RECORD_SIZE);
const _: () = assert!(core::mem::size_of::<ChunkRecord>() == CHUNK_RECORD_SIZE);
const _: () = assert!(HEADER_SIZE as u64 <= DATA_OFFSET);

impl AreaRecord {
    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True for an empty (invalid) area.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The decoded kind, `None` if this version doesn't know it.
    pub const fn area_kind(&self) -> Option<AreaKind> {
        AreaKind::from_u32(self.kind)
    }

    /// Whether the area's contents were saved.
    pub const fn has_data(&self) -> bool {
        self.flags & area_flags::HAS_DATA != 0
    }

    /// Permissions the way `/proc/self/maps` shows them, e.g. `r-xp`.
    pub const fn perms(&self) -> [u8; 4] {
        [
            if self.prot & prot::READ != 0 {
                b'r'
            } else {
                b'-'
            },
            if self.prot & prot::WRITE != 0 {
                b'w'
            } else {
                b'-'
            },
            if self.prot & prot::EXEC != 0 {
                b'x'
            } else {
                b'-'
            },
            if self.flags & area_flags::SHARED != 0 {
                b's'
            } else {
                b'p'
            },
        ]
    }
}

impl ChunkRecord {
    /// One past the chunk's last virtual address.
    pub const fn end(&self) -> u64 {
        self.addr.saturating_add(self.len)
    }
}

impl Header {
    /// The bytes of a NUL-padded text field, without the padding.
    pub fn text(field: &[u8]) -> &[u8] {
        let n = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        &field[..n]
    }

    /// Stores `s` in a NUL-padded field, cutting it at a UTF-8 character
    /// boundary if it is too long (a reader then still sees valid UTF-8).
    pub fn set_text(field: &mut [u8], s: &str) {
        let mut n = s.len().min(field.len());
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        field.fill(0);
        field[..n].copy_from_slice(&s.as_bytes()[..n]);
    }
}

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on
/// overflow.
pub const fn align_up(v: u64, align: u64) -> Option<u64> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}
