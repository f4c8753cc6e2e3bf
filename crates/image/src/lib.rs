//! The hiber checkpoint image: one file per process, holding its memory
//! areas, the data of the pages worth keeping, and the metadata (process,
//! threads, file descriptors) that a restart needs. The on-disk layout and
//! the reasons behind it are in `docs/image-format.md`.
//!
//! [`format`] is the fixed-layout records only and builds without `std`, so
//! the freestanding restorer can map an image with the same definitions the
//! writer used. Everything that allocates, does I/O or compresses sits behind
//! the `std` feature: [`writer`] (runs inside the checkpointed process while
//! its threads are stopped), [`reader`] (`hiber restart`, `hiber inspect`),
//! [`meta`] (postcard-encoded metadata sections) and [`summary`] (a
//! serializable description for tools).
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod format;

#[cfg(feature = "std")]
pub mod ghost;
#[cfg(feature = "std")]
pub mod identity;

#[cfg(feature = "std")]
pub mod meta;
#[cfg(feature = "std")]
pub mod reader;
#[cfg(feature = "std")]
pub mod summary;
#[cfg(feature = "std")]
pub mod writer;
#[cfg(feature = "std")]
mod zstd_static;

#[cfg(all(test, feature = "std"))]
mod tests;

pub use format::{AreaKind, AreaRecord, ChunkRecord, Footer, Header, SectionEntry};

#[cfg(feature = "std")]
pub use identity::{Identity, VdsoIdentity};
#[cfg(feature = "std")]
pub use meta::{FdKind, FdMeta, MmLayout, ProcessMeta, Rlimit, SigAction, ThreadMeta};
#[cfg(feature = "std")]
pub use reader::{Image, ImageError};
#[cfg(feature = "std")]
pub use summary::ImageSummary;
#[cfg(feature = "std")]
pub use writer::{AreaDesc, Scratch, WriteError, WriteOptions, WriteSummary, Writer, commit};
