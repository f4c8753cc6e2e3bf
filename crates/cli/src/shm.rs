//! Shared memory across a restart.
//!
//! A `MAP_SHARED` area of an image is one of two things. A mapping of a
//! file that still exists (same inode) keeps its contents in the file: it
//! is mapped shared from the file again (a POSIX shm segment in /dev/shm,
//! being memory, is first given its contents of the checkpoint back). Anything else, anonymous shared
//! memory (`/dev/zero (deleted)`, shared between processes since a `fork`),
//! a POSIX shm segment or memfd that was unlinked, is recreated here once
//! per object (device and inode, per host) as a memfd filled from an image
//! that saved it, and every process that mapped it maps that memfd shared
//! at its own address and offset: writes of one are seen by the others
//! again.
//!
//! A shared mapping of a kernel object's descriptor (`anon_inode:[io_uring]`
//! rings, an `anon_inode:[perf_event]` ring buffer) cannot come back: the
//! object is gone, and its descriptor is a placeholder now (see the agent's
//! `fd/mod.rs`). Such an area becomes private memory of the same size and
//! protection holding what it held at the checkpoint, with a warning. It
//! is not keyed by its inode like the others: perf events of one kernel
//! share one anonymous inode, and one object per inode would merge
//! unrelated ring buffers.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use anyhow::Context;
use hiber_image::Image;
use hiber_image::format::{area_flags, prot};

pub struct SharedMemory {
    /// Warnings for the user: the kernel objects' areas that became plain
    /// memory.
    pub warnings: Vec<String>,
    objects: Vec<OwnedFd>,
    /// Per image: area start → (object index, offset in the object).
    areas: Vec<HashMap<u64, (usize, u64)>>,
}

impl SharedMemory {
    /// `taken(i, start)`: image `i`'s area at `start` is mapped otherwise
    /// (a System V segment, `sysv.rs`).
    pub fn create(
        images: &[&Image],
        taken: &dyn Fn(usize, u64) -> bool,
    ) -> anyhow::Result<SharedMemory> {
        let mut objects: Vec<OwnedFd> = Vec::new();
        let mut by_key: HashMap<(String, u64, u64), usize> = HashMap::new();
        // The object is a file that holds its data: nothing to write.
        let mut in_file: Vec<bool> = Vec::new();
        let mut areas = vec![HashMap::new(); images.len()];
        let mut warnings = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let host = img.identity().hostname.clone();
            for a in img.areas() {
                if a.flags & area_flags::SHARED == 0 || taken(i, a.start) {
                    continue;
                }
                let path = img.area_path(a);
                if kernel_object(path) {
                    // Left out of `areas`: the plan maps it private and
                    // anonymous, from its saved pages.
                    warnings.push(format!(
                        "process {}: mapping {:#x}-{:#x} of {path} (offset {:#x}) cannot be \
                         restored; it is now private memory holding its checkpoint contents",
                        img.identity().virtual_pid,
                        a.start,
                        a.end,
                        a.file_offset
                    ));
                    continue;
                }
                let key = (host.clone(), a.dev, a.inode);
                let k = match by_key.get(&key) {
                    Some(&k) => k,
                    None => {
                        let fd = match live_file(path, a.inode, a.prot) {
                            Some(f) => {
                                // A file holds its data, but a POSIX shm
                                // segment is memory: it gets its contents of
                                // the checkpoint back.
                                in_file.push(!path.starts_with("/dev/shm/"));
                                f
                            }
                            None => {
                                in_file.push(false);
                                memfd(path)?
                            }
                        };
                        objects.push(fd);
                        by_key.insert(key, objects.len() - 1);
                        objects.len() - 1
                    }
                };
                // Every area with data is written, not only an object's
                // first: one object may be mapped as several areas (at other
                // offsets, or split by `mprotect`). Processes that saved the
                // same pages saved them at the same moment.
                if !in_file[k] && a.flags & area_flags::HAS_DATA != 0 {
                    fill(img, a, &objects[k])
                        .with_context(|| format!("recreating shared memory {path}"))?;
                } else if !in_file[k] {
                    // Not saved by this image (another process saved it):
                    // still the memfd must cover this area.
                    let f = std::fs::File::from(objects[k].try_clone()?);
                    let need = a.file_offset + (a.end - a.start);
                    if f.metadata()?.len() < need {
                        f.set_len(need)?;
                    }
                }
                areas[i].insert(a.start, (k, a.file_offset));
            }
        }
        Ok(SharedMemory {
            warnings,
            objects,
            areas,
        })
    }

    /// Descriptors image `i` needs.
    pub fn fds_of(&self, i: usize) -> Vec<RawFd> {
        let mut v: Vec<RawFd> = self.areas[i]
            .values()
            .map(|&(k, _)| self.objects[k].as_raw_fd())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// How image `i` maps its shared area starting at `start`.
    pub fn area(&self, i: usize, start: u64) -> Option<(RawFd, u64)> {
        self.areas[i]
            .get(&start)
            .map(|&(k, off)| (self.objects[k].as_raw_fd(), off))
    }
}

/// A mapping of a kernel object's descriptor rather than of memory or a
/// file (`anon_inode:[io_uring]`, `anon_inode:[perf_event]`, ...).
fn kernel_object(path: &str) -> bool {
    path.starts_with("anon_inode:")
}

/// The file a shared mapping came from, if it is still there (same inode).
fn live_file(path: &str, inode: u64, area_prot: u32) -> Option<OwnedFd> {
    if path.is_empty() || path.ends_with(" (deleted)") || !path.starts_with('/') {
        return None;
    }
    let md = std::fs::metadata(path).ok()?;
    if !md.is_file() || md.ino() != inode {
        return None;
    }
    let write = area_prot & prot::WRITE != 0;
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .ok()
        .map(OwnedFd::from)
}

fn memfd(path: &str) -> anyhow::Result<OwnedFd> {
    let name = CString::new(format!(
        "hiber-shm:{}",
        path.trim_end_matches(" (deleted)").replace('\0', "")
    ))
    .unwrap_or_default();
    // SAFETY: NUL-terminated name; returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes the area's saved pages into the object at the area's offset.
fn fill(img: &Image, a: &hiber_image::AreaRecord, obj: &OwnedFd) -> anyhow::Result<()> {
    let f = std::fs::File::from(obj.try_clone()?);
    let need = a.file_offset + (a.end - a.start);
    if f.metadata()?.len() < need {
        f.set_len(need)?;
    }
    let mut buf = Vec::new();
    for c in img.chunks_of(a) {
        buf.resize(c.len as usize, 0);
        img.read_chunk(c, &mut buf)?;
        f.write_all_at(&buf, a.file_offset + (c.addr - a.start))?;
    }
    Ok(())
}
